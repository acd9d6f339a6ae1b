"""Analysis: the paper's scenarios, reports and figures."""

from .report import solution_record, solution_table
from .scenarios import PAPER_SCENARIOS, paper_scenario
from .sweep import SweepResult, save_sweep, two_type_sweep
from .welfare import Welfare, information_cost, information_rents, welfare

__all__ = ["PAPER_SCENARIOS", "SweepResult", "Welfare", "information_cost", "information_rents", "paper_scenario",
           "save_sweep", "solution_record", "solution_table", "two_type_sweep", "welfare"]
