"""ATS: the adaptive task scheduler (Yao et al., NeurIPS 2021), trained by REINFORCE.

The network maps each candidate's statistics (query loss after adaptation; per-layer gradient
agreement between support and query at θ0) and the training progress to a logit; a softmax
over the pool gives sampling probabilities.

Two modes:

* ``faithful=True`` reproduces the reference code: the progress percentage indexes an
  ``Embedding(100, 5)``; two bidirectional LSTMs read the per-layer query-gradient norms and
  the per-layer cosines as *one* time step of a K-dimensional vector; the "DeepSets" context
  averages over the feature axis (so it carries no information about the other tasks); the
  log-probability of a draw without replacement is the with-replacement formula; the reward
  baseline is the running mean of all past rewards.
* the default corrects these: the progress fraction goes through a fully connected layer of
  width 5 (as the supplement says); one bidirectional LSTM reads the sequence of layers, from
  input to output, each step holding that layer's (cosine, log-norm of the summed gradient);
  the context is the leave-one-out mean over the *other* candidates; the log-probability is
  that of the sequential draw without replacement; the baseline is an exponential moving
  average. Losses and log-norms are standardised across the pool, so the network sees the
  same scale whatever the loss (cross-entropy, or an MSE in squared assay units) and however
  far training has gone; layers whose gradient is identically zero (a bias before batch norm)
  then read as zeros. The loss LSTM sees one step in both modes: a scalar has no sequence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metasched.schedulers.base import Pool, Selection, TaskScheduler
from metasched.stats import PoolStats


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
    """

    def __init__(self, num_layers: int, faithful: bool = False, hidden: int = 10) -> None:
        super().__init__()
        self.faithful = faithful
        self.progress: nn.Module
        if faithful:
            self.progress = nn.Embedding(100, 5)
            self.norm_lstm = nn.LSTM(num_layers, hidden, bidirectional=True)
            self.cosine_lstm = nn.LSTM(num_layers, hidden, bidirectional=True)
            gradient_width = 4 * hidden
        else:
            self.progress = nn.Linear(1, 5)
            self.gradient_lstm = nn.LSTM(2, hidden, bidirectional=True, batch_first=True)
            gradient_width = 2 * hidden
        self.loss_lstm = nn.LSTM(1, hidden, bidirectional=True)
        width = 5 + gradient_width + 2 * hidden
        self.context = nn.Sequential(nn.Linear(width, 20), nn.Tanh(), nn.Linear(20, 10))
        self.fusion = nn.Sequential(nn.Linear(width + 10, 20), nn.Tanh(), nn.Linear(20, 1))

    def forward(self, stats: PoolStats, progress: float) -> torch.Tensor:
        """(P,) logits for the P candidates at training progress ``progress`` in [0, 1]."""
        pool = stats.pool_size
        if self.faithful:
            loss = self._one_step(self.loss_lstm, stats.query_loss.view(pool, 1))
            percent = torch.full((pool,), min(int(progress * 100), 99), dtype=torch.long)
            gradients = torch.cat(
                [
                    self._one_step(self.norm_lstm, stats.query_norm),
                    self._one_step(self.cosine_lstm, stats.cosine),
                ],
                dim=1,
            )
        else:
            loss = self._one_step(self.loss_lstm, standardise(stats.query_loss.view(pool, 1)))
            percent = torch.full((pool, 1), float(progress))
            log_norm = standardise(torch.log(stats.sum_norm + 1e-12))
            layers = torch.stack([stats.cosine, log_norm], dim=2)
            _, (state, _) = self.gradient_lstm(layers)  # state: (2 directions, P, hidden)
            gradients = torch.cat([state[0], state[1]], dim=1)
        x = torch.cat([self.progress(percent), gradients, loss], dim=1)
        context = feature_axis_context(x) if self.faithful else leave_one_out_mean(x)
        return self.fusion(torch.cat([x, self.context(context)], dim=1)).squeeze(1)

    @staticmethod
    def _one_step(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
        """The reference's use of an LSTM: a sequence of length 1 with the pool as batch."""
        output, _ = lstm(x.unsqueeze(0))
        return output.sum(dim=0)


def draw(
    probabilities: torch.Tensor, count: int, replace: bool, rng: np.random.Generator
) -> np.ndarray:
    """Draws ``count`` indices; without replacement, one at a time from the renormalised rest."""
    p = probabilities.detach().double().numpy()
    p = p / p.sum()
    if replace:
        return rng.choice(len(p), count, replace=True, p=p)
    chosen: list[int] = []
    remaining = p.copy()
    for _ in range(count):
        index = int(rng.choice(len(p), p=remaining / remaining.sum()))
        chosen.append(index)
        remaining[index] = 0.0
    return np.array(chosen)


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

    Args:
        num_layers: per-layer statistics per candidate (K).
        temperature: τ, the floor of the sharpening temperature (0.1 in the paper's noisy
            setting, 1 for limited budgets).
        decay: per-selection decay of the temperature towards τ.
        replace: draw the meta-update's candidates with replacement.
        lr: Adam learning rate of the scheduler network.
        baseline_momentum: of the exponential moving-average reward baseline.
        faithful: reproduce the reference code's scheduler (see the module docstring).
        seed: initialises the network.
    """

    needs_stats = True
    learns = True

    def __init__(
        self,
        num_layers: int,
        temperature: float = 0.1,
        decay: float = 0.99,
        replace: bool = False,
        lr: float = 1e-3,
        baseline_momentum: float = 0.9,
        faithful: bool = False,
        seed: int = 0,
    ) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.network = ATSNetwork(num_layers, faithful)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=lr)
        self.temperature_floor = temperature
        self.decay = decay
        self.replace = replace
        self.baseline_momentum = baseline_momentum
        self.faithful = faithful
        self.baseline = 0.0
        self.rewards_seen = 0
        self.selections = 0

    @property
    def temperature(self) -> float:
        """The temperature of the next :meth:`select`."""
        return max(self.temperature_floor, self.decay ** (self.selections + 1))

    def policy(self, pool: Pool) -> torch.Tensor:
        """(P,) sampling probabilities at temperature 1, differentiable w.r.t. the network."""
        if pool.stats is None:
            raise ValueError("ATS needs the pool statistics")
        return F.softmax(self.network(pool.stats, pool.progress), dim=0)

    def propose(self, pool: Pool, batch_size: int, rng: np.random.Generator) -> Selection:
        probabilities = self.policy(pool)
        # Both modes draw the look-ahead sample without replacement, as the reference's README.
        indices = draw(probabilities, batch_size, False, rng)
        log_prob = draw_log_prob(probabilities, indices, False, self.faithful)
        return Selection(indices, probabilities.detach(), log_prob)

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

    def select(self, pool: Pool, batch_size: int, rng: np.random.Generator) -> Selection:
        temperature = self.temperature
        self.selections += 1
        with torch.no_grad():
            if pool.stats is None:
                raise ValueError("ATS needs the pool statistics")
            logits = self.network(pool.stats, pool.progress)
            probabilities = F.softmax(logits / temperature, dim=0)
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


def entropy(probabilities: torch.Tensor) -> float:
    """Shannon entropy (nats) of a distribution over candidates."""
    p = probabilities.clamp_min(1e-12)
    return float(-(p * p.log()).sum())
