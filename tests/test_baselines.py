"""The baseline schedulers' defining behaviour, on synthetic pool statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metasched.schedulers import (
    SCHEDULERS,
    AgreementOptions,
    AgreementScheduler,
    ATSNetwork,
    BASSOptions,
    BASSScheduler,
    DAMLOptions,
    DAMLScheduler,
    FocalOptions,
    FocalScheduler,
    GCPScheduler,
    GreedyScheduler,
    PAMLOptions,
    PAMLScheduler,
    Pool,
    SchedulerSetup,
    SPLOptions,
    SPLScheduler,
    Trained,
)
from metasched.schedulers.daml import difficulty_weights
from metasched.stats import PoolStats

LOSSES = torch.tensor([0.3, 2.0, 0.1, 1.5, 0.9, 0.5, 1.2, 0.2, 1.8, 0.7])


class FakeServices:
    """Stands in for the training loop's services."""

    def __init__(self, losses=None, confusion=None) -> None:
        self.losses, self.confusion = losses, confusion

    def lookahead_value(self, indices, step_size, metric, paired, num_tasks) -> float:
        return 0.0

    def lookahead_losses(self, indices, num_tasks, source) -> np.ndarray:
        return self.losses(indices)

    def query_confusion(self, indices) -> torch.Tensor:
        return self.confusion(indices)


def _counts(scheduler, pool, draws=2000, batch=2, services=None) -> np.ndarray:
    rng = np.random.default_rng(0)
    counts = np.zeros(pool.size)
    for _ in range(draws):
        selection = scheduler.choose(pool, batch, rng, services or FakeServices())
        assert len(set(selection.indices)) == batch
        np.add.at(counts, selection.indices, 1)
    return counts / draws


def _trained(indices, losses=None) -> Trained:
    indices = np.asarray(indices)
    losses = np.zeros(len(indices)) if losses is None else np.asarray(losses)
    return Trained(indices, losses, np.zeros(len(indices)), 0.0)


def test_every_scheduler_declares_a_name_and_options() -> None:
    for name, cls in SCHEDULERS.items():
        assert cls.name == name and cls.__doc__
        cls(cls.Options(), SchedulerSetup(num_classes=20))  # builds from its defaults


def test_greedy_takes_the_lowest_losses() -> None:
    selection = GreedyScheduler().choose(Pool(10, 0.5, PoolStats(LOSSES)), 3, None, None)
    assert sorted(selection.indices.tolist()) == [0, 2, 7]


def test_spl_prefers_easy_tasks_early_and_admits_hard_ones_later() -> None:
    scheduler = SPLScheduler(SPLOptions(start=0.3, end=1.0))
    early = _counts(scheduler, Pool(10, 0.0, PoolStats(LOSSES)))
    late = _counts(scheduler, Pool(10, 1.0, PoolStats(LOSSES)))
    easiest = np.argsort(LOSSES.numpy())[:3]
    assert early[easiest].sum() == pytest.approx(2.0)  # only the 3 easiest are admitted
    assert early[1] == 0 and late[1] > 0.1  # the hardest task joins at the end
    assert late == pytest.approx(np.full(10, 0.2), abs=0.04)  # all admitted: uniform
    assert scheduler.admitted_fraction(0.5) == pytest.approx(0.65)


def test_focal_draws_hard_tasks_more_often_and_gamma_zero_is_uniform() -> None:
    counts = _counts(FocalScheduler(FocalOptions(gamma=2.0)), Pool(10, 0.0, PoolStats(LOSSES)))
    order = np.argsort(LOSSES.numpy())
    assert counts[order[-1]] > 3 * counts[order[0]]  # the hardest vs the easiest
    assert np.corrcoef(counts, LOSSES.numpy())[0, 1] > 0.9
    flat = _counts(FocalScheduler(FocalOptions(gamma=0.0)), Pool(10, 0.0, PoolStats(LOSSES)))
    assert flat == pytest.approx(np.full(10, 0.2), abs=0.04)


def test_daml_weights_are_the_focal_task_loss_derivative() -> None:
    weights = difficulty_weights(LOSSES, 2.0)
    assert np.all(np.diff(weights[np.argsort(LOSSES.numpy())]) > 0)  # harder weighs more

    def focal(loss: float) -> float:
        p = np.exp(-loss)
        return -((1 - p) ** 2) * np.log(p)

    for loss, w in zip(LOSSES.double().numpy(), weights):
        assert w == pytest.approx((focal(loss + 1e-6) - focal(loss - 1e-6)) / 2e-6, rel=1e-5)
    scheduler = DAMLScheduler(DAMLOptions(gamma=0.0))
    selection = scheduler.choose(
        Pool(10, 0.0, PoolStats(LOSSES)), 4, np.random.default_rng(0), None
    )
    assert selection.weights == pytest.approx(np.full(4, 0.25))  # γ = 0: the plain mean


