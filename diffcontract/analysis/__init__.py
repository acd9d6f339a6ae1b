"""Analysis: the paper's scenarios, reports and figures."""

from .report import solution_record, solution_table
from .scenarios import PAPER_SCENARIOS, paper_scenario

__all__ = ["PAPER_SCENARIOS", "paper_scenario", "solution_record", "solution_table"]
