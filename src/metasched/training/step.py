"""One training iteration: the scheduler's candidates, what it asked to be measured, its
choice, and the meta-update on the chosen tasks (plus any clean reward tasks the config adds),
reusing the measured candidates' graphs."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metasched.config import Config
from metasched.errors import Diverged
from metasched.learners.functional import Params
from metasched.learners.results import TaskResults
from metasched.schedulers import Candidates, Feedback, Measure, Selection
from metasched.tasks.episode import Episode
from metasched.training.components import Components
from metasched.training.gradients import CandidateGradients, ChosenOutcome, Gradient, clipped
from metasched.training.ranks import Ranks
from metasched.training.services import LoopServices

SKIPS_IN_A_ROW = 20  # train.on_nonfinite=skip: this many iterations without an update stop


@dataclass
class TrainState:
    """Progress that a checkpoint must restore besides the model and optimiser."""

    iteration: int = 0
    best_score: float = -math.inf
    best_iteration: int = 0
    updates: int = 0
    seconds: float = 0.0  # wall time of training and validation, across resumes
    spent: float = 0.0  # compute, in uniform iterations, when the run has a train.budget


def fraction_done(config: Config, state: TrainState) -> float:
    """The fraction of training done: of ``train.iterations`` meta-updates, or of the compute
    budget when the run has one (``train.budget``)."""
    budget = config.train.budget
    return state.spent / budget.total if budget else state.updates / config.train.iterations


def learning_rate(config: Config, state: TrainState) -> float:
    """The meta-learning rate at ``state`` (``train.lr_schedule``)."""
    train = config.train
    done = fraction_done(config, state)
    if train.lr_schedule == "cosine":
        return train.meta_lr * 0.5 * (1 + math.cos(math.pi * done))
    if train.lr_schedule == "linear":
        return train.meta_lr * (1 - done)
    return train.meta_lr


def diverged(config: Config, what: str, params: Params, advice: str) -> Diverged:
    """The error for a non-finite quantity, with its likely cause: the meta-update's step if
    θ0 itself blew up, else what the learner says about its inner loop (``advice``)."""
    finite = all(bool(torch.isfinite(p).all()) for p in params.values())
    largest = max(float(p.detach().abs().max()) for p in params.values()) if finite else 0
    if not finite or largest > 1e6:
        state = "not finite" if not finite else f"as large as {largest:.3g}"
        setting = f"train.meta_lr={config.train.meta_lr / 100:g}"
        return Diverged(
            what, f"the meta-update's step is too large (θ0 is {state}): lower it, {setting}"
        )
    return Diverged(what, advice)


class MetaStep:
    """Runs training iterations of a run's components on its random stream.

    Args:
        config: the run's settings.
        parts: its data samplers, model, learner, scheduler and device.
        optimizer: the meta-optimiser (Adam on θ0).
        ranks: the processes that share each iteration's tasks.
        rng: the run's training stream (candidates, choices, reward tasks).
    """

    def __init__(
        self,
        config: Config,
        parts: Components,
        optimizer: torch.optim.Optimizer,
        ranks: Ranks,
        rng: np.random.Generator,
    ) -> None:
        self.config = config
        self.parts = parts
        self.scheduler = parts.scheduler
        self.optimizer = optimizer
        self.ranks = ranks
        self.rng = rng
        self.skipped_in_a_row = 0

    def diverged(self, what: str, params: Params) -> Diverged:
        return diverged(self.config, what, params, self.parts.learner.instability_advice())

    def run(self, state: TrainState, total_iterations: int) -> dict[str, Any]:
        """One iteration at ``state`` (whose ``updates`` it advances); returns its record."""
        start = time.perf_counter()
        batch = self.config.train.meta_batch_size
        sampler = self.parts.samplers["train"]
        size = self.config.scheduler.pool_size or batch
        drawn = self.scheduler.candidates(sampler, size, batch, self.rng)
        candidates = [c.to(self.parts.device) for c in drawn]
        noisy = np.array([c.noisy for c in candidates])
        params = self.parts.learner.parameters()
        measured, graphs, kept = self._measure(candidates, params)
        pool = Candidates(  # the schedulers' networks are tiny: they live on the CPU
            size=len(candidates),
            progress=fraction_done(self.config, state),
            stats=measured.stats.to("cpu") if measured and measured.stats else None,
            iteration=state.iteration,
            total_iterations=total_iterations,
            episodes=candidates,
        )
        gradients = CandidateGradients(
            self.parts.learner, params, candidates, measured, graphs, kept, self.ranks
        )
        services = LoopServices(
            self.parts.learner,
            params,
            gradients,
            self.parts.samplers["reward"],
            self.rng,
            self.parts.device,
            self.config.train.clip_grad_norm,
        )
        selection = self.scheduler.choose(pool, batch, self.rng, services)
        if selection.policy is not None and not torch.isfinite(selection.policy).all():
            raise self.diverged("the scheduler's probabilities are not finite", params)
        record: dict[str, Any] = {"phase": "train" if selection.update == "step" else "warmup"}
        record.update(selection.diagnostics)
        if selection.policy is not None:
            record.update(_probability_diagnostics(selection.policy, noisy))
        chosen, weights = selection.indices, selection.weights
        chosen_noisy = [bool(noisy[i]) for i in chosen]
        chosen_skewed = [bool(candidates[i].skewed) for i in chosen]
        if selection.replay:
            replayed = [e.to(self.parts.device) for e in selection.replay]
            chosen = np.concatenate([chosen, gradients.add(replayed)]).astype(np.int64)
            chosen_noisy += [e.noisy for e in replayed]
            chosen_skewed += [e.skewed for e in replayed]
        own = np.ones(len(chosen), dtype=bool)  # which entries of chosen are the scheduler's
        if selection.update == "step":
            extra = self._reward_tasks_for_update(state.updates)
            if extra:
                indices = gradients.add(extra)
                chosen = np.concatenate([chosen, indices])
                own = np.concatenate([own, np.zeros(len(indices), dtype=bool)])
                if weights is not None:  # the added tasks weigh as much as an average one
                    weights = np.concatenate([weights, np.full(len(indices), 1 / batch)])
                    weights = weights / weights.sum()
                record["reward_tasks_trained"] = len(indices)
        clean = [False] * (len(chosen) - len(chosen_noisy))  # the loop's reward tasks
        trained_noisy = chosen_noisy + clean
        skewed = np.array([c.skewed for c in candidates])
        trained_skewed = chosen_skewed + clean
        combined = gradients.combine(chosen, weights)
        outcome: ChosenOutcome | None = combined
        remaining = np.ones(len(chosen), dtype=bool)  # the entries of chosen outcome covers
        if not _finite(combined):
            outcome, remaining = self._without_nonfinite(
                gradients, combined, chosen, weights, params, record
            )
        if selection.update == "step":
            if outcome is not None:
                self._adam_step(params, outcome.gradient, state)
                state.updates += 1
            feedback = _feedback(selection, own, remaining, outcome, state, self.config)
            record.update(self.scheduler.observe(feedback))
        elif selection.update == "step_and_restore" and outcome is not None:
            self._restored_step(params, outcome.gradient, state)
        if services.reward_tasks_drawn:
            record["reward_tasks"] = services.reward_tasks_drawn
        if self.config.task.skew_fraction > 0:
            record.update(skewed=float(np.mean(trained_skewed)), pool_skewed=float(skewed.mean()))
        record.update(
            loss=None if outcome is None else outcome.loss,
            score=None if outcome is None else outcome.score,
            noisy=float(np.mean(trained_noisy)),
            pool_noisy=float(noisy.mean()),
            chosen=[int(i) for i in chosen[remaining]],
            seconds=time.perf_counter() - start,
        )
        return record

    def _without_nonfinite(
        self,
        gradients: CandidateGradients,
        outcome: ChosenOutcome,
        chosen: np.ndarray,
        weights: np.ndarray | None,
        params: Params,
        record: dict[str, Any],
    ) -> tuple[ChosenOutcome | None, np.ndarray]:
        """Stops the run at a NaN or infinite loss or meta-gradient, or, with
        ``train.on_nonfinite=skip``, drops the tasks that gave one. Returns the outcome of the
        rest (None: no update is possible) and which entries of ``chosen`` remain."""
        bad = ~np.isfinite(outcome.losses)
        if self.config.train.on_nonfinite == "stop":
            what = (
                f"the query loss of {bad.sum()} of {len(bad)} chosen tasks is not finite"
                if bad.any()
                else "the meta-gradient is not finite"
            )
            raise self.diverged(what, params)
        kept: ChosenOutcome | None = None
        remaining = np.ones(len(chosen), dtype=bool)
        if bad.any() and not bad.all():
            remaining = ~bad
            rest = weights[remaining] / weights[remaining].sum() if weights is not None else None
            kept = gradients.combine(chosen[remaining], rest)
            kept = kept if _finite(kept) else None
        record["skipped_tasks"] = len(bad) if kept is None else int(bad.sum())
        self.skipped_in_a_row = self.skipped_in_a_row + 1 if kept is None else 0
        if self.skipped_in_a_row >= SKIPS_IN_A_ROW:
            raise self.diverged(
                f"every chosen task gave a NaN or infinity for {SKIPS_IN_A_ROW} iterations", params
            )
        return kept, remaining

    def _measure(
        self, candidates: list[Episode], params: Params
    ) -> tuple[TaskResults | None, dict[int, torch.Tensor], set[int]]:
        """What the scheduler declared (``measures``), and nothing else: each rank measures its
        share of the candidates, and every rank gets every row. Also returns this rank's kept
        graphs by candidate, and which candidates some rank kept a graph of."""
        measures = self.scheduler.measures
        if not measures & (Measure.LOSSES | Measure.GRADIENTS):
            return None, {}, set()
        spec = self.config.scheduler
        learner, ranks = self.parts.learner, self.ranks
        bf16 = spec.pool_precision == "bf16"
        # Grouped measurement runs the pool as one batch: backpropagating through it for two
        # chosen tasks would cost more than recomputing them, so its graphs are not kept.
        keep = spec.reuse_graphs and not bf16 and learner.batching == "loop"
        share = ranks.share(len(candidates))
        with torch.autocast(self.parts.device.type, torch.bfloat16, enabled=bf16):
            budget = spec.graph_memory_gb
            mine = learner.measure_pool(
                params,
                [candidates[i] for i in share],
                keep,
                gradients=bool(measures & Measure.GRADIENTS),
                graph_budget=None if budget is None else int(budget * 2**30),
            )
        graphs = dict(zip(share, mine.graphs or ()))
        flags = torch.full((len(share),), float(mine.graphs is not None))
        kept_flags = ranks.gather_rows(flags if len(share) else None, len(candidates))
        kept = {i for i, flag in enumerate(kept_flags.tolist()) if flag}
        return ranks.gather_results(mine, len(candidates)), graphs, kept

    def _reward_tasks_for_update(self, updates: int) -> list[Episode]:
        """Clean reward-split tasks for this meta-update: ``train.reward_tasks_per_update`` on
        average, the fractions carried over deterministically."""
        rate = self.config.train.reward_tasks_per_update
        count = math.floor((updates + 1) * rate + 1e-9) - math.floor(updates * rate + 1e-9)
        sampler = self.parts.samplers["reward"]
        return [sampler.sample(self.rng).to(self.parts.device) for _ in range(count)]

    def _adam_step(self, params: Params, gradient: Gradient, state: TrainState) -> None:
        """One Adam step on θ0 along ``gradient`` (parameters without one are left alone), at
        the scheduled learning rate."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, state)
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params.values(), clipped(gradient, self.config.train.clip_grad_norm)):
            p.grad = g
        self.optimizer.step()

    def _restored_step(self, params: Params, gradient: Gradient, state: TrainState) -> None:
        """The reference's warm-up: an Adam step on θ0, then θ0 restored (the moments stay)."""
        saved = {name: p.detach().clone() for name, p in params.items()}
        self._adam_step(params, gradient, state)
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])


