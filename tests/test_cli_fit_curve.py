"""``fit-curve`` and ``--accuracy FILE`` (cli/fit_curve.py, cli/_args.py), driven through argparse."""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np
import pytest

import diffcontract as dc
from diffcontract.curves import LearnedAccuracy, PowerLaw, ScaledAccuracy, load_curve
from diffcontract.cli._args import accuracy_from_arg
from diffcontract.cli.fit_curve import add_parser as add_fit_curve_parser


def run(capsys, *argv):
    parser = argparse.ArgumentParser(prog="diffcontract")
    add_fit_curve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)  # as cli.main does
    try:
        code = args.func(args)
    finally:
        jax.config.update("jax_enable_x64", previous)
    return code, capsys.readouterr().out


def test_fit_parametric_curve_and_solve_with_it(tmp_path, capsys):
    out = tmp_path / "pow3.msgpack"
    code, text = run(capsys, "fit-curve", "--source", "lcdb-extract:44:LogisticRegression", "--model", "pow3",
                     "--out", str(out), "--samples-per-unit", "2", "--fit-up-to", "512", "--json")
    assert code == 0
    record = json.loads(text)
    assert record["model"] == "pow3" and record["extrapolation_mae"] is not None
    curve, meta = load_curve(out, with_metadata=True)
    assert isinstance(curve, ScaledAccuracy) and isinstance(curve.curve, PowerLaw) and curve.samples_per_unit == 2.0
    assert meta["source"] == "lcdb-extract:44:LogisticRegression" and meta["unit"] == "samples"
    same = accuracy_from_arg(str(out))
    assert same == curve
    solution = dc.solve(dc.ContractProblem(4, [0.4, 0.6], [0.02, 0.01], accuracy=same))
    assert solution.status_name == "converged"


def test_accuracy_arg_still_takes_specs():
    assert accuracy_from_arg("sgb:a_opt=0.9,k=2") == dc.curves.GeneralizationBound(0.9, 2.0)
    assert accuracy_from_arg({"kind": "power", "a_opt": 0.9}) == PowerLaw(a_opt=0.9)
    with pytest.raises(ValueError, match="not found"):
        accuracy_from_arg("missing.msgpack")


@pytest.mark.parametrize("argv, match", [
    (["--source", "sklearn:iris:logreg"], "unknown scikit-learn dataset"),
    (["--source", "sklearn:digits:logreg", "--samples-per-unit", "0"], "samples-per-unit"),
    (["--source", "sklearn:digits:logreg", "--fit-up-to", "20"], "fit-up-to"),
])
def test_bad_input_raises_value_error(argv, match, tmp_path, capsys):
    with pytest.raises(ValueError, match=match):
        run(capsys, "fit-curve", "--out", str(tmp_path / "c.msgpack"), "--model", "pow3", *argv)


@pytest.mark.slow
def test_fit_learned_distilled_with_plot(tmp_path, capsys):
    out, png = tmp_path / "digits.msgpack", tmp_path / "digits.png"
    code, text = run(capsys, "fit-curve", "--source", "sklearn:digits:logreg", "--out", str(out), "--plot", str(png))
    assert code == 0 and "band 5%" in text and png.stat().st_size > 10_000
    curve, meta = load_curve(out, with_metadata=True)
    assert isinstance(curve, LearnedAccuracy) and curve.num_members == 1  # distilled by default
    from diffcontract.curves import curve_from_dict

    ensemble = curve_from_dict(meta["ensemble"])
    assert ensemble.num_members == 8
    x = np.geomspace(1.0, 1e5, 50)
    with jax.enable_x64(True):
        # The distilled curve stays within a few 1e-3 of the ensemble mean (see test_fitting).
        assert np.max(np.abs(np.asarray(curve(x)) - np.asarray(ensemble(x)))) < 3e-3


def test_verify_reads_what_solve_writes_with_a_learned_curve(tmp_path, capsys):
    # Issue 16: fit-curve, solve --accuracy FILE --json, verify: verify exited 2 ("cannot rebuild a
    # curve of kind 'LearnedAccuracy'"). A small ensemble, not distilled, keeps the fit to seconds.
    from diffcontract import cli
    from diffcontract.curves import curve_to_dict

    curve, record = tmp_path / "curve.msgpack", tmp_path / "s.json"
    previous = jax.config.jax_enable_x64  # cli.main switches x64 on for its process; restore it
    try:
        assert cli.main(["fit-curve", "--source", "sklearn:digits:logreg", "--out", str(curve), "--members", "2",
                         "--components", "2", "--distill", "0", "--json"]) == 0
        capsys.readouterr()
        assert cli.main(["solve", "--participants", "10", "--probs", "0.2,0.8", "--costs", "0.02,0.01",
                         "--accuracy", str(curve), "--json"]) == 0
        record.write_text(capsys.readouterr().out)
        assert cli.main(["verify", str(record)]) == 0, capsys.readouterr().err
    finally:
        jax.config.update("jax_enable_x64", previous)
    accuracy = dc.Solution.from_json(record.read_text()).problem.accuracy
    assert isinstance(accuracy, LearnedAccuracy) and curve_to_dict(accuracy) == curve_to_dict(load_curve(curve))
