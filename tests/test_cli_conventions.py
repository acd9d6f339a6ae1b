"""CLI conventions: --version, -v/-q logging, backend options and seed, negative numbers in list
flags, output paths checked before any computation, and the documented exit codes 0/1/2/3."""

from __future__ import annotations

import json
import logging

import jax
import pytest

import diffcontract
from diffcontract import cli

SMALL = ("solve", "-N", "4", "--probs", "0.3,0.7", "--costs", "0.02,0.01")


def run_cli(capsys, *argv):
    previous = jax.config.jax_enable_x64  # cli.main turns x64 on for its process
    try:
        code = cli.main(list(argv))
    finally:
        jax.config.update("jax_enable_x64", previous)
        logging.getLogger("diffcontract").setLevel(logging.NOTSET)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_compute(monkeypatch):
    """Any solve fails the test: the command must stop before computing."""
    def refuse(*args, **kwargs):
        raise AssertionError("computed before checking the input")

    for name in ("solve", "solve_batch"):
        monkeypatch.setattr(diffcontract, name, refuse)
    monkeypatch.setattr("diffcontract.analysis.sweep.two_type_sweep", refuse)
    monkeypatch.setattr("diffcontract.data.load_source", refuse)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"diffcontract {diffcontract.__version__}"


def test_verbose_logs_to_stderr_quiet_does_not(capsys):
    code, out, err = run_cli(capsys, "-v", *SMALL, "--json")
    assert code == cli.EXIT_OK and json.loads(out)["status"] == "converged"
    assert "diffcontract: INFO: diffcontract.cli.solve: solving: I = 2 types, N = 4" in err
    code, out, err = run_cli(capsys, "-q", *SMALL, "--json")
    assert code == cli.EXIT_OK and err == ""


def test_library_never_prints(capsys):
    problem = diffcontract.ContractProblem(participants=4, probs=[0.3, 0.7], costs=[0.02, 0.01])
    diffcontract.solve(problem)  # the library logs through "diffcontract" (no handler of its own)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("flag", ["--costs", "--probs", "--quality"])
def test_negative_numbers_reach_the_field_check(capsys, no_compute, flag):
    values = {"--costs": "0.02,0.01", "--probs": "0.3,0.7", "--quality": "1,1"}
    values[flag] = "-0.5,1.5"
    argv = ["solve", "-N", "4"] + [x for key, value in values.items() for x in (key, value)]
    code, _, err = run_cli(capsys, *argv)
    assert code == cli.EXIT_BAD_INPUT
    assert flag.lstrip("-") in err and "expected one argument" not in err


def test_backend_option_and_seed_reach_the_backend():
    from diffcontract.cli._args import problem_from_args

    args = cli.build_parser().parse_args([*SMALL, "--backend", "montecarlo", "--backend-option", "samples=2048",
                                          "--backend-option", "lattice-rtol=1e-7", "--seed", "3"])
    _, settings = problem_from_args(args)
    assert settings["backend"] == "montecarlo"
    assert settings["backend_options"] == {"samples": 2048, "lattice_rtol": 1e-7, "seed": 3}  # parsed as numbers


@pytest.mark.parametrize("option, field", [("foo=1", "unknown option(s) ['foo']"), ("samples", "key=value")])
def test_bad_backend_option_is_bad_input(capsys, option, field):
    code, _, err = run_cli(capsys, *SMALL, "--backend-option", option)
    assert code == cli.EXIT_BAD_INPUT and field in err


@pytest.mark.parametrize("argv", [
    ["demo", "--out", "/proc/diffcontract-nope"],
    ["sweep", "two-type", "--out", "/proc/diffcontract-nope"],
    ["fit-curve", "--source", "sklearn:digits:logreg", "--out", "/proc/diffcontract-nope/curve.msgpack"],
    ["fit-curve", "--source", "sklearn:digits:logreg", "--out", "curve.msgpack", "--plot", "/proc/nope/fit.png"],
])
def test_unwritable_output_is_refused_before_computing(capsys, no_compute, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert code == cli.EXIT_BAD_INPUT
    assert "cannot write" in err and "Traceback" not in err


def test_sweep_costs_must_be_costliest_first(capsys, no_compute, tmp_path):
    code, _, err = run_cli(capsys, "sweep", "two-type", "--costs", "0.01,0.02", "--out", str(tmp_path))
    assert code == cli.EXIT_BAD_INPUT and "costliest first" in err


@pytest.mark.parametrize("backend, participants, types", [("enumerate", 100, 10), ("chunked", 10_000, 19)])
def test_too_large_is_refused_with_exit_3(capsys, backend, participants, types):
    probs = ",".join(["0.1"] * types) if types == 10 else ",".join([str(1 / types)] * (types - 1) + [str(1 - (types - 1) / types)])
    costs = ",".join(str(0.1 + 0.01 * k) for k in range(types))
    code, _, err = run_cli(capsys, "solve", "-N", str(participants), "--probs", probs, "--costs", costs,
                           "--backend", backend)
    assert code == cli.EXIT_TOO_LARGE
    assert f"backend {backend!r}" in err and "outcomes" in err


def test_unknown_solver_option_names_the_close_match():
    problem = diffcontract.ContractProblem(participants=4, probs=[0.3, 0.7], costs=[0.02, 0.01])
    with pytest.raises(ValueError, match="no option 'maxiter' \\(did you mean 'max_iterations'\\?\\)"):
        diffcontract.solve(problem, maxiter=3)


def test_tables_never_show_negative_zero(capsys):
    code, out, _ = run_cli(capsys, *SMALL)
    assert code == cli.EXIT_OK and "-0.0000" not in out
    assert " 0.0000 " in out or " 0.0000\n" in out or "0.0000    G" in out  # the binding type's rent


def test_cli_figure_formats_are_the_plotting_formats():
    from diffcontract.analysis.plots import FORMATS
    from diffcontract.cli._args import FIGURE_FORMATS  # kept apart so that --help does not import matplotlib

    assert tuple(FIGURE_FORMATS) == tuple(FORMATS)
