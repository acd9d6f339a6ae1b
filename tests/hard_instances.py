"""Problems a solver once got wrong, shared by the solver tests (found by
``benchmarks/alm_vs_exact.py`` with seeds 0 and 2; each comment says what went wrong and what the
best known optimum E[v(a)] is, found by both solvers from the current starts).
"""

from __future__ import annotations

import diffcontract as dc

# A cheap type trains alone on 2,331 units and the costly ones on none: no exclude-then-pool
# menu is feasible; the floored family finds the start (the m^res envelope led the ALM to a local
# optimum with type 1 excluded, 0.24 % below).
CHEAP_TYPE_TRAINS_ALONE = dc.ContractProblem(
    participants=4, probs=[0.26283788094422394, 0.14526829195550697, 0.591893827100269],
    costs=[0.7745642002665901, 0.25278488942948923, 0.003538587785079879])

# The simplified set is empty and the full set's feasible region is not connected: with types
# 1-2 pooled at m0 and type 3 at ~2,500, m0 <= 6 is feasible (E[a] 0.06) and 20 <= m0 <= 63 again
# (0.53). The exact solver started from the m^res envelope and reported 6.44 where 56.98 is
# reached (8.8x); the full set's floored candidate starts in the better component.
DISCONNECTED_FEASIBLE_SET = dc.ContractProblem(
    participants=4, probs=[0.9539394186437341, 0.026442425906205092, 0.019618155450060817],
    costs=[0.7400303661308623, 0.4762638626366794, 0.003241038949606968])
DISCONNECTED_OPTIMUM = 56.9762253541727

# SLSQP on one common data scale stepped from (97, 97, 435, 686, 1576) to m_1 = 0 and stopped at
# 74.806 (type 1 excluded); a step relative to each contribution reaches 75.106.
EXCLUDED_BY_A_LONG_STEP = dc.ContractProblem(
    participants=3, probs=[0.2567906774294957, 0.2349582399516136, 0.2830382764831107, 0.19446957807516285,
                           0.030743228060617335],
    costs=[0.5896448087486738, 0.2544730154631358, 0.04138121356739469, 0.021294060661170462,
           0.006286237960711253])
EXCLUDED_BY_A_LONG_STEP_OPTIMUM = 75.106139061382

# A near-degenerate vertex (5 binding constraints on 5 variables, one multiplier 2e-7): projected
# Adam creeps along a flat valley for 40 outer iterations and the old active-set guesses never
# held the right set; the SQP polish converges from the first iterate.
NEAR_DEGENERATE_VERTEX = dc.ContractProblem(
    participants=12, probs=[0.1412702270338241, 0.0409661736856979, 0.1411063791078586, 0.4473824939786728,
                            0.2292747261939466],
    costs=[0.404168891327561, 0.07983805313157966, 0.0024110656020729865, 0.0016622208133645277,
           0.0016254692597806788])

# Contributions must travel far from the start (to 11,600 from 4,800): 60-step Adam blocks did
# not finish in 40 outer iterations.
FAR_FROM_THE_START = dc.ContractProblem(
    participants=6, probs=[0.02834335518289715, 0.13399694064340836, 0.10072335400778631, 0.5958719984856659,
                           0.14106435168024228],
    costs=[0.7086063442894791, 0.0995024821880176, 0.0015788132980475993, 0.0012347988454794554,
           0.0012118467949786974])

# N = 2, the simplified set empty: both solvers' full sets ended at 58.559 with types 1-3
# excluded, where pooling them at 50 reaches 59.705.
POOL_BEATS_EXCLUSION = dc.ContractProblem(
    participants=2, probs=[0.019832237141063035, 0.35621497585393164, 0.023344948217670875, 0.20210532828222383,
                           0.39850251050511065],
    costs=[0.8820332735175549, 0.8690927469765147, 0.835513005686125, 0.33991606230499694, 0.01872058674317233])
POOL_BEATS_EXCLUSION_OPTIMUM = 59.705442053943706

# The two best candidates were one menu (a floored row whose floor is inactive equals its pooled
# row), so the ALM's two starts were one: it ended at 72.532 where the next candidate leads to 72.745.
DUPLICATE_CANDIDATES = dc.ContractProblem(
    participants=8, probs=[0.30966041358440105, 0.12139023512530114, 0.11417596064385756, 0.19943875637716146,
                           0.25533463426927866],
    costs=[0.7396120500956639, 0.6715550154257307, 0.5448987140160803, 0.2551164535115744, 0.1411963601036385])

# I = 4, simplified set empty, a pool of three in the full set: the full ALM's L-BFGS stalled at
# a violation of 4e-5 that never raised the penalty.
STALLED_FULL_POOL = dc.ContractProblem(
    participants=7, probs=[0.2711337226129226, 0.6896685892070697, 0.01959884409000383, 0.01959884409000383],
    costs=[0.5852695816508545, 0.4855913233176728, 0.47388659921633447, 0.003386534704030953])

HARD = {3: [CHEAP_TYPE_TRAINS_ALONE, DISCONNECTED_FEASIBLE_SET],
        4: [STALLED_FULL_POOL],
        5: [EXCLUDED_BY_A_LONG_STEP, NEAR_DEGENERATE_VERTEX, FAR_FROM_THE_START, POOL_BEATS_EXCLUSION,
            DUPLICATE_CANDIDATES]}

# Found by the certified optima of diffcontract.bench (random-i3, seed 0): the simplified set's optimum,
# E[a] = 0.70747, is 0.25 % below the full set's, where type 3's IR binds and the local downward IC
# above it goes slack; the driver's binding-IR check solves the full set from there.
SIMPLIFIED_OPTIMUM_BELOW_FULL = dc.ContractProblem(
    participants=2, probs=[0.3262403479279821, 0.2104260899693839, 0.46333356210263404],
    costs=[0.6615992361821835, 0.2610767994483785, 0.010700077251662934])
SIMPLIFIED_OPTIMUM_BELOW_FULL_OPTIMUM = 70.92377904513229  # certified, gap < 1e-6

# A local optimum of the full set with type 1 at m = 7.4 (the flat region of a at N m_1 = 22 units)
# 2.4e-6 below the certified optimum at m_1 = 27.6; the exact solver stops at the former (the ALM, and
# method="global", find the latter). Kept as the catalogue's open case.
FLAT_REGION_LOCAL_OPTIMUM = dc.ContractProblem(
    participants=3, probs=[0.048264519048878414, 0.2590736351672669, 0.6926618457838547],
    costs=[0.4623298442360911, 0.36454843053397434, 0.01704454130691983])
FLAT_REGION_LOCAL_OPTIMUM_OPTIMUM = 84.53706312707729  # certified, gap < 1e-6
