"""Mechanism: realizing a contract's rewards outcome by outcome, verifying and simulating it."""

from ._record import Contract, load_contract
from .assignment import Realization, proportional_assignment
from .certificate import DualityGapBound, concavity_threshold, duality_gap_bound, duality_gap_report
from .realize import RealizedRewards, realize
from .simulate import SimulationReport, best_responses, simulate
from .verify import VerificationReport, Violation, verify

__all__ = ["Contract", "DualityGapBound", "Realization", "RealizedRewards", "SimulationReport", "VerificationReport",
           "Violation", "best_responses", "concavity_threshold", "duality_gap_bound", "duality_gap_report",
           "load_contract", "proportional_assignment", "realize", "simulate", "verify"]
