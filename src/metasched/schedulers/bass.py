"""BASS: the neural bandit task scheduler (Qi et al., "Meta-learning with neural bandit
scheduler", NeurIPS 2023), as its public code does it (docs/schedulers.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metasched.errors import MetaschedError
from metasched.learners.probes import one_step_query_loss, two_step_parameters, unflatten
from metasched.schedulers.base import (
    Candidates,
    Feedback,
    Selection,
    Services,
    TaskScheduler,
    draw,
    top_k,
)
from metasched.tasks.episode import Episode


@dataclass(frozen=True)
class BASSOptions:
    """Settings of BASS (``scheduler.bass``); defaults are the public code's miniImageNet ones.

    Attributes:
        alpha: weight of the exploitation estimate in the priority α r̂ + ê, and of its
            residual in the exploration target.
        hidden: hidden units of both networks.
        exploit_lr, explore_lr: Adam learning rates of f1 and f2.
        buffer: FIFO length of each network's training buffer.
        train_every: retrain both networks every this many meta-updates (from the first).
        max_updates: at most this many single-sample steps per retraining.
        stop_loss: or stop once an epoch's mean squared error is at most this.
        context_dims: a context is the parameter vector average-pooled (window 2w, stride w)
            to about this many numbers.
        gradient_dims: f1's gradient is average-pooled (window = stride) to about this many.
        normalise: L2-normalise the contexts (the code does on miniImageNet).
        centred: subtract θ0's pooled parameters before normalising (our labelled fix:
            otherwise the shared θ0 dominates every candidate's context).
        reward_tasks: V, tasks each chosen candidate's look-ahead is evaluated on.
        reward_source: ``pool`` (this iteration's candidates, as the code) or ``reward`` (the
            clean reward split).
        reward_transform: ``cross_entropy`` (10 exp(-1e-4 exp(5 L))) or ``mse``
            (10 exp(-0.1 exp(L))).
        unpicked_bonus: exploration target given to candidates not chosen (0: off).
        selection: ``top-k`` of the priority (miniImageNet code) or ``sample`` from its
            softmax without replacement (drug code).
    """

    alpha: float = 0.5
    hidden: int = 200
    exploit_lr: float = 0.01
    explore_lr: float = 0.001
    buffer: int = 300
    train_every: int = 10
    max_updates: int = 1000
    stop_loss: float = 1e-3
    context_dims: int = 109
    gradient_dims: int = 56
    normalise: bool = True
    centred: bool = False
    reward_tasks: int = 5
    reward_source: str = "pool"
    reward_transform: str = "cross_entropy"
    unpicked_bonus: float = 0.0
    selection: str = "top-k"

    def __post_init__(self) -> None:
        prefix = "scheduler.bass."
        checks = [
            (0 <= self.alpha <= 1, "alpha must lie in [0, 1]"),
            (min(self.hidden, self.buffer, self.train_every, self.max_updates) >= 1,
             "hidden, buffer, train_every and max_updates must be at least 1"),
            (min(self.context_dims, self.gradient_dims, self.reward_tasks) >= 1,
             "context_dims, gradient_dims and reward_tasks must be at least 1"),
            (self.exploit_lr > 0 and self.explore_lr > 0, "learning rates must be positive"),
            (self.reward_source in ("pool", "reward"), "reward_source must be pool or reward"),
            (self.reward_transform in ("cross_entropy", "mse"),
             "reward_transform must be cross_entropy or mse"),
            (self.selection in ("top-k", "sample"), "selection must be top-k or sample"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise MetaschedError(prefix + message)


def average_pool(flat: torch.Tensor, dims: int, overlap: bool) -> torch.Tensor:
    """(n, D) to about (n, dims): average pooling with stride w = ceil(D / dims) and window
    2w (``overlap``) or w, the last window cut at the end."""
    stride = max(1, math.ceil(flat.shape[1] / dims))
    window = 2 * stride if overlap else stride
    return F.avg_pool1d(flat.unsqueeze(1), window, stride, ceil_mode=True).squeeze(1)


def transform_reward(loss: np.ndarray, kind: str) -> np.ndarray:
    """The code's soft threshold of a look-ahead loss (about 10 for small losses, 0 beyond)."""
    if kind == "cross_entropy":
        return 10 * np.exp(-1e-4 * np.exp(np.minimum(5 * loss, 700)))
    return 10 * np.exp(-0.1 * np.exp(np.minimum(loss, 700)))


