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
    Candidates,
    DAMLOptions,
    DAMLScheduler,
    Feedback,
    FocalOptions,
    FocalScheduler,
    GCPScheduler,
    GreedyScheduler,
    PAMLOptions,
    PAMLScheduler,
    SchedulerSetup,
    Selection,
    SPLOptions,
    SPLScheduler,
)
from metasched.schedulers import bass as bass_module
from metasched.schedulers import gcp as gcp_module
from metasched.schedulers import paml as paml_module
from metasched.schedulers.daml import difficulty_weights
from metasched.stats import PoolStats
from metasched.tasks import Episode

LOSSES = torch.tensor([0.3, 2.0, 0.1, 1.5, 0.9, 0.5, 1.2, 0.2, 1.8, 0.7])


class FakeServices:
    """Stands in for the training loop's toolbox: no learner, rows computed in turn."""

    learner, params = None, {"w": torch.zeros(1)}

    def map_rows(self, compute, items) -> torch.Tensor:
        return torch.stack([compute(item) for item in items])

    def lookahead_value(self, indices, step_size, metric, paired, num_tasks) -> float:
        return 0.0


def _episodes(rows: torch.Tensor, sources=None) -> list[Episode]:
    """Candidates whose support inputs carry a given row (what a patched probe returns)."""
    sources = sources if sources is not None else [()] * len(rows)
    return [
        Episode(row.unsqueeze(0), torch.zeros(1), row.unsqueeze(0), torch.zeros(1), source=tuple(s))
        for row, s in zip(rows, sources)
    ]


def _counts(scheduler, pool, draws=2000, batch=2, services=None) -> np.ndarray:
    rng = np.random.default_rng(0)
    counts = np.zeros(pool.size)
    for _ in range(draws):
        selection = scheduler.choose(pool, batch, rng, services or FakeServices())
        assert len(set(selection.indices)) == batch
        np.add.at(counts, selection.indices, 1)
    return counts / draws


def _feedback(selection: Selection, losses=None, trained=None) -> Feedback:
    count = len(selection.indices)
    losses = np.zeros(count) if losses is None else np.asarray(losses, dtype=float)
    trained = np.ones(count, dtype=bool) if trained is None else np.asarray(trained)
    return Feedback(selection, trained, losses, np.zeros(count), 0.0)


def test_every_schedulers_options_are_a_config_section_that_round_trips() -> None:
    """Each scheduler's defaults build it, and its section survives a config file: the
    settings a run stores are the settings it ran."""
    from metasched.config import config_from_dict, load_config

    for name, cls in SCHEDULERS.items():
        cls(cls.Options(), SchedulerSetup(num_classes=20))
        pool = "scheduler.pool_size=10" if cls.needs_larger_pool else "scheduler.pool_size=4"
        config = load_config("glyphs-noisy", [f"scheduler.name={name}", pool])
        again = config_from_dict(config.to_dict())
        assert isinstance(config.scheduler.settings, cls.Options)
        assert again.scheduler.settings == config.scheduler.settings


def test_gcp_refuses_tasks_that_are_not_made_of_classes() -> None:
    from metasched.errors import MetaschedError

    with pytest.raises(MetaschedError, match="not made of classes"):
        GCPScheduler(setup=SchedulerSetup(num_classes=0))


def test_greedy_takes_the_lowest_losses() -> None:
    selection = GreedyScheduler().choose(Candidates(10, 0.5, PoolStats(LOSSES)), 3, None, None)
    assert sorted(selection.indices.tolist()) == [0, 2, 7]


def test_spl_prefers_easy_tasks_early_and_admits_hard_ones_later() -> None:
    scheduler = SPLScheduler(SPLOptions(start=0.3, end=1.0))
    early = _counts(scheduler, Candidates(10, 0.0, PoolStats(LOSSES)))
    late = _counts(scheduler, Candidates(10, 1.0, PoolStats(LOSSES)))
    easiest = np.argsort(LOSSES.numpy())[:3]
    assert early[easiest].sum() == pytest.approx(2.0)  # only the 3 easiest are admitted
    assert early[1] == 0 and late[1] > 0.1  # the hardest task joins at the end
    assert late == pytest.approx(np.full(10, 0.2), abs=0.04)  # all admitted: uniform
    assert scheduler.admitted_fraction(0.5) == pytest.approx(0.65)


def test_focal_draws_hard_tasks_more_often_and_gamma_zero_is_uniform() -> None:
    counts = _counts(
        FocalScheduler(FocalOptions(gamma=2.0)), Candidates(10, 0.0, PoolStats(LOSSES))
    )
    order = np.argsort(LOSSES.numpy())
    assert counts[order[-1]] > 3 * counts[order[0]]  # the hardest vs the easiest
    assert np.corrcoef(counts, LOSSES.numpy())[0, 1] > 0.9
    flat = _counts(FocalScheduler(FocalOptions(gamma=0.0)), Candidates(10, 0.0, PoolStats(LOSSES)))
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
        Candidates(10, 0.0, PoolStats(LOSSES)), 4, np.random.default_rng(0), None
    )
    assert selection.weights == pytest.approx(np.full(4, 0.25))  # γ = 0: the plain mean


