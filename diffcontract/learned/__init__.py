"""Amortized learned mechanisms: a network maps a problem (N, p, c) to a contract, trained over a
distribution of problems on an augmented Lagrangian; a repair step makes every contract exactly
feasible, so it serves as a fast solver or as a warm start for the ALM.

    from diffcontract.learned import pretrained
    mechanism = pretrained()                 # I = 3, N in 2..12, c in [1e-3, 1]
    solution = mechanism.solve(problem)      # status "feasible", no optimality claim
    diffcontract.solve(problem, method="alm", warm_start=mechanism.warm_start(problem))
"""

from .distribution import ProblemDistribution
from .io import PACKAGED, load_mechanism, pretrained, save_mechanism
from .mechanism import LearnedContract, LearnedMechanism, learned_contract, propose
from .network import MechanismNetwork, data_reference, decode_contributions, problem_features
from .repair import Repaired, repair
from .train import TrainConfig, train_mechanism

__all__ = ["LearnedContract", "LearnedMechanism", "MechanismNetwork", "PACKAGED", "ProblemDistribution", "Repaired",
           "TrainConfig", "data_reference", "decode_contributions", "learned_contract", "load_mechanism",
           "pretrained", "problem_features", "propose", "repair", "save_mechanism", "train_mechanism"]
