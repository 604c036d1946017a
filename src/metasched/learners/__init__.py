"""Meta-learners: MAML, first-order MAML, ANIL and ridge-head ANIL on parameter dictionaries."""

from metasched.learners.anil import ANIL
from metasched.learners.base import Adaptation, MetaLearner, Params, TaskResults, sgd_steps
from metasched.learners.maml import MAML
from metasched.learners.objectives import OBJECTIVES, Classification, Objective, Regression
from metasched.learners.ridge import RidgeANIL

#: Every meta-learner by its config name (``learner.algorithm``); first-order MAML is MAML
#: with ``learner.first_order``.
LEARNERS: dict[str, type[MetaLearner]] = {"maml": MAML, "anil": ANIL, "ridge": RidgeANIL}

#: The results version of this layer: bump it in the commit that changes adaptation, losses,
#: scores, metrics and the pool statistics, i.e. any number a run records (tests/golden replays
#: short runs and fails otherwise).
RESULTS_VERSION = 1

__all__ = [
    "ANIL",
    "LEARNERS",
    "MAML",
    "OBJECTIVES",
    "RESULTS_VERSION",
    "Adaptation",
    "Classification",
    "MetaLearner",
    "Objective",
    "Params",
    "Regression",
    "RidgeANIL",
    "TaskResults",
    "sgd_steps",
]