def _feedback(
    selection: Selection,
    own: np.ndarray,
    remaining: np.ndarray,
    outcome: ChosenOutcome | None,
    state: TrainState,
    config: Config,
) -> Feedback:
    """What became of the scheduler's own choices (``own`` entries of the chosen tasks, not
    the tasks the loop added): trained where ``remaining`` and an update happened."""
    choices = int(own.sum())
    losses, scores = np.full(choices, np.nan), np.full(choices, np.nan)
    trained = np.zeros(choices, dtype=bool)
    if outcome is not None:
        row = np.cumsum(remaining) - 1  # outcome's rows follow the remaining entries in order
        trained = remaining[own]
        losses[trained] = outcome.losses[row[own][trained]]
        scores[trained] = outcome.scores[row[own][trained]]
    return Feedback(selection, trained, losses, scores, fraction_done(config, state))


def _finite(outcome: ChosenOutcome) -> bool:
    """Whether the chosen tasks' losses and their meta-gradient are all finite."""
    present = [g for g in outcome.gradient if g is not None]
    norm = torch.nn.utils.get_total_norm(present) if present else torch.zeros(())
    return bool(np.isfinite(outcome.losses).all()) and bool(torch.isfinite(norm))


def _probability_diagnostics(probabilities: torch.Tensor, noisy: np.ndarray) -> dict[str, Any]:
    """Mean policy probability of noisy and of clean candidates, and the policy's entropy."""
    p = probabilities.detach().cpu().numpy()
    return {
        "p_noisy": float(p[noisy].mean()) if noisy.any() else None,
        "p_clean": float(p[~noisy].mean()) if (~noisy).any() else None,
        "entropy": _entropy(probabilities),
    }


def _entropy(probabilities: torch.Tensor) -> float:
    """Shannon entropy (nats) of a distribution over candidates."""
    p = probabilities.clamp_min(1e-12)
    return float(-(p * p.log()).sum())
