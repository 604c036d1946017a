"""Schedulers: the ATS network and its REINFORCE step, sampling, the oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from metasched.schedulers import (
    ATSNetwork,
    ATSOptions,
    ATSScheduler,
    Candidates,
    OracleScheduler,
    SchedulerSetup,
    Selection,
    UniformScheduler,
)
from metasched.schedulers.ats import draw_log_prob
from metasched.schedulers.base import draw
from metasched.stats import PoolStats


def _ats(seed: int = 0, **options) -> ATSScheduler:
    return ATSScheduler(ATSOptions(**options), SchedulerSetup(num_layers=10, seed=seed))


def _stats(pool: int = 4, layers: int = 10, seed: int = 0) -> PoolStats:
    g = torch.Generator().manual_seed(seed)
    support = torch.rand(pool, layers, generator=g) + 0.1
    query = torch.rand(pool, layers, generator=g) + 0.1
    cosine = torch.rand(pool, layers, generator=g) * 2 - 1
    return PoolStats(torch.rand(pool, generator=g) * 2, support, query, cosine * support * query)


def test_sequential_draw_without_replacement_has_the_stated_probabilities() -> None:
    probabilities = torch.tensor([0.5, 0.25, 0.15, 0.10])
    draws = list(itertools.permutations(range(4), 2))
    exact = {d: draw_log_prob(probabilities, np.array(d), False, False).exp().item() for d in draws}
    assert sum(exact.values()) == pytest.approx(1.0)  # a proper distribution over draws
    assert exact[(0, 1)] == pytest.approx(0.5 * 0.25 / 0.5)
    faithful = sum(
        draw_log_prob(probabilities, np.array(d), False, True).exp().item() for d in draws
    )
    assert faithful < 0.9  # the reference's formula is not the law of the draw
    rng = np.random.default_rng(0)
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(20_000):
        key = tuple(int(i) for i in draw(probabilities, 2, False, rng))
        counts[key] = counts.get(key, 0) + 1
    for d in draws:
        assert counts.get(d, 0) / 20_000 == pytest.approx(exact[d], abs=0.012)


def test_reinforce_step_is_the_policy_gradient_of_the_expected_reward(monkeypatch) -> None:
    """Σ_d P(d) (R(d) - b) ∇log P(d) over all draws equals ∇ Σ_d P(d) R(d)."""
    stats, pool = _stats(), 4
    scheduler = _ats(seed=3)
    monkeypatch.setattr(scheduler.optimizer, "step", lambda: None)  # keep φ fixed
    parameters = list(scheduler.network.parameters())
    draws = list(itertools.permutations(range(pool), 2))
    rewards = {d: float(np.sin(3 * d[0] + d[1])) for d in draws}

    # The definition, written independently: P(i, j) = p_i p_j / (1 - p_i).
    p = torch.softmax(scheduler.network(stats, 0.3), dim=0)
    expected = sum(p[i] * p[j] / (1 - p[i]) * rewards[(i, j)] for i, j in draws)
    truth = torch.autograd.grad(expected, parameters)

    estimate = [torch.zeros_like(w) for w in parameters]
    for d in draws:
        probabilities = scheduler.policy(Candidates(pool, 0.3, stats))
        log_prob = draw_log_prob(probabilities, np.array(d), False, False)
        weight = float(log_prob.detach().exp())
        scheduler.baseline, scheduler.rewards_seen = 0.7, 5  # any constant baseline
        scheduler.update(
            Selection(np.array(d), probabilities.detach(), log_prob=log_prob), rewards[d]
        )
        for total, w in zip(estimate, parameters):
            total -= weight * w.grad  # update() leaves ∇ of -(R - b) log P in .grad
    for a, b in zip(estimate, truth):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_faithful_network_has_the_reference_parameter_count() -> None:
    assert sum(p.numel() for p in ATSNetwork(10, faithful=True).parameters()) == 8_131


def test_context_carries_other_candidates_only_in_the_corrected_network() -> None:
    stats = _stats(pool=5)
    changed = PoolStats(
        stats.query_loss.clone(), stats.support_norm.clone(), stats.query_norm.clone(),
        stats.dot.clone(),
    )  # fmt: skip
    changed.query_loss[4] += 3.0  # only candidate 4 changes
    for faithful, moves in ((False, True), (True, False)):
        torch.manual_seed(0)
        network = ATSNetwork(10, faithful=faithful)
        before, after = network(stats, 0.5)[:4], network(changed, 0.5)[:4]
        assert (not torch.allclose(before, after)) == moves


def test_temperature_decays_to_its_floor_and_state_round_trips() -> None:
    scheduler = _ats(temperature=0.1, temperature_decay=0.5)
    pool, rng = Candidates(4, 0.0, _stats()), np.random.default_rng(0)
    temperatures = []
    for _ in range(5):
        temperatures.append(scheduler.temperature)
        scheduler.select(pool, 2, rng)
    assert temperatures == pytest.approx([0.5, 0.25, 0.125, 0.1, 0.1])
    proposal = scheduler.propose(pool, 2, rng)
    scheduler.update(proposal, 0.4)
    copy = _ats(seed=9, temperature=0.1, temperature_decay=0.5)
    copy.load_state_dict(scheduler.state_dict())
    assert copy.temperature == scheduler.temperature and copy.baseline == scheduler.baseline
    torch.testing.assert_close(copy.policy(pool), scheduler.policy(pool))


def test_sharper_temperature_concentrates_the_selection() -> None:
    scheduler = _ats(temperature=0.01, temperature_decay=0.01)
    pool = Candidates(6, 0.0, _stats(pool=6))
    policy = scheduler.policy(pool).detach()
    selection = scheduler.select(pool, 2, np.random.default_rng(0))
    assert selection.probabilities.max() > policy.max()
    assert int(selection.probabilities.argmax()) == int(policy.argmax())


def test_oracle_draws_until_it_has_clean_candidates_and_trains_on_them_only() -> None:
    from metasched.tasks import Episode

    class Source:
        """Episodes whose noise follows a fixed pattern."""

        def __init__(self, pattern) -> None:
            self.pattern, self.drawn = pattern, 0

        def sample(self, rng, index=None):
            self.drawn += 1
            noisy = self.pattern[(self.drawn - 1) % len(self.pattern)]
            return Episode(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), noisy)

    rng = np.random.default_rng(0)
    oracle = OracleScheduler()
    mostly_noisy = Source([True, True, True, False])
    episodes = oracle.candidates(mostly_noisy, 2, 2, rng)
    assert len(episodes) == 8 and sum(not e.noisy for e in episodes) == 2  # drew until 2 clean
    pool = Candidates(len(episodes), episodes=episodes)
    for _ in range(50):
        selection = oracle.choose(pool, 2, rng, services=None)
        assert not any(episodes[i].noisy for i in selection.indices)
        assert len(set(selection.indices)) == 2
    # Among more clean candidates than it trains on, it picks each alike.
    mixed = oracle.candidates(Source([False, True, False, False, True, False]), 6, 2, rng)
    picks = np.zeros(len(mixed), dtype=int)
    for _ in range(400):
        np.add.at(picks, oracle.choose(Candidates(6, episodes=mixed), 2, rng, None).indices, 1)
    assert len(mixed) == 6 and picks[[1, 4]].sum() == 0
    assert picks.sum() == 800 and all(150 < n < 250 for n in picks[[0, 2, 3, 5]])  # 200 each
    uniform = UniformScheduler()
    assert len(uniform.candidates(Source([True]), 3, 3, rng)) == 3  # the default: P draws
    assert len(set(uniform.choose(Candidates(6), 3, rng, services=None).indices)) == 3


def test_draw_survives_a_distribution_with_fewer_non_zero_entries_than_draws() -> None:
    """At temperature 0.1 a float32 softmax can keep one non-zero entry; drawing two distinct
    candidates must still work (it raised "probabilities contain NaN")."""
    logits = torch.tensor([30.0, 0.0, -1.0, -2.0])
    peaked = torch.softmax(logits / 0.1, dim=0)
    assert int((peaked > 0).sum()) == 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        chosen = draw(peaked, 2, False, rng)
        assert chosen[0] == 0 and len(set(chosen)) == 2
    scheduler = _ats(temperature=0.1, temperature_decay=0.1)
    stats = _stats(pool=4)
    with torch.no_grad():  # a network whose logits differ by hundreds
        scheduler.network.fusion[2].weight.mul_(1e4)
    selection = scheduler.select(Candidates(4, 0.5, stats), 3, rng)
    assert len(set(selection.indices)) == 3
