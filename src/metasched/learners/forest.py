"""A random forest fitted on each task's support set alone: the non-meta baseline that drug
discovery practitioners use, judged on the same episodes and by the same objective."""

from __future__ import annotations

from typing import Any

import torch

from metasched.errors import MetaschedError
from metasched.learners.functional import Params
from metasched.learners.objectives import Objective
from metasched.learners.results import TaskResults, judged


class RandomForestBaseline:
    """scikit-learn's ``RandomForestRegressor`` per task, with the evaluation call of a
    meta-learner (``params`` are ignored: nothing is meta-learned).

    It fits the support's inputs and (possibly standardised) targets and predicts the query;
    the objective turns the predictions into the same loss, score and original-scale metrics
    as a meta-learner's. Forests are invariant to the standardisation up to that affine map.

    Args:
        objective: the regression objective.
        trees: the number of trees (``n_estimators``).
        max_features: features tried per split (scikit-learn's meaning: 1.0 all, "sqrt").
        seed: the forest's random state, the same for every task.
    """

    def __init__(
        self, objective: Objective, trees: int = 100, max_features: Any = 1.0, seed: int = 0
    ) -> None:
        try:
            from sklearn.ensemble import RandomForestRegressor
        except ImportError as error:
            raise MetaschedError(
                "the random forest needs scikit-learn: pip install 'metasched[chem]'"
            ) from error
        if trees < 1:
            raise MetaschedError(f"a random forest needs at least one tree, got {trees}")
        self.objective = objective
        self.description = f"random forest, {trees} trees, fitted per task"
        self._forest = lambda: RandomForestRegressor(
            n_estimators=trees, max_features=max_features, random_state=seed, n_jobs=1
        )

    def evaluate(self, params: Params, episodes: list[Any]) -> TaskResults:
        """Fits a forest on each episode's support and judges its query predictions."""
        return TaskResults.cat([self._evaluate(episode.to("cpu")) for episode in episodes])

    def _evaluate(self, episode: Any) -> TaskResults:
        forest = self._forest()
        forest.fit(episode.support_x.numpy(), episode.support_y.numpy())
        predicted = forest.predict(episode.query_x.numpy())
        predictions = torch.as_tensor(predicted, dtype=torch.float32).view(1, -1, 1)
        return judged(self.objective, predictions, episode.query_y.unsqueeze(0), True, [episode])
