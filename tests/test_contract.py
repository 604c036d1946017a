"""The scheduler contract: a new scheduler is one module and a registry entry; every scheduler
is told exactly which of its choices were trained; the cheap schedulers do what they say."""

from __future__ import annotations

import importlib
import math
import sys
import textwrap

import numpy as np
import pytest
import torch

from metasched.config import load_config
from metasched.learners.results import TaskResults
from metasched.schedulers import (
    SCHEDULERS,
    AmortisedOptions,
    AmortisedScheduler,
    BufferOptions,
    BufferScheduler,
    Candidates,
    Feedback,
    GatedOptions,
    GatedScheduler,
    Measure,
    ProxyOptions,
    ProxyScheduler,
)
from metasched.schedulers.gated import noisy_share
from metasched.stats import PoolStats
from metasched.tasks import Episode
from metasched.training.gradients import CandidateGradients, ChosenOutcome
from metasched.training.metrics import read_metrics
from metasched.training.trainer import Trainer

from .conftest import tiny_overrides
from .test_training import SCHEDULER_EXTRAS

NEW_SCHEDULER = '''
"""A scheduler written against the contract alone: the highest adapted query loss."""

import numpy as np

from metasched.schedulers.base import Measure, Selection, TaskScheduler, top_k


class HardestFirst(TaskScheduler):
    """The B candidates with the highest adapted query loss."""

    name = "hardest-first"
    measures = Measure.LOSSES

    def choose(self, pool, batch_size, rng, services):
        return Selection(top_k(pool.require("stats").query_loss, batch_size))
'''


def test_a_scheduler_in_a_module_of_its_own_trains_once_registered(
    tmp_path, glyphs, monkeypatch
) -> None:
    (tmp_path / "hardest_first.py").write_text(textwrap.dedent(NEW_SCHEDULER))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("hardest_first")
    monkeypatch.setitem(SCHEDULERS, "hardest-first", module.HardestFirst)
    try:
        settings = {"scheduler.name": "hardest-first", "scheduler.pool_size": 4}
        config = load_config("glyphs-5w1s", tiny_overrides(**settings, **{"train.iterations": 6}))
        Trainer.create(config, tmp_path / "run").fit(progress=False)
    finally:
        sys.modules.pop("hardest_first", None)
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    assert len(train) == 6 and all(len(r["chosen"]) == 2 for r in train)
    # it chose the hardest candidates: its training loss is above uniform sampling's
    uniform = load_config("glyphs-5w1s", tiny_overrides(**{"train.iterations": 6}))
    Trainer.create(uniform, tmp_path / "uniform").fit(progress=False)
    plain = [
        r for r in read_metrics(tmp_path / "uniform" / "metrics.jsonl") if r["kind"] == "train"
    ]
    assert np.mean([r["loss"] for r in train]) > np.mean([r["loss"] for r in plain])


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_every_scheduler_trains_on_when_a_chosen_task_gives_nan(
    tmp_path, glyphs, monkeypatch, scheduler: str
) -> None:
    """With train.on_nonfinite=skip the first choice of every third iteration gives a NaN loss
    and gradient: it is dropped, the others are trained, and the scheduler is told that its
    first choice was not trained and given the others' losses."""
    config = load_config(
        "glyphs-5w1s",
        tiny_overrides(
            **{
                "scheduler.name": scheduler,
                "scheduler.pool_size": 5,
                "train.meta_batch_size": 3,
                "train.iterations": 9,
                "train.on_nonfinite": "skip",
                "task.noise_ratio": 0.5,
                "learner.inner_steps": 1,
                "learner.eval_inner_steps": 1,
                "train.val_tasks": 4,
                "train.test_tasks": 4,
                **SCHEDULER_EXTRAS.get(scheduler, {}),
                "scheduler.ats.warmup": 2,
            }
        ),
    )
    trainer = Trainer.create(config, tmp_path / "run")
    combine = CandidateGradients.combine
    poisoned: dict[int, int] = {}  # iteration -> the candidate that gave a NaN
    chosen_at: list[int] = []  # iterations whose choice is made: the meta-update follows
    choose = trainer.scheduler.choose

    def choose_and_mark(*args, **kwargs):
        selection = choose(*args, **kwargs)
        chosen_at.append(trainer.state.iteration)
        return selection

    def nan_for_one(self, indices, weights):
        outcome = combine(self, indices, weights)
        it = trainer.state.iteration
        first = int(np.asarray(indices)[0])
        update = bool(chosen_at) and chosen_at[-1] == it  # not a scheduler's look-ahead
        if update and it % 3 == 1 and poisoned.get(it, first) == first and len(indices) > 1:
            poisoned[it] = first
            losses = outcome.losses.copy()
            losses[0] = np.nan
            gradient = [None if g is None else g * np.nan for g in outcome.gradient]
            return ChosenOutcome(gradient, losses, outcome.scores)
        return outcome

    told: list[Feedback] = []
    observe = trainer.scheduler.observe

    def spy(feedback: Feedback):
        told.append(feedback)
        return observe(feedback)

    monkeypatch.setattr(CandidateGradients, "combine", nan_for_one)
    monkeypatch.setattr(trainer.scheduler, "choose", choose_and_mark)
    monkeypatch.setattr(trainer.scheduler, "observe", spy)
    trainer.fit(progress=False)
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    skipped = [r["iteration"] for r in train if r.get("skipped_tasks")]
    assert skipped and all(i % 3 == 2 for i in skipped)  # records count iterations from 1
    assert all(np.isfinite(r["loss"]) for r in train)
    assert len(told) == config.train.iterations  # one feedback per meta-update
    dropped = [f for f in told if not f.trained.all()]
    assert len(dropped) == sum(r["phase"] == "train" for r in train if r.get("skipped_tasks"))
    for feedback in dropped:
        assert not feedback.trained[0] and feedback.trained[1:].all()
        assert np.isnan(feedback.losses[0]) and np.isfinite(feedback.losses[1:]).all()
    assert all(torch.isfinite(w).all() for w in trainer.parts.model.state_dict().values())