def test_gcp_draws_confused_class_pairs_more_often_and_forgets() -> None:
    scheduler = GCPScheduler(setup=SchedulerSetup(num_classes=6, n_way=2))
    classes = np.array([[0, 1], [2, 3], [4, 5], [0, 2]])
    pool = Pool(4, classes=classes)
    confused = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]], dtype=torch.float64)
    clear = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    assert _counts(scheduler, pool, 400, 1, FakeServices(confusion=lambda i: clear)) == (
        pytest.approx(np.full(4, 0.25), abs=0.06)
    )
    for _ in range(5):  # train on task (0, 1): its classes are confused
        scheduler.pending = (classes[[0]], confused)
        scheduler.observe(_trained([0]))
    probabilities = torch.softmax(scheduler.task_log_potential(classes), dim=0)
    assert probabilities[0] > 2 * probabilities[1]  # pair (0, 1) is now preferred
    assert probabilities[1] == pytest.approx(probabilities[3])  # (0, 2) never seen
    for _ in range(20):  # now the model separates them: the potential decays towards 1
        scheduler.pending = (classes[[0]], clear)
        scheduler.observe(_trained([0]))
    assert float(scheduler.log_potential[0, 1]) < 0.01  # 0.7^20 of its peak


def test_paml_picks_the_candidates_far_from_what_it_trained_on() -> None:
    scheduler = PAMLScheduler(PAMLOptions(memory=4, neighbours=2))
    near = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, -0.1]])
    far = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    scheduler.choose(Pool(3, embeddings=near), 3, None, None)
    scheduler.observe(_trained([0, 1, 2]))  # remembers the "near" tasks
    pool = Pool(5, embeddings=torch.cat([near, far]))
    assert sorted(scheduler.choose(pool, 2, None, None).indices.tolist()) == [3, 4]
    scheduler.observe(_trained([3, 4]))
    assert len(scheduler.memory) == 4  # first in, first out


def test_ats_ablations_ignore_what_they_drop() -> None:
    g = torch.Generator().manual_seed(0)
    norms = torch.rand(5, 10, generator=g) + 0.1
    stats = PoolStats(
        torch.rand(5, generator=g), norms, norms.flip(0), torch.randn(5, 10, generator=g)
    )
    other_loss = PoolStats(torch.rand(5, generator=g) * 3, norms, norms.flip(0), stats.dot)
    other_grad = PoolStats(stats.query_loss, norms, norms, torch.randn(5, 10, generator=g))
    for inputs, unchanged in (
        (("loss", "progress"), [(other_grad, 0.3)]),
        (("gradients", "progress"), [(other_loss, 0.3)]),
        (("loss", "gradients"), [(stats, 0.9)]),
    ):
        torch.manual_seed(0)
        network = ATSNetwork(10, inputs=inputs)
        reference = network(stats, 0.3)
        for changed, progress in unchanged:
            torch.testing.assert_close(network(changed, progress), reference)
        moved = other_loss if "loss" in inputs else other_grad
        assert not torch.allclose(network(moved, 0.3), reference)


def test_bass_learns_which_contexts_pay_and_trains_on_them() -> None:
    """Rewards depend on the sign of a context's first pooled coordinate; after some feedback
    the exploitation network prefers those contexts and BASS's top-k picks them."""
    scheduler = BASSScheduler(
        BASSOptions(train_every=1, max_updates=200, context_dims=8, gradient_dims=8, hidden=32),
        SchedulerSetup(seed=0),
    )
    rng = np.random.default_rng(1)

    def pool() -> Pool:
        contexts = torch.from_numpy(rng.normal(size=(10, 2, 16))).float()
        return Pool(10, contexts=contexts)

    def losses(current: Pool):
        good = scheduler.contexts(current)[1][:, 0] > 0
        return lambda indices: np.where(good.numpy()[indices], 0.5, 2.5)  # rewards ~9.9 or 0

    picked_good = []
    for _ in range(60):
        current = pool()
        selection = scheduler.choose(current, 2, rng, FakeServices(losses(current)))
        good = scheduler.contexts(current)[1][:, 0] > 0
        picked_good.append(float(good[torch.from_numpy(selection.indices)].float().mean()))
        scheduler.observe(_trained(selection.indices, [1.0, 1.0]))
    assert np.mean(picked_good[-20:]) > 0.8 > np.mean(picked_good[:5]) - 0.3
    assert scheduler.fit["exploit_mse"] < 10.0


def test_agreement_takes_the_tasks_whose_gradients_agree_ignoring_dead_layers() -> None:
    g = torch.Generator().manual_seed(3)
    norms = torch.rand(6, 4, generator=g) + 0.5
    cosine = torch.tensor([0.9, -0.5, 0.2, 0.8, -0.9, 0.1]).unsqueeze(1).repeat(1, 4)
    cosine[:, 0] = torch.tensor([-1.0, 1.0, 1.0, -1.0, 1.0, 1.0])  # a dead layer: ignored
    norms[:, 0] = 0.0
    stats = PoolStats(torch.rand(6, generator=g), norms, norms, cosine * norms * norms)
    chosen = AgreementScheduler().choose(Pool(6, 0.0, stats), 2, None, None).indices
    assert sorted(chosen.tolist()) == [0, 3]
    soft = AgreementScheduler(AgreementOptions(temperature=1.0))
    counts = _counts(soft, Pool(6, 0.0, stats))
    assert counts[0] > counts[2] > counts[4]
