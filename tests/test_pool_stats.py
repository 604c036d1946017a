"""Pool statistics against a direct, slow, obvious computation with plain modules."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metasched.learners import ANIL, MAML, Adaptation
from metasched.models import Conv4
from metasched.tasks import Episode
from metasched.training.gradients import CandidateGradients


def _tiny_pool(seed: int = 0) -> tuple[Conv4, list[Episode]]:
    torch.manual_seed(seed)
    model = Conv4(3, in_channels=1, filters=4, image_size=16).double()
    episodes = [
        Episode(
            support_x=torch.rand(6, 1, 16, 16, dtype=torch.float64),
            support_y=torch.randint(0, 3, (6,)),
            query_x=torch.rand(9, 1, 16, 16, dtype=torch.float64),
            query_y=torch.tensor([0, 1, 2] * 3),
        )
        for _ in range(4)
    ]
    return model, episodes


def _direct_stats(model: Conv4, episode: Episode, head_only: bool, lr: float, steps: int):
    """Per-layer gradients by .backward() on a copy, adaptation by torch.optim.SGD."""
    layers = [n for n, _ in model.named_parameters() if ".norm." not in n]

    def grads(x, y):
        net = copy.deepcopy(model)
        F.cross_entropy(net(x), y).backward()
        return {n: p.grad.flatten() for n, p in net.named_parameters()}

    g_s, g_q = grads(episode.support_x, episode.support_y), grads(episode.query_x, episode.query_y)
    adapted = copy.deepcopy(model)
    optimiser = torch.optim.SGD(
        adapted.head.parameters() if head_only else adapted.parameters(), lr
    )
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(adapted(episode.support_x), episode.support_y).backward()
        optimiser.step()
    with torch.no_grad():
        loss = F.cross_entropy(adapted(episode.query_x), episode.query_y)
    return (
        loss,
        torch.stack([g_s[n].norm() for n in layers]),
        torch.stack([g_q[n].norm() for n in layers]),
        torch.stack([g_s[n] @ g_q[n] for n in layers]),
        torch.stack([F.cosine_similarity(g_s[n], g_q[n], dim=0, eps=1e-8) for n in layers]),
    )


@pytest.mark.parametrize("kind", [ANIL, MAML])
@pytest.mark.parametrize("keep_graph", [False, True])
def test_pool_stats_match_a_direct_computation(kind, keep_graph: bool) -> None:
    model, episodes = _tiny_pool()
    learner = kind(model, "cross_entropy", Adaptation(0.4, 3), Adaptation(0.4, 3))
    assert len(learner.scored_layers()) == 10  # 4 convs and the head, weight and bias each
    scores = learner.score_pool(learner.parameters(), episodes, keep_graph)
    stats = scores.stats
    for i, episode in enumerate(episodes):
        loss, support_norm, query_norm, dot, cosine = _direct_stats(
            model, episode, kind is ANIL, 0.4, 3
        )
        torch.testing.assert_close(stats.query_loss[i], loss, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(stats.support_norm[i], support_norm, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(stats.query_norm[i], query_norm, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(stats.dot[i], dot, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(stats.cosine[i], cosine, rtol=1e-9, atol=1e-12)
    assert (scores.losses is not None) == keep_graph


@pytest.mark.parametrize("kind", [ANIL, MAML])
def test_kept_graphs_give_the_training_meta_gradient(kind) -> None:
    model, episodes = _tiny_pool(1)
    learner = kind(model, "cross_entropy", Adaptation(0.4, 2), Adaptation(0.4, 2))
    params = learner.parameters()
    scores = learner.score_pool(params, episodes, keep_graph=True)
    reused = torch.autograd.grad(scores.losses[2], list(params.values()))
    direct = torch.autograd.grad(
        learner.query_outcome(params, episodes[2]).loss, list(params.values())
    )
    for a, b in zip(reused, direct):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _same_shape_pool(seed: int = 2) -> tuple[Conv4, list[Episode]]:
    model, episodes = _tiny_pool(seed)
    return model.float(), [
        Episode(e.support_x.float(), e.support_y, e.query_x.float(), e.query_y) for e in episodes
    ]


@pytest.mark.parametrize("kind", [ANIL, MAML])
def test_grouped_pool_stats_equal_the_loop_to_1e_5(kind) -> None:
    model, episodes = _same_shape_pool()
    loop = kind(model, "cross_entropy", Adaptation(0.4, 3), Adaptation(0.4, 3), batching="loop")
    grouped = kind(
        model, "cross_entropy", Adaptation(0.4, 3), Adaptation(0.4, 3), batching="grouped"
    )
    a = loop.score_pool(loop.parameters(), episodes, keep_graph=False)
    b = grouped.score_pool(grouped.parameters(), episodes, keep_graph=False)
    for name in ("query_loss", "support_norm", "query_norm", "dot"):
        torch.testing.assert_close(
            getattr(b.stats, name), getattr(a.stats, name), rtol=1e-5, atol=1e-5
        )
    torch.testing.assert_close(b.scores, a.scores)


@pytest.mark.parametrize("kind", [ANIL, MAML])
@pytest.mark.parametrize("first_order", [False, True])
def test_grouped_meta_gradient_equals_the_loop(kind, first_order: bool) -> None:
    model, episodes = _same_shape_pool(3)
    gradients = []
    for batching in ("loop", "grouped"):
        learner = kind(
            model,
            "cross_entropy",
            Adaptation(0.4, 2),
            Adaptation(0.4, 2),
            first_order,
            batching=batching,
        )
        params = learner.parameters()
        outcomes = learner.outcomes(params, episodes)
        loss = torch.stack([o.loss for o in outcomes]).mean()
        gradients.append(torch.autograd.grad(loss, list(params.values())))
    for a, b in zip(*gradients):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", [ANIL, MAML])
def test_candidate_gradients_are_computed_once_and_equal_recomputation(kind) -> None:
    """The look-ahead and the meta-update share candidates' gradients from the kept graphs;
    their means equal recomputing the chosen candidates from scratch, repeats included."""
    model, episodes = _tiny_pool(4)
    learner = kind(model, "cross_entropy", Adaptation(0.4, 2), Adaptation(0.4, 2))
    params = learner.parameters()
    kept = CandidateGradients(
        learner, params, episodes, learner.score_pool(params, episodes, keep_graph=True)
    )
    recomputed = CandidateGradients(learner, params, episodes, None)
    for chosen in ([0, 2], [2, 3, 3]):
        a, b = kept.mean(np.array(chosen)), recomputed.mean(np.array(chosen))
        for g, h in zip(a.gradient, b.gradient):
            torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-12)
        assert a.loss == pytest.approx(b.loss, rel=1e-12)
        assert a.score == pytest.approx(b.score)
    assert sorted(kept.cache) == [0, 2, 3]  # candidate 2 was differentiated once
    assert recomputed.cache == {}