def _episode(source: tuple[int, ...], noisy: bool = False) -> Episode:
    x = torch.zeros(1, 1)
    return Episode(x, torch.zeros(1), x, torch.zeros(1), noisy=noisy, source=source)


def test_amortised_learns_which_sources_are_bad_from_the_losses_of_trained_tasks() -> None:
    """Sources 0-4 are corrupted: tasks drawing them lose 2.0, the others 0.5. After feedback
    on what it trains, the scheduler avoids candidates made of corrupted sources; its
    estimates stay flat where losses carry no source (control)."""
    rng = np.random.default_rng(0)
    scheduler = AmortisedScheduler(AmortisedOptions(exploration=0.2))
    control = AmortisedScheduler(AmortisedOptions(exploration=0.2))
    picked_bad, fewest_bad = [], []  # and the least a scheduler that knew could take
    for _ in range(300):
        sources = [tuple(int(s) for s in rng.choice(20, 2, replace=False)) for _ in range(6)]
        episodes = [_episode(s) for s in sources]
        pool = Candidates(6, episodes=episodes)
        clean = sum(all(u >= 5 for u in s) for s in sources)
        fewest_bad.append(max(0, 2 - clean) / 2)
        for current, by_source in ((scheduler, True), (control, False)):
            selection = current.choose(pool, 2, rng, services=None)
            chosen = [sources[i] for i in selection.indices]
            bad = [any(u < 5 for u in s) for s in chosen]
            if by_source:
                picked_bad.append(np.mean(bad))
                losses = np.where(bad, 2.0, 0.5)
            else:
                losses = rng.choice([2.0, 0.5], 2)  # noise with no cause
            feedback = Feedback(selection, np.ones(2, bool), losses, np.zeros(2), 0.0)
            current.observe(feedback)
    share_bad = 1 - (15 / 20) * (14 / 19)  # a random task draws a corrupted source: 0.45
    assert np.mean(picked_bad[:20]) > 0.2
    assert np.mean(picked_bad[-100:]) < np.mean(fewest_bad[-100:]) + 0.03 < share_bad
    worst = max(scheduler.estimates, key=scheduler.estimates.get)
    assert worst < 5
    spread = np.ptp(list(control.estimates.values()))
    assert spread < np.ptp(list(scheduler.estimates.values()))


