"""Regression episodes: support/query draws, source flags, budgets, target noise, scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_squared_error, root_mean_squared_error

from metasched.config import load_config
from metasched.data.pool import AssayPool, DataSplits
from metasched.domains import AssayRegression
from metasched.errors import MetaschedError
from metasched.tasks.assay_sampler import AssaySampler, budget_assays, support_scaling
from metasched.tasks.noise import SourceNoise, TargetNoise


def synthetic_pool(sizes: list[int], bits: int = 64, seed: int = 0) -> AssayPool:
    """Assays of the given sizes; compound i's fingerprint is random, its target is i."""
    rng = np.random.default_rng(seed)
    rows = sum(sizes)
    return AssayPool(
        fingerprints=np.packbits(rng.random((rows, bits)) < 0.2, axis=1),
        compounds=np.arange(rows),
        targets=np.arange(rows, dtype=np.float32),
        roles=np.tile(np.array([0, 1], np.int8), rows // 2 + 1)[:rows],
        starts=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        assay_ids=tuple(f"A{i}" for i in range(len(sizes))),
        assay_types=tuple("B" if i % 2 else "F" for i in range(len(sizes))),
        bits=bits,
    )


def test_support_is_k_query_is_the_rest_capped_and_disjoint() -> None:
    pool = synthetic_pool([30, 12, 50])
    sampler = AssaySampler(pool, support=8, query_cap=20)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        episode = sampler.sample(rng)
        (assay,) = episode.source
        seen.add(assay)
        support = episode.support_y.numpy().astype(int)
        query = episode.query_y.numpy().astype(int)
        owned = set(pool.rows(assay))
        assert len(support) == 8 and len(query) == min(20, pool.counts()[assay] - 8)
        assert set(support) <= owned and set(query) <= owned and not set(support) & set(query)
        assert torch.equal(episode.query_x, torch.from_numpy(pool.inputs(query)))
        assert episode.support_x.shape == (8, 64) and not episode.noisy
    assert seen == {0, 1, 2}


def test_source_flags_give_support_and_query() -> None:
    pool = synthetic_pool([40, 40])
    sampler = AssaySampler(pool, support=5, query_cap=100, source_split="flags")
    episode = sampler.sample(np.random.default_rng(1))
    assert (pool.roles[episode.support_y.numpy().astype(int)] == 0).all()
    query = episode.query_y.numpy().astype(int)
    assert (pool.roles[query] == 1).all() and len(query) == 20


def test_small_assays_are_excluded_and_counted() -> None:
    sampler = AssaySampler(synthetic_pool([10, 30, 9]), support=8, query_cap=50, min_query=2)
    assert sampler.excluded == 1 and sampler.assays.tolist() == [0, 1]
    with pytest.raises(MetaschedError, match=r"lower task\.assays\.support"):
        AssaySampler(synthetic_pool([10, 9]), support=16, query_cap=50)


def test_evaluation_index_covers_each_assay_in_turn() -> None:
    sampler = AssaySampler(synthetic_pool([20, 20, 20]), support=4, query_cap=10)
    rng = np.random.default_rng(0)
    assert [sampler.sample(rng, i).source[0] for i in range(6)] == [0, 1, 2, 0, 1, 2]


def test_budgets_by_count_type_and_id() -> None:
    pool = synthetic_pool([20] * 10)
    assert budget_assays(pool, types=["B"]) == [1, 3, 5, 7, 9]
    by_count = budget_assays(pool, 3, ["B"])
    assert len(by_count) == 3 and set(by_count) <= {1, 3, 5, 7, 9}
    assert by_count == budget_assays(pool, 3, ["B"])  # the same budget every run
    assert budget_assays(pool, ["A2", "A0"]) == [0, 2]
    with pytest.raises(MetaschedError, match="names 'A1', which is not one of the"):
        budget_assays(pool, ["A1"], ["F"])
    with pytest.raises(MetaschedError, match="matches no assay"):
        budget_assays(pool, types=["ADME"])


def test_target_noise_hits_the_configured_fraction_of_supports_only() -> None:
    pool = synthetic_pool([60] * 4)
    sampler = AssaySampler(pool, 10, 50, noise=TargetNoise(0.5, 4.0))
    rng = np.random.default_rng(2)
    episodes = [sampler.sample(rng) for _ in range(400)]
    noisy = [e for e in episodes if e.noisy]
    assert 0.42 < len(noisy) / len(episodes) < 0.58
    for episode in noisy[:20]:
        assert episode.clean_support_y is not None
        clean = episode.clean_support_y.numpy()
        assert np.all(np.mod(clean, 1) == 0)  # the pool's own targets
        assert 1.0 < np.std(episode.support_y.numpy() - clean) < 8.0
        assert np.all(np.mod(episode.query_y.numpy(), 1) == 0)  # queries stay clean
    assert all(e.clean_support_y is None for e in episodes if not e.noisy)


def test_standardisation_uses_the_support_and_is_undone_exactly() -> None:
    pool = synthetic_pool([40, 40])
    plain = AssaySampler(pool, 10, 30)
    scaled = AssaySampler(pool, 10, 30, standardise=True)
    a = plain.sample(np.random.default_rng(3))
    b = scaled.sample(np.random.default_rng(3))
    assert abs(float(b.support_y.mean())) < 1e-5 and abs(float(b.support_y.std(False)) - 1) < 1e-5
    restore = b.target_scale * b.query_y + b.target_shift
    assert torch.allclose(restore, a.query_y, atol=1e-4)
    assert a.target_shift == 0.0 and a.target_scale == 1.0


def test_a_flat_support_is_scaled_by_the_floor_not_by_one() -> None:
    """A censored assay's support repeats one value: its scale is the floor, so standardised
    predictions map back to values near that support (FS-Mol's CHEMBL1794491 is one such)."""
    flat = np.array([4.034] * 15 + [4.035])
    assert support_scaling(flat) == pytest.approx((4.0341, 0.05), abs=1e-4)
    assert support_scaling(flat, min_scale=0.2)[1] == 0.2
    spread = np.array([5.0, 6.0, 7.0, 8.0])
    assert support_scaling(spread)[1] == pytest.approx(np.std(spread))


def test_regression_metrics_match_direct_formulas() -> None:
    from scipy.stats import pearsonr

    from metasched.learners import Regression
    from metasched.tasks import Episode

    rng = np.random.default_rng(4)
    support_y = torch.from_numpy(rng.normal(0, 1, 8).astype(np.float32))
    query_y = torch.from_numpy(rng.normal(0, 1, 30).astype(np.float32))
    predictions = (0.6 * query_y + 0.3 * torch.randn(30)).unsqueeze(-1)
    episode = Episode(
        torch.zeros(8, 4),
        support_y,
        torch.zeros(30, 4),
        query_y,
        target_shift=6.0,
        target_scale=2.0,
    )
    metrics = Regression().metrics(predictions, episode)
    predicted = predictions.squeeze(-1).double().numpy() * 2 + 6
    measured = query_y.double().numpy() * 2 + 6
    assert metrics["pearson_r2"] == pytest.approx(pearsonr(predicted, measured)[0] ** 2)
    assert float(Regression().score(predictions, query_y)) == pytest.approx(
        metrics["pearson_r2"], rel=1e-5
    )
    # Out-of-sample R²: the share of the squared error of predicting the support's mean
    # for every query compound that the model removes (scikit-learn's errors, not ours).
    support_mean = np.full_like(measured, support_y.double().numpy().mean() * 2 + 6)
    baseline = mean_squared_error(measured, support_mean)
    model = mean_squared_error(measured, predicted)
    assert metrics["oos_r2"] == pytest.approx(1 - model / baseline)
    assert metrics["rmse"] == pytest.approx(root_mean_squared_error(measured, predicted))
    constant = Regression().metrics(torch.ones(30, 1), episode)
    assert np.isnan(constant["pearson_r2"])  # undefined, never a silent 0 in the metrics
    assert float(Regression().score(torch.ones(30, 1), query_y)) == 0.0  # but a safe score


def test_support_zero_takes_every_flagged_training_row() -> None:
    pool = synthetic_pool([21, 30])
    sampler = AssaySampler(pool, support=0, query_cap=100, source_split="flags")
    episode = sampler.sample(np.random.default_rng(0), 0)
    assert len(episode.support_y) == 11 and len(episode.query_y) == 10  # rows 0, 2, ... of 21
    with pytest.raises(MetaschedError, match="support 0 only with source_split=flags"):
        AssaySampler(pool, support=0, query_cap=100)


def test_a_corrupted_assay_shows_its_values_under_one_fixed_shuffle() -> None:
    """A quarter of the training assays show their own values permuted among their compounds,
    the same way for every sampler and draw, in support and query alike, and only their
    episodes are flagged noisy."""
    pool = synthetic_pool([30] * 12)
    first, second = (AssaySampler(pool, 10, 50, source_noise=SourceNoise(0.25)) for _ in "ab")
    corrupted = []
    for assay in range(12):
        rows = np.random.default_rng(assay).permutation(pool.rows(assay))
        support, query = np.sort(rows[:10]), np.sort(rows[10:])
        episode = first.episode(assay, support, query, np.random.default_rng(0))
        again = second.episode(assay, support, query, np.random.default_rng(1))
        assert torch.equal(episode.support_y, again.support_y)
        assert torch.equal(episode.query_y, again.query_y)
        values = np.concatenate([episode.support_y.numpy(), episode.query_y.numpy()])
        assert sorted(values) == sorted(pool.targets[rows])  # the assay's own values
        if episode.noisy:
            corrupted.append(assay)
            assert not np.array_equal(episode.support_y.numpy(), pool.targets[support])
            assert not np.array_equal(episode.query_y.numpy(), pool.targets[query])
        else:
            assert np.array_equal(values, pool.targets[np.concatenate([support, query])])
    assert len(corrupted) == round(0.25 * 12)


def _own_values(episode, pool: AssayPool) -> bool:
    """Whether every compound shown has its own value (a synthetic pool's target is its row)."""
    pairs = ((episode.support_x, episode.support_y), (episode.query_x, episode.query_y))
    return all(
        torch.equal(x, torch.from_numpy(pool.inputs(y.numpy().astype(int)))) for x, y in pairs
    )


def test_source_noise_never_shuffles_held_out_assays() -> None:
    """With task.noisy_sources=0.25 the domain shuffles training assays only: its validation,
    reward and test episodes show each compound's own value and are never flagged."""
    config = load_config("drug-demo", ["task.noisy_sources=0.25", "task.assays.standardise=false"])
    pools = [synthetic_pool([40] * n, seed=s) for s, n in enumerate((12, 6, 6))]
    splits = DataSplits(*pools)
    samplers = AssayRegression().samplers(config, splits)
    rng = np.random.default_rng(0)
    train = [samplers["train"].sample(rng, i) for i in range(12)]
    assert [not _own_values(e, splits.train) for e in train] == [e.noisy for e in train]
    assert sum(e.noisy for e in train) == 3
    for split, pool in (("val", splits.val), ("reward", splits.val), ("test", splits.test)):
        for i in range(6):
            episode = samplers[split].sample(rng, i)
            assert _own_values(episode, pool) and not episode.noisy
