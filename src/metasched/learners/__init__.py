"""Meta-learners on parameter dictionaries: MAML, first-order MAML, ANIL, ridge-head ANIL and
a deep-kernel GP; and per-task baselines (a random forest, a GP on fingerprints)."""

from metasched.learners.anil import ANIL
from metasched.learners.base import MetaLearner
from metasched.learners.functional import Adaptation, Params, sgd_steps
from metasched.learners.gp import DeepKernelGP, TanimotoGP
from metasched.learners.maml import MAML
from metasched.learners.objectives import OBJECTIVES, Classification, Objective, Regression
from metasched.learners.results import TaskResults
from metasched.learners.ridge import RidgeANIL

#: Every meta-learner by its config name (``learner.algorithm``); first-order MAML is MAML
#: with ``learner.first_order``.
LEARNERS: dict[str, type[MetaLearner]] = {
    "maml": MAML,
    "anil": ANIL,
    "ridge": RidgeANIL,
    "gp": DeepKernelGP,
}

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
    "DeepKernelGP",
    "MetaLearner",
    "Objective",
    "Params",
    "Regression",
    "RidgeANIL",
    "TanimotoGP",
    "TaskResults",
    "sgd_steps",
]