def test_buffer_replays_a_passed_over_candidate_whose_stale_loss_beats_the_fresh_ones() -> None:
    scheduler = BufferScheduler(BufferOptions(capacity=2, max_age=3))
    first = Candidates(
        3, stats=PoolStats(torch.tensor([0.2, 0.3, 0.4])), iteration=0,
        episodes=[_episode((i,)) for i in range(3)],
    )  # fmt: skip
    selection = scheduler.choose(first, 2, np.random.default_rng(0), services=None)
    assert sorted(selection.indices.tolist()) == [0, 1] and not selection.replay
    assert [k.loss for k in scheduler.kept] == pytest.approx([0.4])  # candidate 2 kept
    second = Candidates(
        3, stats=PoolStats(torch.tensor([0.9, 0.35, 1.2])), iteration=1,
        episodes=[_episode((i,)) for i in range(3, 6)],
    )  # fmt: skip
    selection = scheduler.choose(second, 2, np.random.default_rng(0), services=None)
    assert selection.indices.tolist() == [1]  # 0.35, then the kept 0.4 beats 0.9 and 1.2
    assert [e.source for e in selection.replay] == [(2,)]
    assert [k.loss for k in scheduler.kept] == pytest.approx([0.9, 1.2])
    copy = BufferScheduler(BufferOptions(capacity=2, max_age=3))
    copy.load_state_dict(scheduler.state_dict())
    assert [(k.episode.source, k.loss, k.measured) for k in copy.kept] == [
        (k.episode.source, k.loss, k.measured) for k in scheduler.kept
    ]
    old = Candidates(
        3, stats=PoolStats(torch.tensor([5.0, 5.0, 5.0])), iteration=4,
        episodes=[_episode((i,)) for i in range(6, 9)],
    )  # fmt: skip
    selection = scheduler.choose(old, 2, np.random.default_rng(0), services=None)
    assert not selection.replay  # kept at iteration 1, too old at 4 (max_age 3)


class _Draws:
    """A task source of numbered episodes; the test decides each one's loss by its number."""

    def __init__(self) -> None:
        self.drawn = 0

    def sample(self, rng: np.random.Generator) -> Episode:
        self.drawn += 1
        return _episode((self.drawn,))


def _gated_iteration(scheduler, tasks, loss_of, rng):
    """One iteration as the loop runs it: the pool, what is measured, the choice."""
    episodes = scheduler.candidates(tasks, 5, 2, rng)
    stats = None
    if scheduler.measures & Measure.LOSSES:
        losses = torch.tensor([loss_of(e.source[0]) for e in episodes], dtype=torch.float64)
        stats = PoolStats(losses)
    selection = scheduler.choose(Candidates(len(episodes), stats=stats, episodes=episodes), 2,
                                 rng, services=None)  # fmt: skip
    return episodes, stats, selection


def test_noisy_share_counts_the_upper_cluster_only_when_it_stands_apart() -> None:
    rng = np.random.default_rng(0)
    two = np.concatenate([rng.normal(0.3, 0.05, 16), rng.normal(2.0, 0.05, 24)])
    assert noisy_share(rng.permutation(two), separation=3.5) == pytest.approx(0.6)
    one = rng.normal(1.0, 0.3, 40)  # one cluster: the best split's gap is small for its spread
    assert noisy_share(one, separation=3.5) == 0.0
    skewed = rng.lognormal(0.0, 1.0, 40)  # one long tail: a small upper share, if any
    assert noisy_share(skewed, separation=3.5) < 0.3
    assert noisy_share(np.array([0.3, np.nan, 2.0, 2.1, 0.31]), separation=3.5) == 0.5


def test_gated_selects_while_noisy_candidates_abound_and_draws_uniformly_once_not() -> None:
    """Threshold at P = 5, B = 2, candidate cost 0.5: c = 1.75, 1 - 1/c = 0.43. For 30
    iterations 3 of every 5 candidates (those numbered 0, 1, 2 mod 5) lose 2.0 and the others
    0.3: the gate stays on and trains on the low-loss ones. Then every candidate loses about
    1.0: once the noisy pools make up too little of the window the gate turns off, measuring
    one pool in ``check_every`` and otherwise drawing B candidates and training on them."""
    scheduler = GatedScheduler(GatedOptions(candidate_cost=0.5, window=8, check_every=5))
    assert scheduler.threshold(5, 2) == pytest.approx(1 - 1 / 1.75)
    tasks, rng = _Draws(), np.random.default_rng(0)
    noise = np.random.default_rng(1)

    def noisy(number: int) -> float:
        return (2.0 if number % 5 in (0, 1, 2) else 0.3) + noise.normal(0, 0.02)

    for _ in range(30):
        episodes, stats, selection = _gated_iteration(scheduler, tasks, noisy, rng)
        assert stats is not None and len(episodes) == 5
        assert all(episodes[i].source[0] % 5 in (3, 4) for i in selection.indices)
    assert selection.diagnostics["noisy_share"] == pytest.approx(0.6)

    measured = []
    for _ in range(40):
        episodes, stats, selection = _gated_iteration(
            scheduler, tasks, lambda n: 1.0 + noise.normal(0, 0.2), rng
        )
        measured.append(stats is not None)
        assert selection.diagnostics["measured"] == int(stats is not None)
        if stats is None:
            assert len(episodes) == 2 and list(selection.indices) == [0, 1]
    # on while the window's noisy share is 24/40, 21/40, 18/40 (> 0.43), off at 15/40; then
    # one pool in five
    assert [i for i, m in enumerate(measured) if m] == [0, 1, 2, *range(7, 40, 5)]


