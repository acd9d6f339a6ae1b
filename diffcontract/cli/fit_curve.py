"""``diffcontract fit-curve``: fit an accuracy curve to a real learning curve and save it (``.msgpack``).

The saved file is what ``diffcontract solve --accuracy FILE`` reads (``_args.accuracy_from_arg``).
Errors are ``ValueError`` with a message naming the field, which ``cli.main`` turns into exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

from .._jit import jit
from ..curves import FAMILIES
from ._args import EXIT_OK, FIGURE_FORMATS, writable_file

MODELS = ("learned", *FAMILIES)  # the learned ensemble, then every parametric family fit_family knows


def add_parser(sub) -> None:
    """Register ``fit-curve`` on an ``argparse`` subparsers object."""
    p = sub.add_parser("fit-curve", help="fit an accuracy curve to a real learning curve and save it (.msgpack)")
    p.add_argument("--source", required=True,
                   help="sklearn:<digits|breast_cancer|wine>:<logreg|mlp> | lcdb:<openml id>:<learner> (needs the lcdb "
                        "extra) | lcdb-extract:<openml id>:<learner> (shipped)")
    p.add_argument("--out", required=True, help="output file, e.g. curve.msgpack")
    p.add_argument("--model", choices=MODELS, default="learned", help="curve model (default learned)")
    p.add_argument("--samples-per-unit", type=float, default=1.0,
                   help="training samples per contract unit of data (default 1: a unit is a sample)")
    p.add_argument("--fit-up-to", type=float, default=None,
                   help="fit only sizes <= this many samples; report the error at the larger ones")
    p.add_argument("--members", type=int, default=8, help="learned: ensemble members (default 8)")
    p.add_argument("--components", type=int, default=3, help="learned: logistic components per member (default 3)")
    p.add_argument("--distill", type=int, default=4,
                   help="learned: save a one-member curve with this many components fitted to the ensemble mean "
                        "(faster to solve with; the ensemble is kept in the file's metadata). 0 saves the ensemble")
    p.add_argument("--seed", type=int, default=0, help="random seed of the fit")
    p.add_argument("--plot", help="also write a figure of data, fit and band here (.png, .pdf or .svg)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_fit_curve)


def _check_args(args) -> None:
    if not (np.isfinite(args.samples_per_unit) and args.samples_per_unit > 0):
        raise ValueError(f"--samples-per-unit must be a finite number > 0, got {args.samples_per_unit!r}")
    if args.members < 1 or args.components < 1:
        raise ValueError("--members and --components must be >= 1")
    if args.distill < 0:
        raise ValueError(f"--distill must be >= 0, got {args.distill!r}")
    writable_file("--out", args.out)  # before the fit
    if args.plot:
        writable_file("--plot", args.plot)
        if plot_format(args.plot) not in FIGURE_FORMATS:
            raise ValueError(f"--plot must end in one of {['.' + f for f in FIGURE_FORMATS]}, got {args.plot!r}")


def plot_format(path: str) -> str:
    """The figure format named by a file's suffix ("curve.pdf" -> "pdf")."""
    return os.path.splitext(path)[1].lstrip(".").lower()


def cmd_fit_curve(args: argparse.Namespace) -> int:
    """Fit, report, save. Returns ``EXIT_OK`` (errors raise ``ValueError``)."""
    import jax

    from ..curves import ScaledAccuracy, curve_to_dict, distill, fit_family, fit_learned, save_curve
    from ..data import load_source

    _check_args(args)
    try:
        data = load_source(args.source)
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise ValueError(f"source: {err}") from err
    keep = np.ones(data.sizes.shape, bool) if args.fit_up_to is None else data.sizes <= args.fit_up_to
    if args.fit_up_to is not None and keep.sum() < 3:
        raise ValueError(f"--fit-up-to {args.fit_up_to:g} leaves {int(keep.sum())} sizes to fit; need >= 3")
    fit_part, held_out = data._take(keep), ~keep  # held_out: (sizes,) where the extrapolation error is measured

    metadata: dict[str, Any] = {"source": data.key, "model": args.model, "unit": "samples",
                                "samples_per_unit": args.samples_per_unit, "sizes": data.sizes, "mean": data.mean,
                                "std": data.std, "fit_sizes": fit_part.sizes}
    result = (fit_learned(fit_part, members=args.members, components=args.components, seed=args.seed)
              if args.model == "learned" else fit_family(args.model, fit_part, seed=args.seed))
    ensemble = curve = result.curve
    if args.model == "learned" and args.distill:
        curve = distill(ensemble, components=args.distill, seed=args.seed).curve
        metadata["ensemble"] = curve_to_dict(ensemble)
    saved = curve if args.samples_per_unit == 1.0 else ScaledAccuracy(curve, args.samples_per_unit)
    metadata["train_rmse"] = float(np.sqrt(result.mse))

    with jax.enable_x64(True):
        fitted = np.asarray(jit(lambda c, x: c(x))(curve, data.sizes))
        band = []  # (2, sizes) the ensemble's 5 % and 95 % band, when it has one
        if hasattr(ensemble, "band"):
            band = [np.asarray(b) for b in jit(lambda c, x: c.band(x))(ensemble, data.sizes)]
    if held_out.any():
        metadata["extrapolation_mae"] = float(np.mean(np.abs(fitted[held_out] - data.mean[held_out])))
    path = save_curve(args.out, saved, metadata)

    if args.plot:
        from ..analysis.plots import plot_fits

        plot_fits(data, {args.model: ensemble}, args.plot, fit_up_to=args.fit_up_to, fmt=plot_format(args.plot))
    record = {"out": str(path), "source": data.key, "model": args.model, "samples_per_unit": args.samples_per_unit,
              "a_max": float(np.asarray(curve.a_max)), "train_rmse": metadata["train_rmse"],
              "extrapolation_mae": metadata.get("extrapolation_mae"), "sizes": data.sizes.tolist(),
              "observed": data.mean.tolist(), "fitted": fitted.tolist()}
    if band:
        record["band"] = [b.tolist() for b in band]
    if args.json:
        print(json.dumps(record))
        return EXIT_OK
    print(f"{data.key}: {args.model} curve fitted on {fit_part.sizes.size} of {data.sizes.size} sizes "
          f"(x in samples; saved with {args.samples_per_unit:g} samples per unit of data)")
    print(f"{'size':>8} {'observed':>9} {'fitted':>8}" + (f" {'band 5%':>8} {'band 95%':>8}" if band else ""))
    for i, s in enumerate(data.sizes):
        row = f"{s:8.0f} {data.mean[i]:9.4f} {fitted[i]:8.4f}"
        if band:
            row += f" {band[0][i]:8.4f} {band[1][i]:8.4f}"
        print(row + ("  (held out)" if held_out[i] else ""))
    print(f"a_max = {record['a_max']:.4f}   train RMSE = {record['train_rmse']:.4g}"
          + (f"   extrapolation MAE = {record['extrapolation_mae']:.4g}" if held_out.any() else ""))
    print(f"saved: {path}")
    return EXIT_OK
