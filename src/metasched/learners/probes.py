"""Probes of a meta-learner at θ0 that schedulers compute for themselves: free functions of a
learner, its parameters and episodes (BASS's contexts and look-ahead losses, GCP's query
confusions, PAML's task embeddings).

Example:
    >>> flat = two_step_parameters(learner, learner.parameters(), episode)  # doctest: +SKIP
    >>> one_step_query_loss(learner, unflatten(learner, flat[1]), other)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metasched.learners.base import MetaLearner
from metasched.learners.functional import Adaptation, Params, sgd_steps, task_views
from metasched.tasks.episode import Episode


def full_forward(learner: MetaLearner, params: Params, x: torch.Tensor) -> torch.Tensor:
    """The whole model under ``params`` (no task dimension) on one task's inputs."""
    return learner.forward(task_views(params, 1), x.unsqueeze(0))[0]


def embed(learner: MetaLearner, params: Params, episodes: list[Episode]) -> torch.Tensor:
    """(P, D) task embeddings: the mean backbone features of each task's support and query
    inputs at ``params``, L2-normalised. They describe which inputs a task covers, not its
    labels."""
    one = task_views(params, 1)
    with torch.no_grad():
        rows = [
            F.normalize(
                learner.features(one, torch.cat([e.support_x, e.query_x]).unsqueeze(0))[0].mean(0),
                dim=0,
            )
            for e in episodes
        ]
    return torch.stack(rows)


def two_step_parameters(learner: MetaLearner, params: Params, episode: Episode) -> torch.Tensor:
    """(2, D): the flat parameters after one SGD step of the whole network on the support,
    θs = θ0 - α ∇L(support; θ0), and after one more on the query, θsq = θs - α ∇L(query;
    θs), with α the inner learning rate (the contexts of BASS)."""
    lr = learner.train_adaptation.lr
    weights = {n: p.detach().requires_grad_() for n, p in params.items()}
    flats = []
    for x, y in ((episode.support_x, episode.support_y), (episode.query_x, episode.query_y)):
        loss = learner.objective.loss(full_forward(learner, weights, x), y)
        grads = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
        weights = {
            n: (p if g is None else p - lr * g).detach().requires_grad_()
            for (n, p), g in zip(weights.items(), grads)
        }
        flats.append(torch.cat([p.detach().flatten() for p in weights.values()]))
    return torch.stack(flats)


def unflatten(learner: MetaLearner, flat: torch.Tensor) -> Params:
    """Parameters by name from a flat vector laid out as :func:`two_step_parameters`."""
    params, start = {}, 0
    for name, p in learner.parameters().items():
        params[name] = flat[start : start + p.numel()].view_as(p)
        start += p.numel()
    return params


def one_step_query_loss(learner: MetaLearner, params: Params, episode: Episode) -> float:
    """The query loss after one plain SGD step of the whole network on the support (the
    inner learning rate), without a meta-graph."""
    detached = {n: p.detach() for n, p in params.items()}

    def support_loss(weights: Params) -> torch.Tensor:
        return learner.objective.loss(
            full_forward(learner, weights, episode.support_x), episode.support_y
        )

    with torch.enable_grad():
        step = Adaptation(learner.train_adaptation.lr, 1)
        fast = sgd_steps(support_loss, detached, step, False)
    with torch.no_grad():
        query = full_forward(learner, fast, episode.query_x)
        return float(learner.objective.loss(query, episode.query_y))


def query_confusion(learner: MetaLearner, params: Params, episode: Episode) -> torch.Tensor:
    """(N, N): row c is the mean predicted class distribution of the query examples of true
    class c, after adaptation (training settings) at ``params``; classification only."""
    with torch.no_grad():
        predictions = learner.predict(params, episode, learner.train_adaptation)
        probabilities = F.softmax(predictions, dim=-1)
        classes = probabilities.shape[-1]
        one_hot = F.one_hot(episode.query_y.long(), classes).to(probabilities.dtype)
        counts = one_hot.sum(0).clamp_min(1).unsqueeze(1)
        return one_hot.T @ probabilities / counts
