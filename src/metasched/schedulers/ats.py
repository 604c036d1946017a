"""ATS: the adaptive task scheduler (Yao et al., NeurIPS 2021), trained by REINFORCE.

The network maps each candidate's statistics (query loss after adaptation; per-layer gradient
agreement between support and query at θ0) and the training progress to a logit; a softmax
over the pool gives sampling probabilities. Each iteration (:meth:`ATSScheduler.choose`) it
proposes B candidates, asks the loop for the value of a look-ahead model built from them on
clean reward tasks, takes one REINFORCE step, and draws the meta-update's candidates from the
updated, sharpened policy. ``warmup`` iterations come first, in which θ0 stays fixed.

Two modes:

* ``faithful=True`` reproduces the reference code: the progress percentage (of all
  iterations, warm-up included) indexes an ``Embedding(100, 5)``; two bidirectional LSTMs read
  the per-layer query-gradient norms and the per-layer cosines as *one* time step of a
  K-dimensional vector; the "DeepSets" context averages over the feature axis (so it carries
  no information about the other tasks); the log-probability of a draw without replacement is
  the with-replacement formula; the reward is the accuracy of the look-ahead model, unpaired;
  the baseline is the running mean of all past rewards; the warm-up steps θ0 and restores it.
* the default corrects these: the progress fraction (of meta-updates) goes through a fully
  connected layer of width 5 (as the supplement says); one bidirectional LSTM reads the
  sequence of layers, from input to output, each step holding that layer's (cosine, log-norm
  of the summed gradient); the context is the leave-one-out mean over the *other* candidates;
  the log-probability is that of the sequential draw without replacement; the baseline is an
  exponential moving average. Losses and log-norms are standardised across the pool, so the
  network sees the same scale whatever the loss (cross-entropy, or an MSE in squared assay
  units) and however far training has gone; layers whose gradient is identically zero (a bias
  before batch norm) then read as zeros. The loss LSTM sees one step in both modes: a scalar
  has no sequence. ``inputs`` drops inputs for the ablations of the paper (loss only,
  gradient similarity only, no progress).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metasched.errors import MetaschedError
from metasched.schedulers.base import (
    Candidates,
    Measure,
    SchedulerSetup,
    Selection,
    Services,
    TaskScheduler,
    draw,
)
from metasched.stats import PoolStats

INPUTS = ("loss", "gradients", "progress")


@dataclass(frozen=True)
class ATSOptions:
    """Settings of ATS (the ``scheduler.ats`` section of a config).

    Attributes:
        temperature: τ, the floor of the meta-update draw's temperature max(τ, decay^t).
        temperature_decay: per-meta-update decay of that temperature towards τ.
        replace: draw the meta-update's candidates with replacement.
        warmup: iterations before the first meta-update in which only the scheduler learns.
        lr: Adam learning rate of the scheduler network.
        baseline_momentum: of the exponential moving-average reward baseline.
        lookahead_lr: β of the look-ahead model θ̃ = θ0 - β ∇L(proposal).
        reward: ``loss`` (minus the reward tasks' query loss) or ``score`` (their accuracy, or
            pearson R²).
        paired_baseline: subtract θ0's value on the same reward tasks.
        reward_tasks: clean reward tasks per iteration (default: the meta-batch size).
        faithful: the reference code's scheduler, reward and warm-up (module docstring);
            overrides ``reward`` (score) and ``paired_baseline`` (off).
        inputs: what the network reads: any of loss, gradients, progress (ablations).
    """

    temperature: float = 0.1
    temperature_decay: float = 0.99
    replace: bool = False
    warmup: int = 0
    lr: float = 0.001
    baseline_momentum: float = 0.9
    lookahead_lr: float = 1.0
    reward: str = "loss"
    paired_baseline: bool = True
    reward_tasks: int | None = None
    faithful: bool = False
    inputs: list[str] = field(default_factory=lambda: list(INPUTS))

    def __post_init__(self) -> None:
        prefix = "scheduler.ats."
        for key in ("temperature", "lr", "lookahead_lr"):
            value = getattr(self, key)
            if not value > 0:
                raise MetaschedError(f"{prefix}{key} must be positive, got {value}")
        if not 0 < self.temperature_decay <= 1:
            raise MetaschedError(f"{prefix}temperature_decay must be in (0, 1]")
        if not 0 <= self.baseline_momentum < 1:
            raise MetaschedError(f"{prefix}baseline_momentum must be in [0, 1)")
        if self.warmup < 0:
            raise MetaschedError(f"{prefix}warmup must be >= 0")
        if self.reward not in ("score", "loss"):
            raise MetaschedError(
                f"{prefix}reward={self.reward!r}; use score (accuracy, or pearson R²) or loss"
            )
        if self.reward_tasks is not None and self.reward_tasks < 1:
            raise MetaschedError(f"{prefix}reward_tasks must be at least 1")
        unknown = [i for i in self.inputs if i not in INPUTS]
        if unknown or not self.inputs or len(set(self.inputs)) != len(self.inputs):
            raise MetaschedError(
                f"{prefix}inputs={self.inputs}; list distinct ones of {', '.join(INPUTS)}"
            )
        if self.faithful and set(self.inputs) != set(INPUTS):
            raise MetaschedError(f"{prefix}inputs can only be ablated with faithful=false")


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit variance over the pool (dim 0); constant columns become zeros."""
    centred = x - x.mean(dim=0, keepdim=True)
    return centred / (centred.pow(2).mean(dim=0, keepdim=True).sqrt() + 1e-6)


