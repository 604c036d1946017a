"""Meta-learners: MAML, first-order MAML and ANIL on parameter dictionaries."""

from metasched.learners.anil import ANIL
from metasched.learners.base import Adaptation, MetaLearner, Params, TaskOutcome, sgd_steps
from metasched.learners.maml import MAML

__all__ = ["ANIL", "MAML", "Adaptation", "MetaLearner", "Params", "TaskOutcome", "sgd_steps"]
