"""Pool statistics against a direct, slow, obvious computation with plain modules."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metasched.learners import ANIL, MAML, Adaptation, Classification, Regression, RidgeANIL, probes
from metasched.models import Conv4, FingerprintMLP
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
    layers = [n for n, _ in model.named_parameters() if ".norm." not in n]  # as the reference

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
    learner = kind(model, Classification(), Adaptation(0.4, 3), Adaptation(0.4, 3))
    layers = learner.scored_layers()
    assert len(layers) == 10  # 4 convs and the head, weight and bias each
    # Batch norm subtracts a conv's bias again: its gradient is zero up to round-off.
    cancelled = torch.tensor([n.endswith("conv.bias") for n in layers])
    measured = learner.measure_pool(learner.parameters(), episodes, keep_graph)
    stats = measured.stats
    for i, episode in enumerate(episodes):
        loss, support_norm, query_norm, dot, cosine = _direct_stats(
            model, episode, kind is ANIL, 0.4, 3
        )
        torch.testing.assert_close(stats.query_loss[i], loss, rtol=1e-9, atol=1e-12)
        live = ~cancelled
        for ours, direct in (
            (stats.support_norm[i], support_norm),
            (stats.query_norm[i], query_norm),
            (stats.dot[i], dot),
            (stats.cosine[i], cosine),
        ):
            torch.testing.assert_close(ours[live], direct[live], rtol=1e-9, atol=1e-12)
            assert torch.all(ours[cancelled] == 0)  # exactly zero, not standardised noise
        assert support_norm[cancelled].max() < 1e-10 < support_norm[live].min()
    assert (measured.graphs is not None) == keep_graph


@pytest.mark.parametrize("kind", [ANIL, MAML])
def test_losses_only_measurement_equals_the_full_one(kind) -> None:
    model, episodes = _tiny_pool(5)
    learner = kind(model, Classification(), Adaptation(0.4, 3), Adaptation(0.4, 3))
    params = learner.parameters()
    full = learner.measure_pool(params, episodes, keep_graph=False)
    for keep_graph in (False, True):
        losses = learner.measure_pool(params, episodes, keep_graph, gradients=False)
        assert not losses.stats.has_gradients
        torch.testing.assert_close(losses.stats.query_loss, full.stats.query_loss)
        torch.testing.assert_close(losses.scores.double(), full.scores.double())
        assert (losses.graphs is not None) == keep_graph


def test_two_step_parameters_and_one_step_loss_match_torch_optim() -> None:
    model, episodes = _tiny_pool(6)
    learner = ANIL(model, Classification(), Adaptation(0.3, 5), Adaptation(0.3, 5))
    episode = episodes[0]
    two = probes.two_step_parameters(learner, learner.parameters(), episode)
    net = copy.deepcopy(model)
    optimiser = torch.optim.SGD(net.parameters(), 0.3)
    flats = []
    for x, y in ((episode.support_x, episode.support_y), (episode.query_x, episode.query_y)):
        optimiser.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimiser.step()
        flats.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    torch.testing.assert_close(two, torch.stack(flats), rtol=1e-9, atol=1e-12)
    start = probes.unflatten(learner, two[1])
    other = episodes[1]
    optimiser.zero_grad()
    F.cross_entropy(net(other.support_x), other.support_y).backward()
    optimiser.step()
    with torch.no_grad():
        direct = F.cross_entropy(net(other.query_x), other.query_y).item()
    assert probes.one_step_query_loss(learner, start, other) == pytest.approx(direct, rel=1e-9)


def test_query_confusion_and_embeddings_match_a_direct_computation() -> None:
    """GCP's confusion rows are the mean softmax of each true class's query examples after
    SGD on the head (torch.optim on a copy); PAML's embeddings are the normalised mean
    backbone features of the task's inputs."""
    model, episodes = _tiny_pool(7)
    learner = ANIL(model, Classification(), Adaptation(0.4, 2), Adaptation(0.4, 2))
    episode = episodes[0]
    confusion = probes.query_confusion(learner, learner.parameters(), episode)
    adapted = copy.deepcopy(model)
    optimiser = torch.optim.SGD(adapted.head.parameters(), 0.4)
    for _ in range(2):
        optimiser.zero_grad()
        F.cross_entropy(adapted(episode.support_x), episode.support_y).backward()
        optimiser.step()
    with torch.no_grad():
        softmax = F.softmax(adapted(episode.query_x), dim=-1)
    for c in range(3):
        expected = softmax[episode.query_y == c].mean(0)
        torch.testing.assert_close(confusion[c], expected, rtol=1e-9, atol=1e-12)
    embeddings = probes.embed(learner, learner.parameters(), episodes[:2])
    for row, e in zip(embeddings, episodes[:2]):
        with torch.no_grad():
            features = model.backbone(torch.cat([e.support_x, e.query_x])).mean(0)
        torch.testing.assert_close(row, F.normalize(features, dim=0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", [ANIL, MAML])
def test_kept_graphs_give_the_training_meta_gradient(kind) -> None:
    model, episodes = _tiny_pool(1)
    learner = kind(model, Classification(), Adaptation(0.4, 2), Adaptation(0.4, 2))
    params = learner.parameters()
    measured = learner.measure_pool(params, episodes, keep_graph=True)
    assert measured.graphs is not None
    reused = torch.autograd.grad(measured.graphs[2], list(params.values()))
    direct_graphs = learner.outcomes(params, [episodes[2]]).graphs
    assert direct_graphs is not None
    direct = torch.autograd.grad(direct_graphs[0], list(params.values()))
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
    loop = kind(model, Classification(), Adaptation(0.4, 3), Adaptation(0.4, 3), batching="loop")
    grouped = kind(
        model, Classification(), Adaptation(0.4, 3), Adaptation(0.4, 3), batching="grouped"
    )
    a = loop.measure_pool(loop.parameters(), episodes, keep_graph=False)
    b = grouped.measure_pool(grouped.parameters(), episodes, keep_graph=False)
    for name in ("query_loss", "support_norm", "query_norm", "dot"):  # zeros included
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
            Classification(),
            Adaptation(0.4, 2),
            Adaptation(0.4, 2),
            first_order,
            batching=batching,
        )
        params = learner.parameters()
        graphs = learner.outcomes(params, episodes).graphs
        assert graphs is not None
        loss = torch.stack(graphs).mean()
        gradients.append(torch.autograd.grad(loss, list(params.values())))
    for a, b in zip(*gradients):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", [ANIL, MAML])
def test_candidate_gradients_are_computed_once_and_equal_recomputation(kind) -> None:
    """The look-ahead and the meta-update share candidates' gradients from the kept graphs;
    their means equal recomputing the chosen candidates from scratch, repeats included."""
    model, episodes = _tiny_pool(4)
    learner = kind(model, Classification(), Adaptation(0.4, 2), Adaptation(0.4, 2))
    params = learner.parameters()
    kept = CandidateGradients(
        learner, params, episodes, learner.measure_pool(params, episodes, keep_graph=True)
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
    # Weighted: Σ w_k ∇L_k, kept graphs or recomputed, and with tasks added after measuring.
    weights = np.array([0.7, 0.2, 0.1])
    a, b = kept.combine([0, 2, 3], weights), recomputed.combine([0, 2, 3], weights)
    singles = [recomputed.mean([i]).gradient for i in (0, 2, 3)]
    for k, (g, h) in enumerate(zip(a.gradient, b.gradient)):
        expected = sum(w * s[k] for w, s in zip(weights, singles))
        torch.testing.assert_close(g, expected, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(h, expected, rtol=1e-9, atol=1e-12)
    (added,) = kept.add([episodes[1]])
    mixed = kept.combine([0, added], np.array([0.5, 0.5]))
    for g, h in zip(mixed.gradient, recomputed.mean([0, 1]).gradient):
        torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", [ANIL, MAML, RidgeANIL])
def test_loop_and_grouped_agree_on_assays(kind) -> None:
    """Regression on the fingerprint MLP with per-task batch norm: the pool statistics, the
    scores and the meta-gradient are the same computation run per task or grouped."""
    torch.manual_seed(0)
    model = FingerprintMLP(32, hidden=16, batch_norm=True)
    generator = torch.Generator().manual_seed(1)
    episodes = [
        Episode(
            torch.rand(8, 32, generator=generator),
            torch.randn(8, generator=generator),
            torch.rand(12, 32, generator=generator),
            torch.randn(12, generator=generator),
        )
        for _ in range(5)
    ]
    results = {}
    for batching in ("loop", "grouped"):
        learner = kind(
            model, Regression(), Adaptation(0.1, 3), Adaptation(0.1, 3), batching=batching
        )
        params = learner.parameters()
        measured = learner.measure_pool(params, episodes, keep_graph=False)
        graphs = learner.outcomes(params, episodes).graphs
        assert graphs is not None and measured.stats is not None
        gradient = torch.autograd.grad(torch.stack(graphs).mean(), list(params.values()))
        results[batching] = (measured.stats.gradient_terms(), measured.scores, gradient)
    (loop_stats, loop_scores, loop_grad), (stats, scores, grad) = results.values()
    for a, b in zip(stats, loop_stats):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores, loop_scores, rtol=1e-5, atol=1e-6)
    for a, b in zip(grad, loop_grad):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