def test_gcp_draws_confused_class_pairs_more_often_and_forgets(monkeypatch) -> None:
    scheduler = GCPScheduler(setup=SchedulerSetup(num_classes=6, n_way=2))
    classes = np.array([[0, 1], [2, 3], [4, 5], [0, 2]])
    pool = Candidates(4, episodes=_episodes(torch.zeros(4, 1), classes))
    confused = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    clear = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    monkeypatch.setattr(gcp_module, "query_confusion", lambda learner, params, e: clear)
    assert _counts(scheduler, pool, 400, 1) == pytest.approx(np.full(4, 0.25), abs=0.06)
    on_first = Selection(np.array([0]), memo=(classes[[0]], confused.unsqueeze(0)))
    for _ in range(5):  # trained on task (0, 1): its classes are confused
        scheduler.observe(_feedback(on_first))
    probabilities = torch.softmax(scheduler.task_log_potential(classes), dim=0)
    assert probabilities[0] > 2 * probabilities[1]  # pair (0, 1) is now preferred
    assert probabilities[1] == pytest.approx(probabilities[3])  # (0, 2) never seen
    peak = float(scheduler.log_potential[0, 1])
    scheduler.observe(_feedback(on_first, trained=[False]))  # not trained: nothing learned
    assert float(scheduler.log_potential[0, 1]) == peak
    now_clear = Selection(np.array([0]), memo=(classes[[0]], clear.unsqueeze(0)))
    for _ in range(20):  # now the model separates them: the potential decays towards 1
        scheduler.observe(_feedback(now_clear))
    assert float(scheduler.log_potential[0, 1]) == pytest.approx(peak * 0.7**20)


def test_paml_picks_the_candidates_far_from_what_it_trained_on(monkeypatch) -> None:
    monkeypatch.setattr(paml_module, "embed", lambda learner, params, es: es[0].support_x)
    scheduler = PAMLScheduler(PAMLOptions(memory=4, neighbours=2))
    near = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, -0.1]])
    far = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    first = scheduler.choose(Candidates(3, episodes=_episodes(near)), 3, None, FakeServices())
    scheduler.observe(_feedback(first))  # remembers the "near" tasks
    pool = Candidates(5, episodes=_episodes(torch.cat([near, far])))
    second = scheduler.choose(pool, 2, None, FakeServices())
    assert sorted(second.indices.tolist()) == [3, 4]
    scheduler.observe(_feedback(second, trained=[True, False]))  # one was dropped
    assert len(scheduler.memory) == 4  # first in, first out: 3 near, then 1 far
    torch.testing.assert_close(scheduler.memory[-1], far[second.indices[0] - 3])


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


@pytest.mark.slow
def test_bass_learns_which_contexts_pay_and_trains_on_them(monkeypatch) -> None:
    """Rewards depend on the sign of a context's first pooled coordinate; after some feedback
    the exploitation network prefers those contexts and BASS's top-k picks them."""
    scheduler = BASSScheduler(
        BASSOptions(train_every=1, max_updates=200, context_dims=8, gradient_dims=8, hidden=32),
        SchedulerSetup(seed=0),
    )
    rng = np.random.default_rng(1)
    monkeypatch.setattr(
        bass_module, "two_step_parameters", lambda learner, params, e: e.support_x[0]
    )

    def good(raw: torch.Tensor) -> np.ndarray:
        return (scheduler.contexts(raw)[1][:, 0] > 0).numpy()

    def lookahead_losses(raw, episodes, indices, rng, services) -> np.ndarray:
        return np.where(good(raw)[indices], 0.5, 2.5)  # rewards ~9.9 or 0

    monkeypatch.setattr(scheduler, "lookahead_losses", lookahead_losses)
    untaught = BASSScheduler(scheduler.options, SchedulerSetup(seed=0))  # never told a thing
    monkeypatch.setattr(untaught, "lookahead_losses", lookahead_losses)
    picked_good, untaught_good = [], []
    for _ in range(60):
        raw = torch.from_numpy(rng.normal(size=(10, 2, 16))).float()
        pool = Candidates(10, episodes=_episodes(raw))
        selection = scheduler.choose(pool, 2, rng, FakeServices())
        picked_good.append(float(good(raw)[selection.indices].mean()))
        scheduler.observe(_feedback(selection, [1.0, 1.0]))
        untaught_good.append(
            float(good(raw)[untaught.choose(pool, 2, rng, FakeServices()).indices].mean())
        )
    assert np.mean(picked_good[-20:]) > 0.9
    assert np.mean(untaught_good[-20:]) < 0.7  # the same pools, without the feedback
    assert scheduler.fit["exploit_mse"] < 10.0


def test_agreement_takes_the_tasks_whose_gradients_agree_ignoring_dead_layers() -> None:
    g = torch.Generator().manual_seed(3)
    norms = torch.rand(6, 4, generator=g) + 0.5
    cosine = torch.tensor([0.9, -0.5, 0.2, 0.8, -0.9, 0.1]).unsqueeze(1).repeat(1, 4)
    cosine[:, 0] = torch.tensor([-1.0, 1.0, 1.0, -1.0, 1.0, 1.0])  # a dead layer: ignored
    norms[:, 0] = 0.0
    stats = PoolStats(torch.rand(6, generator=g), norms, norms, cosine * norms * norms)
    chosen = AgreementScheduler().choose(Candidates(6, 0.0, stats), 2, None, None).indices
    assert sorted(chosen.tolist()) == [0, 3]
    soft = AgreementScheduler(AgreementOptions(temperature=1.0))
    counts = _counts(soft, Candidates(6, 0.0, stats))
    assert counts[0] > counts[2] > counts[4]