def leave_one_out_mean(x: torch.Tensor) -> torch.Tensor:
    """Row i: the mean of all other rows (rows are candidates)."""
    others = max(x.shape[0] - 1, 1)
    return (x.sum(dim=0, keepdim=True) - x) / others


def feature_axis_context(x: torch.Tensor) -> torch.Tensor:
    """The reference's "DeepSets" context: entry (i, j) is the mean of row i without
    entry j, i.e. a per-candidate function that sees no other candidate."""
    others = max(x.shape[0] - 1, 1)
    return (x.sum(dim=1, keepdim=True) - x) / others


class ATSNetwork(nn.Module):
    """The neural scheduler φ of supplement B.2: candidates' statistics to logits.

    Args:
        num_layers: K, the number of per-layer gradient statistics.
        faithful: reproduce the reference architecture (see the module docstring).
        hidden: LSTM hidden units per direction (10 in the paper).
        inputs: which of loss, gradients and progress the network reads (default: all).
    """

    # A softmax over the pool ignores a shift common to all logits, so the last bias gets a
    # zero gradient up to round-off (which Adam turns into steps of ±lr that change nothing).
    shift_invariant = ("fusion.2.bias",)

    def __init__(
        self,
        num_layers: int,
        faithful: bool = False,
        hidden: int = 10,
        inputs: tuple[str, ...] = INPUTS,
    ) -> None:
        super().__init__()
        self.faithful = faithful
        self.inputs = frozenset(inputs)
        self.progress: nn.Module | None = None
        self.loss_lstm: nn.LSTM | None = None
        width = 0
        if faithful:
            self.progress = nn.Embedding(100, 5)
            self.norm_lstm = nn.LSTM(num_layers, hidden, bidirectional=True)
            self.cosine_lstm = nn.LSTM(num_layers, hidden, bidirectional=True)
            width += 5 + 4 * hidden
        else:
            if "progress" in self.inputs:
                self.progress = nn.Linear(1, 5)
                width += 5
            if "gradients" in self.inputs:
                self.gradient_lstm = nn.LSTM(2, hidden, bidirectional=True, batch_first=True)
                width += 2 * hidden
        if "loss" in self.inputs:
            self.loss_lstm = nn.LSTM(1, hidden, bidirectional=True)
            width += 2 * hidden
        self.context = nn.Sequential(nn.Linear(width, 20), nn.Tanh(), nn.Linear(20, 10))
        self.fusion = nn.Sequential(nn.Linear(width + 10, 20), nn.Tanh(), nn.Linear(20, 1))

    def forward(self, stats: PoolStats, progress: float) -> torch.Tensor:
        """(P,) logits for the P candidates at training progress ``progress`` in [0, 1]."""
        pool = stats.pool_size
        parts = []
        if self.faithful:
            assert self.progress is not None and self.loss_lstm is not None
            percent = torch.full((pool,), min(int(progress * 100), 99), dtype=torch.long)
            parts = [
                self.progress(percent),
                self._one_step(self.norm_lstm, stats.gradient_terms()[1]),
                self._one_step(self.cosine_lstm, stats.cosine),
                self._one_step(self.loss_lstm, stats.query_loss.view(pool, 1)),
            ]
        else:
            if self.progress is not None:
                parts.append(self.progress(torch.full((pool, 1), float(progress))))
            if "gradients" in self.inputs:
                log_norm = standardise(torch.log(stats.sum_norm + 1e-12))
                layers = torch.stack([stats.cosine, log_norm], dim=2)
                _, (state, _) = self.gradient_lstm(layers)  # state: (2 directions, P, hidden)
                parts.append(torch.cat([state[0], state[1]], dim=1))
            if self.loss_lstm is not None:
                loss = standardise(stats.query_loss.view(pool, 1))
                parts.append(self._one_step(self.loss_lstm, loss))
        x = torch.cat(parts, dim=1)
        context = feature_axis_context(x) if self.faithful else leave_one_out_mean(x)
        return self.fusion(torch.cat([x, self.context(context)], dim=1)).squeeze(1)

    @staticmethod
    def _one_step(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
        """The reference's use of an LSTM: a sequence of length 1 with the pool as batch."""
        output, _ = lstm(x.unsqueeze(0))
        return output.sum(dim=0)


def draw_log_prob(
    probabilities: torch.Tensor, indices: np.ndarray, replace: bool, faithful: bool
) -> torch.Tensor:
    """log P(draw). Without replacement, the k-th pick has probability p_k / (1 - Σ_{j<k} p_j);
    ``faithful`` (or a draw with replacement) uses Σ log p_k."""
    index = torch.as_tensor(indices, dtype=torch.long)
    log_p = torch.log(probabilities[index])
    if replace or faithful:
        return log_p.sum()
    taken = torch.cumsum(probabilities[index], dim=0) - probabilities[index]
    return (log_p - torch.log1p(-taken.clamp(max=1 - 1e-6))).sum()


class ATSScheduler(TaskScheduler):
    """The adaptive task scheduler, usable in any training loop.

    Per iteration: :meth:`propose` draws B candidates from the policy (temperature 1) with
    the log-probability of the draw; the caller scores a look-ahead model built from them and
    passes the reward to :meth:`update` (one REINFORCE step with a moving-average baseline);
    :meth:`select` then draws the candidates for the real meta-update from the updated policy
    sharpened to temperature max(τ, decay^t), t counting the calls to :meth:`select`.
    :meth:`choose` runs these steps against a training loop's :class:`Services`.

    Args:
        options: the settings (:class:`ATSOptions`).
        setup: the run (the number of per-layer statistics K, the seed of the network).
    """

    name = "ats"
    Options = ATSOptions

    def __init__(self, options: ATSOptions | None = None, setup: SchedulerSetup | None = None):
        super().__init__(options, setup)
        options = self.options
        num_layers, seed = self.setup.num_layers, self.setup.seed
        self.measures = Measure.LOSSES
        if options.faithful or "gradients" in options.inputs:
            self.measures |= Measure.GRADIENTS
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.network = ATSNetwork(num_layers, options.faithful, inputs=tuple(options.inputs))
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=options.lr)
        self.temperature_floor = options.temperature
        self.decay = options.temperature_decay
        self.replace = options.replace
        self.baseline_momentum = options.baseline_momentum
        self.faithful = options.faithful
        self.baseline = 0.0
        self.rewards_seen = 0
        self.selections = 0

    @property
    def warmup_iterations(self) -> int:
        return self.options.warmup

    @property
    def temperature(self) -> float:
        """The temperature of the next :meth:`select`."""
        return max(self.temperature_floor, self.decay ** (self.selections + 1))

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        """Propose, score the look-ahead, learn, then select (or, in the warm-up, stop)."""
        options = self.options
        warming_up = self.rewards_seen < options.warmup
        proposal = self.propose(pool, batch_size, rng)
        reward = services.lookahead_value(
            proposal.indices,
            options.lookahead_lr,
            "score" if self.faithful else options.reward,
            options.paired_baseline and not self.faithful,
            options.reward_tasks or batch_size,
        )
        diagnostics = self.update(proposal, reward)
        if warming_up:
            return Selection(
                proposal.indices,
                proposal.probabilities,
                update="step_and_restore" if self.faithful else "skip",
                policy=proposal.probabilities,
                diagnostics=diagnostics,
            )
        chosen = self.select(pool, batch_size, rng)
        return Selection(
            chosen.indices,
            chosen.probabilities,
            policy=proposal.probabilities,
            diagnostics=diagnostics,
        )

    def _progress(self, pool: Candidates) -> float:
        """The reference counts all iterations, warm-up included: int(t / (T + 1) * 100)."""
        if self.faithful:
            return pool.iteration / (pool.total_iterations + 1)
        return pool.progress

    def policy(self, pool: Candidates) -> torch.Tensor:
        """(P,) sampling probabilities at temperature 1, differentiable w.r.t. the network."""
        return F.softmax(self.network(pool.require("stats"), self._progress(pool)), dim=0)

    def propose(self, pool: Candidates, batch_size: int, rng: np.random.Generator) -> Selection:
        """B candidates for the look-ahead, from the policy at temperature 1."""
        probabilities = self.policy(pool)
        # Both modes draw the look-ahead sample without replacement, as the reference's README.
        indices = draw(probabilities, batch_size, False, rng)
        log_prob = draw_log_prob(probabilities, indices, False, self.faithful)
        return Selection(indices, probabilities.detach(), log_prob=log_prob)

    def update(self, proposal: Selection, reward: float) -> dict[str, float]:
        """One REINFORCE step: ascend (reward - baseline) * log P(proposal)."""
        if proposal.log_prob is None:
            raise ValueError("update() needs a proposal from propose()")
        if self.faithful:  # the running mean of all rewards, used before it is updated
            advantage = reward - self.baseline
            self.baseline += (reward - self.baseline) / (self.rewards_seen + 1)
        else:
            if self.rewards_seen == 0:
                self.baseline = reward
            advantage = reward - self.baseline
            self.baseline += (1 - self.baseline_momentum) * (reward - self.baseline)
        self.rewards_seen += 1
        loss = -proposal.log_prob * advantage
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"reward": reward, "baseline": self.baseline, "advantage": advantage}

    def select(self, pool: Candidates, batch_size: int, rng: np.random.Generator) -> Selection:
        """The meta-update's candidates, from the policy sharpened to :attr:`temperature`."""
        temperature = self.temperature
        self.selections += 1
        with torch.no_grad():
            logits = self.network(pool.require("stats"), self._progress(pool))
            # float64: at τ = 0.1 a float32 softmax can leave fewer than B non-zero entries
            probabilities = F.softmax(logits.double() / temperature, dim=0)
        return Selection(draw(probabilities, batch_size, self.replace, rng), probabilities)

    def state_dict(self) -> dict[str, Any]:
        return {
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "rewards_seen": self.rewards_seen,
            "selections": self.selections,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = float(state["baseline"])
        self.rewards_seen = int(state["rewards_seen"])
        self.selections = int(state["selections"])
