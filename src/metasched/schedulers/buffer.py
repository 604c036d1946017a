"""Buffer: a reservoir of scored candidates kept across iterations, so that a small measured
pool still yields a selective choice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metasched.errors import MetaschedError
from metasched.schedulers.base import Candidates, Measure, Selection, Services, TaskScheduler
from metasched.tasks.episode import Episode


@dataclass(frozen=True)
class BufferOptions:
    """Settings of the buffer scheduler (``scheduler.buffer``).

    Attributes:
        capacity: how many passed-over candidates the reservoir keeps (the lowest losses).
        max_age: iterations after which a kept candidate's loss is too old to trust; it is
            dropped.
    """

    capacity: int = 8
    max_age: int = 20

    def __post_init__(self) -> None:
        if self.capacity < 0 or self.max_age < 1:
            raise MetaschedError("scheduler.buffer needs capacity >= 0 and max_age >= 1")


@dataclass
class Kept:
    """A passed-over candidate, its adapted query loss and the iteration it was measured."""

    episode: Episode
    loss: float
    measured: int


class BufferScheduler(TaskScheduler):
    """Trains on the B lowest adapted query losses among this iteration's measured candidates
    and a reservoir of candidates passed over in earlier iterations.

    Each iteration the loop measures the P fresh candidates' losses (reused by the meta-update
    for the fresh ones chosen). A kept candidate is ranked by its loss when it was measured (a
    stale score: θ0 has moved since) and, when chosen, is trained on again from scratch, as a
    replayed task. The candidates passed over this time join the reservoir, which keeps the
    ``capacity`` lowest losses younger than ``max_age`` iterations. With per-task noise the
    reservoir fills with clean tasks that lost to cleaner ones, so even a pool of P = B + 1
    mostly trains on clean tasks. The reservoir is part of the scheduler's state: a resumed
    run continues with it.

    Example:
        >>> BufferScheduler(BufferOptions(capacity=4)).options.capacity
        4
    """

    name = "buffer"
    measures = Measure.LOSSES
    Options = BufferOptions

    def __init__(self, options: BufferOptions | None = None, setup: Any = None) -> None:
        super().__init__(options, setup)
        self.kept: list[Kept] = []

    def choose(
        self, pool: Candidates, batch_size: int, rng: np.random.Generator, services: Services
    ) -> Selection:
        losses = pool.require("stats").query_loss.double().numpy()
        now = pool.iteration
        self.kept = [k for k in self.kept if now - k.measured < self.options.max_age]
        # fresh candidates first: a tie goes to the one whose graph is kept
        scores = np.concatenate([losses, [k.loss for k in self.kept]])
        order = np.argsort(scores, kind="stable")[:batch_size]
        fresh = np.array([i for i in order if i < pool.size], dtype=np.int64)
        replayed = [self.kept[i - pool.size] for i in order if i >= pool.size]
        passed = [i for i in range(pool.size) if i not in set(fresh.tolist())]
        episodes = pool.require("episodes")
        remaining = [k for k in self.kept if all(k is not r for r in replayed)]
        remaining += [Kept(episodes[i].to("cpu"), float(losses[i]), now) for i in passed]
        remaining.sort(key=lambda k: k.loss)
        self.kept = remaining[: self.options.capacity]
        return Selection(
            fresh,
            replay=[k.episode for k in replayed],
            diagnostics={"replayed": len(replayed), "kept": len(self.kept)},
        )

    def state_dict(self) -> dict[str, Any]:
        return {"kept": [_plain(k) for k in self.kept]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = [_kept(entry) for entry in state["kept"]]


EPISODE_FIELDS = ("support_x", "support_y", "query_x", "query_y", "noisy", "clean_support_y",
                  "skewed", "target_shift", "target_scale", "source_name")  # fmt: skip


def _plain(kept: Kept) -> dict[str, Any]:
    """A kept candidate as tensors and plain values (what a checkpoint may hold)."""
    entry = {name: getattr(kept.episode, name) for name in EPISODE_FIELDS}
    entry["source"] = list(kept.episode.source)
    return {**entry, "loss": kept.loss, "measured": kept.measured}


def _kept(entry: dict[str, Any]) -> Kept:
    episode = Episode(
        **{name: entry[name] for name in EPISODE_FIELDS}, source=tuple(entry["source"])
    )
    return Kept(episode, float(entry["loss"]), int(entry["measured"]))
