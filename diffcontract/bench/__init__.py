"""The evaluation harness: versioned suites with certified optima, and ``evaluate`` for any mechanism.

``load_suite(name)`` gives the problems and their certified optima (``SUITES``); ``evaluate(mechanism,
suite)`` scores any problem -> contract callable (``method_mechanism("alm")``, or a user's network)
by its exact gap, violations, regret and time; ``summary_table``, ``reports_json`` and ``plot_gaps``
report several mechanisms at once. ``diffcontract bench`` runs it from the command line.
"""

from .evaluate import METHODS, contract_menu, evaluate, method_mechanism, network_mechanism
from .measure import ContractMeasures, measure_contract
from .report import BenchReport, plot_gaps, reports_json, summary_table
from .suites import SUITES, Suite, load_suite

__all__ = ["BenchReport", "ContractMeasures", "METHODS", "SUITES", "Suite", "contract_menu", "evaluate",
           "load_suite", "measure_contract", "method_mechanism", "network_mechanism", "plot_gaps", "reports_json", "summary_table"]
