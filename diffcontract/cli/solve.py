"""``diffcontract solve``: one contract problem from flags or a TOML config; a table or one JSON object."""

from __future__ import annotations

import argparse
import json
import logging

from ._args import EXIT_NOT_CONVERGED, EXIT_OK, add_backend_flags, problem_from_args

log = logging.getLogger(__name__)


def cmd_solve(args: argparse.Namespace) -> int:
    """Solve, print; exit 0 when converged (or a feasible learned contract), 1 otherwise."""
    from .. import solve  # diffcontract.solve, the public entry point
    from ..analysis import solution_record, solution_table

    problem, settings = problem_from_args(args)
    method = settings["method"]
    flags = ("mechanism", "warm_start", "gap_tol", "time_limit")  # options of some methods only
    options = {flag: getattr(args, flag) for flag in flags if getattr(args, flag) is not None}
    if "mechanism" in options and method != "learned" and "warm_start" not in options:
        raise ValueError("--mechanism needs --method learned or --warm-start learned")
    if "warm_start" in options and method != "alm":
        raise ValueError(f"--warm-start needs --method alm, got --method {method}")
    for flag in ("gap_tol", "time_limit"):
        if flag in options and method != "global":
            raise ValueError(f"--{flag.replace('_', '-')} needs --method global, got --method {method}")
    log.info("solving: I = %d types, N = %d participants, method %s, constraints %s, backend %s",
             problem.num_types, problem.num_participants, method, settings["constraints"], settings["backend"])
    solution = solve(problem, method=method, constraints=settings["constraints"], backend=settings["backend"],
                     backend_options=settings["backend_options"] or None, **options)
    log.info("%s: status %s after %s iterations, %.3f s", method, solution.status_name, solution.iterations,
             solution.wall_time)
    extra = {}
    if args.sensitivities:
        from ..analysis.report import sensitivity_record

        extra = sensitivity_record(problem, solution)
    if args.json:
        print(json.dumps({**solution_record(solution), **extra}))
    else:
        print(solution_table(solution))
        for key, values in extra.items():
            print(f"{key} = {values}")
    # A learned contract is FEASIBLE (every constraint holds; no optimality claim): the job is done.
    done = solution.succeeded or (method == "learned" and solution.status_name == "feasible")
    return EXIT_OK if done else EXIT_NOT_CONVERGED


def add_parser(sub) -> None:
    """Register ``solve`` on an ``argparse`` subparsers object."""
    solve = sub.add_parser("solve", help="solve one contract problem")
    solve.add_argument("--participants", "-N", type=int, help="number of participants N")
    solve.add_argument("--probs", help="type probabilities, comma-separated (e.g. 0.2,0.8)")
    solve.add_argument("--costs", help="marginal costs per unit of data, comma-separated (e.g. 0.02,0.01)")
    solve.add_argument("--quality", help="quality weights, comma-separated (default all 1)")
    solve.add_argument("--accuracy", help="accuracy curve spec: sgb[:a_opt=1,k=1] | power:a_opt=,b=,alpha= | arctan:s= | FILE.msgpack (from diffcontract fit-curve)")
    solve.add_argument("--valuation", help="valuation spec: linear[:scale=100] | exponential:scale=,gamma=")
    solve.add_argument("--method", choices=["exact", "alm", "learned", "global"],
                       help="solver: exact (SLSQP), alm (augmented Lagrangian, optax), learned (trained mechanism "
                            "network + feasibility repair; status 'feasible', exit 0) or global (branch and bound: "
                            "a certified global optimum, JSON keys upper_bound and gap); default exact")
    solve.add_argument("--gap-tol", type=float, help="global only: relative gap that certifies (default 1e-6)")
    solve.add_argument("--time-limit", type=float, help="global only: seconds before it stops with the bound "
                                                        "reached, status max_iterations (default 600)")
    solve.add_argument("--mechanism", help="saved learned mechanism (.msgpack) for --method learned or --warm-start "
                                           "learned (default: the packaged I = 3 model)")
    solve.add_argument("--warm-start", choices=["learned"], help="alm only: start from the learned mechanism's contract")
    solve.add_argument("--constraints", choices=["simplified", "full"], help="constraint set (default simplified)")
    add_backend_flags(solve)
    solve.add_argument("--conditioning", choices=["truncated", "interim"], help="conditioning of rewards (default truncated)")
    solve.add_argument("--config", help="TOML file with any of the keys above (flags override it)")
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    solve.add_argument("--sensitivities", action="store_true",
                       help="add d_value_d_costs and d_value_d_probs: derivatives of expected_value by implicit "
                            "differentiation of the KKT conditions, in the order the types were given (not the "
                            "costliest-first order of the other lists); d/dprobs is projected on the simplex (entry "
                            "i is the derivative along e_i - (1/I) sum_j e_j, so the entries sum to 0); null where "
                            "the derivative is one-sided or the solve did not converge")
    solve.set_defaults(func=cmd_solve)