def test_gated_resumes_with_the_decisions_it_would_have_made() -> None:
    loss = lambda n: 2.0 if n % 2 else 0.3  # noqa: E731
    first = GatedScheduler(GatedOptions(candidate_cost=0.5, window=3, check_every=4))
    tasks, rng = _Draws(), np.random.default_rng(0)
    for _ in range(7):
        _gated_iteration(first, tasks, lambda n: 1.0, rng)
    again = GatedScheduler(GatedOptions(candidate_cost=0.5, window=3, check_every=4))
    again.load_state_dict(first.state_dict())
    twin_tasks, twin_rng = _Draws(), np.random.default_rng(5)
    tasks, rng = _Draws(), np.random.default_rng(5)
    for _ in range(12):
        a = _gated_iteration(first, tasks, loss, rng)
        b = _gated_iteration(again, twin_tasks, loss, twin_rng)
        assert [e.source for e in a[0]] == [e.source for e in b[0]]
        assert list(a[2].indices) == list(b[2].indices)


class _MeanTarget:
    """Services whose evaluation gives each task the mean of its query targets as its loss,
    and keeps what it was asked to evaluate."""

    def __init__(self) -> None:
        self.asked: list[Episode] = []

    def evaluate(self, episodes):
        self.asked = list(episodes)
        losses = torch.stack([e.query_y.mean() for e in episodes])
        return TaskResults(losses, -losses)


def test_proxy_scores_each_candidate_on_a_few_of_its_query_examples() -> None:
    """Candidate i's query targets are its level plus 0..19 (its rows, numbered by x), levels
    50 apart; candidate 0's level is NaN. The proxy asks for 5 of each candidate's query
    rows, distinct and its own, and trains on the two lowest levels that are finite."""
    levels = [float("nan"), 400.0, 100.0, 300.0, 50.0, 200.0]
    episodes = [
        Episode(torch.zeros(1, 1), torch.zeros(1), torch.arange(20.0).view(20, 1),
                level + torch.arange(20.0))
        for level in levels
    ]  # fmt: skip
    services = _MeanTarget()
    pool = Candidates(len(episodes), episodes=episodes)
    selection = ProxyScheduler(ProxyOptions(queries=5)).choose(
        pool, 2, np.random.default_rng(0), services
    )
    assert sorted(selection.indices.tolist()) == [2, 4]
    assert len(services.asked) == len(episodes)
    for level, glance in zip(levels, services.asked):
        rows = glance.query_x.view(-1).long()
        assert len(rows) == 5 and len(set(rows.tolist())) == 5
        assert torch.equal(glance.query_y, level + rows.float()) or math.isnan(level)
    firsts = {tuple(g.query_x.view(-1).tolist()) for g in services.asked}
    assert len(firsts) > 1  # each candidate gets its own draw of rows


def test_proxy_with_every_query_example_chooses_what_greedy_would(tmp_path, glyphs) -> None:
    """Scored on all of its query examples, a candidate's proxy is its adapted query loss: in
    a real run, every choice is the B lowest of the losses the loop's measuring path gives."""
    config = load_config(
        "glyphs-5w1s",
        tiny_overrides(**{
            "scheduler.name": "proxy", "scheduler.proxy.queries": 1000,
            "scheduler.pool_size": 5, "task.noise_ratio": 0.5, "train.iterations": 6,
        }),
    )  # fmt: skip
    trainer = Trainer.create(config, tmp_path / "run")
    choose = trainer.scheduler.choose
    checked = []

    def choose_and_check(pool, batch_size, rng, services):
        selection = choose(pool, batch_size, rng, services)
        full = services.learner.measure_pool(
            services.params, list(pool.episodes), keep_graph=False, gradients=False
        ).stats.query_loss
        lowest = np.argsort(full.numpy(), kind="stable")[:batch_size]
        assert sorted(selection.indices.tolist()) == sorted(lowest.tolist())
        checked.append(selection.diagnostics["proxy_loss"])
        return selection

    trainer.scheduler.choose = choose_and_check
    trainer.fit(progress=False)
    assert len(checked) == 6