def _mlp(inputs: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class BASSScheduler(TaskScheduler):
    """Contextual-bandit scheduling with an exploitation and an exploration network.

    Per candidate i it computes the flat parameters after one SGD step of the whole network on
    its support (θs,i) and one more on its query (θsq,i)
    (:func:`metasched.learners.probes.two_step_parameters`).
    Pooled (and normalised) they are the contexts x_s,i and x_i. f1(x_i) estimates the
    candidate's reward; f2 reads f1's pooled gradients at x_s,i and x_i (EE-Net style
    exploration) and estimates the residual. The B candidates with the highest α f1 + f2 are
    trained on. Each chosen candidate's reward (semi-bandit feedback: one per task) is the
    soft-thresholded mean query loss of θsq,i after one SGD step on each of V tasks' supports
    (:meth:`lookahead_losses`). f1 learns the rewards; f2 learns α (r - r̂) +
    (1 - α) L_self, L_self being the chosen task's own adapted query loss at θ0. Both retrain
    every ``train_every`` meta-updates from fresh Adam optimisers, one sample at a time.

    What differs from the public code: nothing in the defaults but where the loop must give
    a choice (the reward tasks come from this iteration's pool, as the code; the reward split
    is an option), and the gradient-pooling windows are derived from ``gradient_dims`` rather
    than fixed at 400 (the same 56 numbers for the code's 22,201-parameter f1). ``centred`` is
    our labelled fix for the near-identical contexts of a shared θ0 (docs/schedulers.md).
    """

    name = "bass"
    Options = BASSOptions

    def __init__(self, options: BASSOptions | None = None, setup: Any = None) -> None:
        super().__init__(options, setup)
        self.exploit: nn.Sequential | None = None
        self.explore: nn.Sequential | None = None
        self.exploit_buffer: list[tuple[torch.Tensor, float]] = []
        self.explore_buffer: list[tuple[torch.Tensor, float]] = []
        self.updates = 0
        self.rng = np.random.default_rng([self.setup.seed, 7])
        self.fit: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------

    def _build(self, context_width: int) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(self.setup.seed)
            self.exploit = _mlp(context_width, self.options.hidden)
            gradient = self._gradient_features(torch.zeros(1, context_width)).shape[1]
            self.explore = _mlp(2 * gradient, self.options.hidden)  # at x_s and at x

    def contexts(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, d) support contexts x_s and full contexts x, from the candidates' (P, 2, D)
        two-step parameters."""
        raw = raw.float()
        pooled = average_pool(raw.flatten(0, 1), self.options.context_dims, True)
        pooled = pooled.view(raw.shape[0], 2, -1)
        if self.options.centred:
            pooled = pooled - pooled.mean(dim=(0, 1), keepdim=True)
        if self.options.normalise:
            pooled = F.normalize(pooled, dim=2)
        return pooled[:, 0], pooled[:, 1]

    def _gradient_features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, g): f1's parameter gradient at each row of ``x``, pooled."""
        assert self.exploit is not None
        weights = list(self.exploit.parameters())
        rows = []
        for row in x:
            grads = torch.autograd.grad(self.exploit(row.unsqueeze(0)).sum(), weights)
            rows.append(torch.cat([g.flatten() for g in grads]))
        return average_pool(torch.stack(rows), self.options.gradient_dims, False)

    def priorities(
        self, raw: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(priority α r̂ + ê, r̂, exploration inputs φ, contexts x), one row per candidate,
        from the candidates' (P, 2, D) two-step parameters."""
        support, full = self.contexts(raw)
        if self.exploit is None:
            self._build(full.shape[1])
        assert self.exploit is not None and self.explore is not None
        phi = torch.cat([self._gradient_features(support), self._gradient_features(full)], dim=1)
        with torch.no_grad():
            estimate = self.exploit(full).squeeze(1)
            exploration = self.explore(phi).squeeze(1)
        return self.options.alpha * estimate + exploration, estimate, phi, full

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        o = self.options
        learner, params = services.learner, services.params
        episodes = pool.require("episodes")
        raw = services.map_rows(lambda e: two_step_parameters(learner, params, e), episodes)
        priority, estimate, phi, full = self.priorities(raw.cpu())
        softmax = torch.softmax(priority.double(), dim=0)
        if o.selection == "top-k":
            indices = top_k(priority, batch_size)
        else:
            indices = draw(softmax, batch_size, False, rng)
        losses = self.lookahead_losses(raw.cpu(), episodes, indices, rng, services)
        rewards = transform_reward(losses, o.reward_transform)
        unpicked = np.setdiff1d(np.arange(pool.size), indices)
        memo = {
            "contexts": full[torch.from_numpy(indices)],
            "phi": phi[torch.from_numpy(indices)],
            "phi_unpicked": phi[torch.from_numpy(unpicked)],
            "estimates": estimate[torch.from_numpy(indices)].numpy(),
            "rewards": rewards,
        }
        spread = float(priority.std() / (priority.abs().mean() + 1e-12))
        return Selection(
            indices,
            softmax,
            policy=softmax.float(),
            diagnostics={
                "reward": float(rewards.mean()),
                "lookahead_loss": float(losses.mean()),
                "priority_spread": spread,
                **self.fit,
            },
            memo=memo,
        )

    def lookahead_losses(
        self,
        raw: torch.Tensor,
        episodes: list[Episode],
        indices: np.ndarray,
        rng: np.random.Generator,
        services: Services,
    ) -> np.ndarray:
        """Per chosen candidate: the mean query loss, over ``reward_tasks`` tasks (this pool's
        candidates, or fresh ones of the reward split: ``reward_source``), of its two-step
        look-ahead model θsq after one SGD step of the whole network on each task's support."""
        o = self.options
        tasks: list[list[Episode]] = []  # drawn for every index on every rank: one stream
        for _ in indices:
            if o.reward_source == "pool":
                picks = rng.choice(len(episodes), min(o.reward_tasks, len(episodes)), replace=False)
                tasks.append([episodes[int(i)] for i in picks])
            else:
                tasks.append(services.reward_tasks(o.reward_tasks))
        learner = services.learner
        device = next(iter(services.params.values())).device

        def loss(k: int) -> torch.Tensor:
            start = unflatten(learner, raw[int(indices[k]), 1].to(device))
            value = np.mean([one_step_query_loss(learner, start, e) for e in tasks[k]])
            return torch.tensor(value, dtype=torch.float64)

        return services.map_rows(loss, range(len(indices))).numpy()

    def observe(self, feedback: Feedback) -> dict[str, Any]:
        """Adds the trained choices' feedback to the buffers; retrains when due."""
        o, p = self.options, feedback.selection.memo
        trained = feedback.trained
        if not trained.any():
            return {}
        for k, reward in enumerate(p["rewards"]):
            if not trained[k]:
                continue
            self.exploit_buffer.append((p["contexts"][k], float(reward)))
            own_loss = feedback.losses[k]
            target = o.alpha * (reward - p["estimates"][k]) + (1 - o.alpha) * own_loss
            self.explore_buffer.append((p["phi"][k], float(target)))
        if o.unpicked_bonus > 0:
            self.explore_buffer.extend((row, o.unpicked_bonus) for row in p["phi_unpicked"])
        self.exploit_buffer = self.exploit_buffer[-o.buffer :]
        self.explore_buffer = self.explore_buffer[-o.buffer :]
        self.updates += 1
        if (self.updates - 1) % o.train_every == 0:
            assert self.exploit is not None and self.explore is not None
            self.fit = {
                "exploit_mse": self._train(self.exploit, self.exploit_buffer, o.exploit_lr),
                "explore_mse": self._train(self.explore, self.explore_buffer, o.explore_lr),
            }
        return {}

    def _train(
        self, network: nn.Module, buffer: list[tuple[torch.Tensor, float]], lr: float
    ) -> float:
        """Single-sample Adam steps over shuffled epochs of the buffer, as the code."""
        optimizer = torch.optim.Adam(network.parameters(), lr=lr)
        inputs = torch.stack([x for x, _ in buffer])
        targets = torch.tensor([y for _, y in buffer], dtype=inputs.dtype)
        steps, epoch_loss = 0, math.inf
        while steps < self.options.max_updates:
            total = 0.0
            order = self.rng.permutation(len(buffer))
            for i in order:
                loss = (network(inputs[i : i + 1]).squeeze() - targets[i]) ** 2
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item()
                steps += 1
                if steps >= self.options.max_updates:
                    break
            epoch_loss = total / len(order)
            if epoch_loss <= self.options.stop_loss:
                break
        return epoch_loss

    # ------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        def stacked(buffer: list[tuple[torch.Tensor, float]]) -> dict[str, torch.Tensor]:
            if not buffer:
                return {"x": torch.zeros(0), "y": torch.zeros(0)}
            return {
                "x": torch.stack([x for x, _ in buffer]),
                "y": torch.tensor([y for _, y in buffer]),
            }

        return {
            "exploit": None if self.exploit is None else self.exploit.state_dict(),
            "explore": None if self.explore is None else self.explore.state_dict(),
            "exploit_buffer": stacked(self.exploit_buffer),
            "explore_buffer": stacked(self.explore_buffer),
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
            "fit": dict(self.fit),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def listed(entry: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, float]]:
            return (
                [(x, float(y)) for x, y in zip(entry["x"], entry["y"])] if len(entry["y"]) else []
            )

        if state["exploit"] is not None:
            self._build(state["exploit"]["0.weight"].shape[1])
            assert self.exploit is not None and self.explore is not None
            self.exploit.load_state_dict(state["exploit"])
            self.explore.load_state_dict(state["explore"])
        self.exploit_buffer = listed(state["exploit_buffer"])
        self.explore_buffer = listed(state["explore_buffer"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
        self.fit = dict(state["fit"])
