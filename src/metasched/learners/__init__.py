"""Meta-learners: MAML, first-order MAML and ANIL on parameter dictionaries."""

from metasched.learners.anil import ANIL
from metasched.learners.base import Adaptation, MetaLearner, Params, TaskOutcome, sgd_steps
from metasched.learners.maml import MAML
from metasched.learners.objectives import OBJECTIVES, Classification, Objective, Regression

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
    "TaskOutcome",
    "sgd_steps",
]
