"""Episodes, label noise and class budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metasched.config import load_config
from metasched.domains import ImageClassification
from metasched.errors import MetaschedError
from metasched.tasks import (
    NOISE_MODES,
    FewShotSampler,
    LabelNoise,
    Layout,
    budget_classes,
    split_reward_classes,
    symmetric_transition_matrix,
)
from metasched.tasks.noise import SourceNoise, flip_labels


def test_episode_shapes_and_labels(glyphs) -> None:
    sampler = FewShotSampler(glyphs.train, n_way=5, k_shot=2, q_query=3)
    episode = sampler.sample(np.random.default_rng(0))
    assert episode.support_x.shape == (10, 1, 28, 28)
    assert episode.query_x.shape == (15, 1, 28, 28)
    assert episode.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert episode.query_y.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    assert float(episode.support_x.min()) >= 0.0 and float(episode.support_x.max()) <= 1.0
    assert len(set(episode.source)) == 5 and not episode.noisy


def test_support_and_query_images_are_distinct_and_from_the_right_class(glyphs) -> None:
    sampler = FewShotSampler(glyphs.train, n_way=3, k_shot=5, q_query=15)
    episode = sampler.sample(np.random.default_rng(1))
    for label, cls in enumerate(episode.source):
        own = torch.from_numpy(np.array(glyphs.train.class_images(cls))).float() / 255
        chosen = torch.cat(
            [
                episode.support_x[episode.support_y == label],
                episode.query_x[episode.query_y == label],
            ]
        )
        matches = [int(torch.where((own == img).flatten(1).all(1))[0][0]) for img in chosen]
        assert len(set(matches)) == 20  # all 20 images of the class, none twice


def test_too_many_shots_is_a_clear_error(glyphs) -> None:
    with pytest.raises(MetaschedError, match="k_shot \\+ q_query = 21"):
        FewShotSampler(glyphs.train, n_way=5, k_shot=6, q_query=15)
    with pytest.raises(MetaschedError, match="n_way=6"):
        FewShotSampler(glyphs.train, n_way=6, k_shot=1, q_query=1, classes=[0, 1, 2, 3, 4])


def test_noisy_tasks_occur_at_the_configured_rate(glyphs) -> None:
    ratio, draws = 0.4, 2000
    sampler = FewShotSampler(glyphs.train, 5, 1, 2, LabelNoise(task_ratio=ratio, flip_rate=0.8))
    rng = np.random.default_rng(0)
    noisy = np.array([sampler.sample(rng).noisy for _ in range(draws)])
    assert abs(noisy.mean() - ratio) < 4 * np.sqrt(ratio * (1 - ratio) / draws)


def test_flipped_labels_follow_the_transition_matrix() -> None:
    for flip in (0.8, 0.3):
        matrix = symmetric_transition_matrix(5, flip)
        assert np.allclose(matrix.sum(axis=1), 1.0) and np.isclose(matrix[0, 0], 1 - flip)
        true = np.repeat(np.arange(5), 4000)
        noisy = flip_labels(true, matrix, np.random.default_rng(0))
        confusion = np.zeros((5, 5))
        np.add.at(confusion, (true, noisy), 1)
        confusion /= confusion.sum(axis=1, keepdims=True)
        assert np.abs(confusion - matrix).max() < 0.03


def _layout_statistics(mode: str, flip: float, n_way: int, k_shot: int, q_query: int):
    noise = LabelNoise(task_ratio=1.0, flip_rate=flip, mode=mode)
    rng = np.random.default_rng(7)
    per_class = k_shot + q_query
    balanced, wrong, complete = [], [], []
    for _ in range(3000):
        layout = noise.corrupt(n_way, k_shot, q_query, rng)
        true = layout.support // per_class
        assert len(layout.support) == n_way * k_shot and len(layout.query) == n_way * q_query
        everything = np.concatenate([layout.support, layout.query])
        assert sorted(everything) == list(range(n_way * per_class))  # disjoint, all used
        histogram = np.bincount(layout.support_labels, minlength=n_way)
        balanced.append(bool((histogram == k_shot).all()))
        wrong.append(float((layout.support_labels != true).mean()))
        complete.append(len(set(true)) == n_way)
    return np.mean(balanced), np.mean(wrong), np.mean(complete), np.std(wrong)


@pytest.mark.parametrize("flip", [0.8, 0.3])
def test_each_noise_mode_has_its_label_statistics(flip: float) -> None:
    """redraw and permute keep the support's label histogram balanced, flip does not; all
    three get the flip rate's share of support labels wrong; only redraw changes which true
    classes the support shows."""
    stats = {mode: _layout_statistics(mode, flip, 5, 1, 15) for mode in NOISE_MODES}
    assert stats["redraw"][0] == 1.0 and stats["permute"][0] == 1.0
    assert stats["flip"][0] < (0.2 if flip == 0.8 else 0.5)  # 5!/5^5 = 4% at f = 0.8
    for mode in ("redraw", "flip"):
        assert stats[mode][1] == pytest.approx(flip, abs=0.02)
    moved = max(2, round(flip * 5))
    assert stats["permute"][1] == pytest.approx(moved / 5) and stats["permute"][3] < 1e-12
    assert stats["flip"][2] == 1.0 and stats["permute"][2] == 1.0  # true classes untouched
    assert stats["redraw"][2] < 0.9  # the support shows a random set of true classes
    five_shot = _layout_statistics("redraw", flip, 5, 5, 15)
    assert five_shot[0] == 1.0 and five_shot[1] == pytest.approx(flip, abs=0.02)


def test_a_clean_layout_is_k_then_q_per_class() -> None:
    layout = Layout.clean(3, 2, 1)
    assert layout.support.tolist() == [0, 1, 3, 4, 6, 7]
    assert layout.support_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert layout.query.tolist() == [2, 5, 8]


@pytest.mark.parametrize("mode", NOISE_MODES)
def test_noise_touches_only_noisy_supports_and_labels_the_right_images(glyphs, mode) -> None:
    """Query labels are the images' true classes in every mode; a noisy support records the
    true labels of its images; clean tasks are untouched."""
    noise = LabelNoise(task_ratio=0.5, flip_rate=0.8, mode=mode)
    sampler = FewShotSampler(glyphs.train, 5, 2, 3, noise)
    rng = np.random.default_rng(3)
    noisy_seen = 0
    for _ in range(40):
        episode = sampler.sample(rng)

        def true_class(image: torch.Tensor, source=episode.source) -> int:
            for label, cls in enumerate(source):
                own = torch.from_numpy(np.array(glyphs.train.class_images(cls))).float() / 255
                if (own == image).flatten(1).all(1).any():
                    return label
            raise AssertionError("an image of no chosen class")

        query_true = [true_class(x) for x in episode.query_x]
        assert episode.query_y.tolist() == query_true
        support_true = [true_class(x) for x in episode.support_x]
        if episode.noisy:
            noisy_seen += 1
            assert episode.clean_support_y.tolist() == support_true
        else:
            assert episode.clean_support_y is None
            assert episode.support_y.tolist() == support_true == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert 10 < noisy_seen < 30


def test_reward_classes_split_meta_validation_in_two_fixed_halves() -> None:
    selection, reward = split_reward_classes(111)
    assert len(selection) == 56 and len(reward) == 55
    assert not set(selection) & set(reward) and set(selection) | set(reward) == set(range(111))
    assert split_reward_classes(111) == (selection, reward)


def test_class_budget_restricts_and_is_fixed(glyphs) -> None:
    chosen = budget_classes(glyphs.train.class_names, 16)
    assert len(chosen) == 16 and chosen == budget_classes(glyphs.train.class_names, 16)
    sampler = FewShotSampler(glyphs.train, 5, 1, 1, classes=16)
    rng = np.random.default_rng(0)
    used = {c for _ in range(100) for c in sampler.sample(rng).source}
    assert used == set(chosen)
    assert budget_classes([f"c{i}" for i in range(10)], [3, 1, 2]) == [3, 1, 2]
    with pytest.raises(MetaschedError, match="train_classes"):
        budget_classes([f"c{i}" for i in range(10)], 11)
    with pytest.raises(MetaschedError, match="lists a class twice"):
        budget_classes([f"c{i}" for i in range(10)], [1, 1])


def test_a_skewed_distribution_draws_a_share_of_tasks_from_a_fixed_subset(glyphs) -> None:
    sampler = FewShotSampler(glyphs.train, 5, 1, 1, skew=(0.5, 10))
    assert len(sampler.skewed) == 10
    rng = np.random.default_rng(0)
    episodes = [sampler.sample(rng) for _ in range(1000)]
    inside = [set(e.source) <= set(sampler.skewed) for e in episodes]
    assert np.mean(inside) == pytest.approx(0.5, abs=0.05)  # (a uniform task: ~0 chance)
    assert [e.skewed for e in episodes] == inside
    again = FewShotSampler(glyphs.train, 5, 1, 1, skew=(0.5, 10))
    assert np.array_equal(again.skewed, sampler.skewed)
    with pytest.raises(MetaschedError, match="skew_classes=3"):
        FewShotSampler(glyphs.train, 5, 1, 1, skew=(0.5, 3))


def _pixel_owner(pool):
    """A function from an episode image (floats in [0, 1]) to the pool class it belongs to."""
    owner = {im.tobytes(): c for c in range(pool.num_classes) for im in pool.class_images(c)}
    return lambda x: owner[(x * 255).round().to(torch.uint8).numpy().tobytes()]


def test_source_noise_shows_a_fixed_partners_images_in_corrupted_supports(glyphs) -> None:
    """A quarter of the training classes show one fixed partner's images in every support (the
    same across samplers), keep their own query images, and flag exactly their episodes."""
    pool = glyphs.train
    samplers = [FewShotSampler(pool, 5, 2, 3, source_noise=SourceNoise(0.25)) for _ in range(2)]
    partners = samplers[0].partners
    assert samplers[1].partners == partners and len(partners) == round(0.25 * pool.num_classes)
    owner, shown, flagged = _pixel_owner(pool), {}, []
    for seed, sampler in enumerate(samplers):
        rng = np.random.default_rng(seed)
        for _ in range(100):
            episode = sampler.sample(rng)
            for label, cls in enumerate(episode.source):
                assert {owner(x) for x in episode.query_x[episode.query_y == label]} == {cls}
                support = episode.support_x[episode.support_y == label]
                shown.setdefault(cls, set()).update(owner(x) for x in support)
            assert episode.noisy == any(c in partners for c in episode.source)
            flagged.append(episode.noisy)
    assert 20 < sum(flagged) < len(flagged) - 20  # both kinds of episode were drawn
    assert all(sources == {partners.get(cls, cls)} for cls, sources in shown.items())
    assert sum(cls in partners for cls in shown) > 50 and all(c != p for c, p in partners.items())
    budget = FewShotSampler(pool, 5, 2, 3, classes=16, source_noise=SourceNoise(0.25)).partners
    allowed = set(budget_classes(pool.class_names, 16))
    assert len(budget) == 4 and set(budget) | set(budget.values()) <= allowed


def test_source_noise_never_corrupts_validation_or_test_tasks(glyphs) -> None:
    """With task.noisy_sources=0.25 the domain corrupts training classes only: its validation,
    reward and test episodes show each class's own support images and are never flagged."""
    config = load_config("glyphs-5w1s", ["task.noisy_sources=0.25"])
    samplers = ImageClassification().samplers(config, glyphs)
    assert len(samplers["train"].partners) == round(0.25 * glyphs.train.num_classes)
    rng = np.random.default_rng(0)
    for split, pool in (("val", glyphs.val), ("reward", glyphs.val), ("test", glyphs.test)):
        owner = _pixel_owner(pool)
        for _ in range(50):
            episode = samplers[split].sample(rng)
            shown = [owner(x) for x in episode.support_x]
            assert shown == [episode.source[y] for y in episode.support_y.tolist()]
            assert not episode.noisy
