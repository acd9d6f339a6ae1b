"""Mechanism: realizing a contract's rewards outcome by outcome."""

from .assignment import Realization, proportional_assignment

__all__ = ["Realization", "proportional_assignment"]
