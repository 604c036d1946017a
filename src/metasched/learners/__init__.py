"""Meta-learners: MAML, first-order MAML, ANIL and ridge-head ANIL on parameter dictionaries."""

from metasched.learners.anil import ANIL
from metasched.learners.base import Adaptation, MetaLearner, Params, TaskResults, sgd_steps
from metasched.learners.maml import MAML
from metasched.learners.objectives import OBJECTIVES, Classification, Objective, Regression
from metasched.learners.ridge import RidgeANIL

__all__ = [
    "ANIL",
    "MAML",
    "OBJECTIVES",
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
