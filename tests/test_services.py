"""The loop's services to schedulers, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metasched.learners import ANIL, Adaptation, Classification, probes
from metasched.training.gradients import CandidateGradients
from metasched.training.services import LoopServices

from .test_pool_stats import _tiny_pool


class FixedTasks:
    """A reward sampler that deals out given episodes in turn."""

    def __init__(self, episodes) -> None:
        self.episodes, self.drawn = episodes, 0

    def sample(self, rng):
        self.drawn += 1
        return self.episodes[(self.drawn - 1) % len(self.episodes)]


def _services(reward_episodes):
    model, episodes = _tiny_pool(8)
    learner = ANIL(model, Classification(), Adaptation(0.4, 2), Adaptation(0.4, 2))
    params = learner.parameters()
    gradients = CandidateGradients(learner, params, episodes, None)
    services = LoopServices(
        learner,
        params,
        gradients,
        FixedTasks(reward_episodes),
        np.random.default_rng(0),
        torch.device("cpu"),
    )
    return learner, params, episodes, services


def test_the_paired_lookahead_value_is_the_change_in_reward_task_loss() -> None:
    _, reward_episodes = _tiny_pool(9)
    learner, params, episodes, services = _services(reward_episodes[:2])
    value = services.lookahead_value(np.array([1, 3]), 0.5, "loss", True, 2)
    graphs = learner.outcomes(params, [episodes[1], episodes[3]]).graphs
    loss = torch.stack(graphs).mean()
    grads = torch.autograd.grad(loss, list(params.values()))
    lookahead = {n: (p - 0.5 * g).detach() for (n, p), g in zip(params.items(), grads)}

    def mean_loss(weights):
        results = [
            learner.evaluate(weights, [e], learner.train_adaptation) for e in reward_episodes[:2]
        ]
        return float(np.mean([r.losses.item() for r in results]))

    assert value == pytest.approx(mean_loss(params) - mean_loss(lookahead), rel=1e-9)
    assert services.reward_tasks_drawn == 2
    accuracy = services.lookahead_value(np.array([1, 3]), 0.5, "score", False, 2)
    direct = [
        (learner.predict(lookahead, e, learner.train_adaptation).argmax(-1) == e.query_y)
        .double()
        .mean()
        .item()
        for e in reward_episodes[:2]
    ]
    assert accuracy == pytest.approx(np.mean(direct), rel=1e-6)  # scored in float32


def test_bass_lookahead_losses_are_one_sgd_step_from_each_candidates_two_step_model() -> None:
    """BASS's reward: from θsq of the candidate (its support step, then its query step), one
    torch.optim.SGD step of the whole network on each reward task's support, then the query
    loss; the mean over the reward tasks."""
    import copy

    import torch.nn.functional as F

    from metasched.schedulers import BASSOptions, BASSScheduler

    _, reward_episodes = _tiny_pool(10)
    learner, params, episodes, services = _services(reward_episodes[:3])
    scheduler = BASSScheduler(BASSOptions(reward_tasks=3, reward_source="reward"))
    raw = torch.stack([probes.two_step_parameters(learner, params, e) for e in episodes])
    rng = np.random.default_rng(0)
    losses = scheduler.lookahead_losses(raw, episodes, np.array([2, 0]), rng, services)
    lr = learner.train_adaptation.lr
    for k, i in enumerate((2, 0)):
        net = copy.deepcopy(learner.model)
        optimiser = torch.optim.SGD(net.parameters(), lr)
        for x, y in ((episodes[i].support_x, episodes[i].support_y),
                     (episodes[i].query_x, episodes[i].query_y)):  # fmt: skip
            optimiser.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimiser.step()
        start = copy.deepcopy(net.state_dict())
        direct = []
        for e in reward_episodes[:3]:
            net.load_state_dict(start)
            optimiser = torch.optim.SGD(net.parameters(), lr)
            optimiser.zero_grad()
            F.cross_entropy(net(e.support_x), e.support_y).backward()
            optimiser.step()
            with torch.no_grad():
                direct.append(F.cross_entropy(net(e.query_x), e.query_y).item())
        assert losses[k] == pytest.approx(np.mean(direct), rel=1e-7)
    assert services.reward_tasks_drawn == 6  # three fresh tasks for each chosen candidate


def test_clipping_rescales_the_whole_gradient_to_the_limit() -> None:
    from metasched.training.gradients import clipped

    gradient = [torch.tensor([3.0, 0.0]), None, torch.tensor([[4.0]])]  # global norm 5
    small = clipped(gradient, 1.0)
    assert small[1] is None
    assert torch.allclose(torch.cat([small[0], small[2].flatten()]), torch.tensor([0.6, 0, 0.8]))
    assert clipped(gradient, 10.0)[0] is not gradient[0]  # a copy, not rescaled
    assert torch.equal(clipped(gradient, 10.0)[0], gradient[0])
    assert clipped(gradient, None) is gradient
