"""Accuracy curves a(x) and valuations v(r)."""

from .accuracy import Arctan, GeneralizationBound, PowerLaw
from .families import MMF, Exp3, LogPower, Pow4, ScaledAccuracy, Weibull
from .io import curve_from_dict, curve_to_dict, load_curve, save_curve
from .learned import LearnedAccuracy
from .spec import accuracy_from_spec, valuation_from_spec
from .valuation import Exponential, Linear

SGB = GeneralizationBound

# Fitting (optax, ~0.3 s to import) loads on first use, not with ``import diffcontract``.
_FITTING = ("FAMILIES", "CurveFamily", "FitResult", "distill", "fit_family", "fit_family_batch", "fit_learned",
            "fit_learned_batch", "unstack_curve")


def __getattr__(name: str):
    if name in _FITTING:
        from . import fitting

        return getattr(fitting, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Arctan", "CurveFamily", "Exp3", "Exponential", "FAMILIES", "FitResult", "GeneralizationBound",
           "LearnedAccuracy", "Linear", "LogPower", "MMF", "Pow4", "PowerLaw", "SGB", "ScaledAccuracy", "Weibull",
           "accuracy_from_spec", "curve_from_dict", "curve_to_dict", "distill", "fit_family", "fit_family_batch",
           "fit_learned", "fit_learned_batch", "load_curve", "save_curve", "unstack_curve", "valuation_from_spec"]
