"""Accuracy curves a(x) and valuations v(r)."""

from .accuracy import Arctan, GeneralizationBound, PowerLaw
from .spec import accuracy_from_spec, valuation_from_spec
from .valuation import Exponential, Linear

SGB = GeneralizationBound

__all__ = ["Arctan", "Exponential", "GeneralizationBound", "Linear", "PowerLaw", "SGB",
           "accuracy_from_spec", "valuation_from_spec"]
