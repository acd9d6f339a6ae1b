"""The command line: JSON output, tables, configs, and errors that name the field."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import pytest

from diffcontract import cli

REQUIRED_KEYS = {"m", "t", "t_bar", "expected_accuracy", "expected_value", "reservation_utility",
                 "utility", "max_violation", "status", "method"}


def run_cli(capsys, *argv):
    # cli.main turns x64 on for its process; restore it so other tests see the default.
    previous = jax.config.jax_enable_x64
    try:
        code = cli.main(list(argv))
    finally:
        jax.config.update("jax_enable_x64", previous)
    out, err = capsys.readouterr()
    return code, out, err


def test_solve_json_two_types(capsys):
    code, out, _ = run_cli(capsys, "solve", "--participants", "10", "--probs", "0.2,0.8",
                           "--costs", "0.02,0.01", "--json")
    assert code == 0
    record = json.loads(out)
    assert REQUIRED_KEYS <= set(record)
    assert record["status"] == "converged" and record["method"] == "exact"
    assert len(record["m"]) == 2 and record["max_violation"] <= 1e-8  # float64 exact solver
    assert record["problem"]["costs"] == [0.02, 0.01]  # type order c_1 > c_2


def test_solve_accepts_costs_in_any_order(capsys):
    _, out_a, _ = run_cli(capsys, "solve", "-N", "6", "--probs", "0.3,0.7", "--costs", "0.02,0.01", "--json")
    _, out_b, _ = run_cli(capsys, "solve", "-N", "6", "--probs", "0.7,0.3", "--costs", "0.01,0.02", "--json")
    a, b = json.loads(out_a), json.loads(out_b)
    assert a["m"] == pytest.approx(b["m"], rel=1e-9)  # same problem, canonical order: same solve


def test_solve_table_and_config(tmp_path, capsys):
    config = tmp_path / "scenario.toml"
    config.write_text(
        'participants = 10\nprobs = [0.2, 0.2, 0.2, 0.2, 0.2]\ncosts = [1.0, 0.85, 0.7, 0.55, 0.4]\n'
        'accuracy = { kind = "sgb", a_opt = 1.0, k = 1.0 }\nvaluation = "linear:scale=100"\nconstraints = "full"\n'
    )
    code, out, _ = run_cli(capsys, "solve", "--config", str(config))
    assert code == 0
    assert "E[v(a)] = 69.05325" in out  # docs/model.md scenario 2, printed to 10 significant digits
    assert "exact/full" in out


@pytest.mark.parametrize(
    "argv, field",
    [
        (["--participants", "0", "--probs", "0.5,0.5", "--costs", "0.02,0.01"], "participants"),
        (["--participants", "5", "--probs", "0.5,0.6", "--costs", "0.02,0.01"], "probs"),
        (["--participants", "5", "--probs", "0.5,0.5", "--costs", "0.02,-1"], "costs"),
        (["--participants", "5", "--probs", "0.5,0.5", "--costs", "0.02,abc"], "costs"),
        (["--participants", "5", "--probs", "0.5,0.5", "--costs", "0.02,0.02"], "costs"),
        (["--participants", "5", "--probs", "0.5,0.5", "--costs", "0.02,0.01", "--accuracy", "sgb:k=-1"], "k"),
        (["--participants", "5", "--probs", "0.5,0.5", "--costs", "0.02,0.01", "--accuracy", "bogus"], "accuracy"),
        (["--probs", "0.5,0.5", "--costs", "0.02,0.01"], "participants"),
        (["--participants", "5", "--probs", "0.5,0.5", "--costs", "0.02,0.01", "--config", "/nonexistent.toml"], "config"),
    ],
)
def test_solve_bad_input_names_field(capsys, argv, field):
    code, out, err = run_cli(capsys, "solve", *argv)
    assert code == cli.EXIT_BAD_INPUT
    assert field in err and out == ""


def test_console_script_demo_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "diffcontract.cli", "demo", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "86.4782760" in proc.stdout and "69.0532528" in proc.stdout  # docs/model.md reference values
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == [f"scenario{k}_{kind}.png" for k in (1, 2, 3) for kind in ("menu", "rewards")]
    assert all((tmp_path / p).stat().st_size > 10_000 for p in pngs)
