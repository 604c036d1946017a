"""Episodes, label noise and class budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metasched.errors import MetaschedError
from metasched.tasks import FewShotSampler, LabelNoise, budget_classes, symmetric_transition_matrix
from metasched.tasks.noise import flip_labels


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
        own = torch.from_numpy(glyphs.train.class_images(cls)).float() / 255
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


def test_noise_touches_only_noisy_supports(glyphs) -> None:
    sampler = FewShotSampler(glyphs.train, 5, 5, 3, LabelNoise(task_ratio=0.5, flip_rate=0.8))
    rng = np.random.default_rng(3)
    episodes = [sampler.sample(rng) for _ in range(200)]
    clean_support = torch.arange(5).repeat_interleave(5)
    clean_query = torch.arange(5).repeat_interleave(3)
    changed = 0
    for episode in episodes:
        assert torch.equal(episode.query_y, clean_query)
        if episode.noisy:
            assert torch.equal(episode.clean_support_y, clean_support)
            changed += int((episode.support_y != clean_support).sum())
        else:
            assert torch.equal(episode.support_y, clean_support)
            assert episode.clean_support_y is None
    noisy_labels = 25 * sum(e.noisy for e in episodes)
    assert abs(changed / noisy_labels - 0.8) < 0.05  # symmetric flips at rate 0.8


def test_class_budget_restricts_and_is_fixed(glyphs) -> None:
    chosen = budget_classes(glyphs.train.num_classes, 16)
    assert len(chosen) == 16 and chosen == budget_classes(glyphs.train.num_classes, 16)
    sampler = FewShotSampler(glyphs.train, 5, 1, 1, classes=16)
    rng = np.random.default_rng(0)
    used = {c for _ in range(100) for c in sampler.sample(rng).source}
    assert used == set(chosen)
    assert budget_classes(10, [3, 1, 2]) == [3, 1, 2]
    with pytest.raises(MetaschedError, match="train_classes"):
        budget_classes(10, 11)
    with pytest.raises(MetaschedError, match="distinct"):
        budget_classes(10, [1, 1])
