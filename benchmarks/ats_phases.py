"""Where an ATS iteration's time goes, in units of a uniform iteration, in one process.

An ATS iteration scores P candidates (per candidate the same forward and backward passes a
uniform iteration runs for each of its B tasks), differentiates the chosen candidates' adapted
losses for the look-ahead and the meta-update (the pool's graphs are reused, and a candidate
chosen twice is differentiated once), and evaluates the look-ahead model and θ0 on B fresh
reward tasks (forward passes only). This table shows each part's time beside the uniform
iteration's, so one can check that each runs at the uniform iteration's pace per task.

    python benchmarks/ats_phases.py                    # 84x84 Conv4-32, ANIL and MAML
    python benchmarks/ats_phases.py --configs glyphs --steps 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ats_speed import BATCH, CONFIGS, POOL, PhaseClock, make_trainer

from metasched.training.gradients import CandidateGradients, ChosenOutcome

PHASES = {
    "pool": "pool statistics (P candidates)",
    "gradients": "chosen candidates' meta-gradients (look-ahead and update)",
    "reward": "reward: look-ahead and θ0 on B reward tasks (forward only)",
    "scheduler": "scheduler network (propose, REINFORCE, select)",
}


def measure(config_name: str, algorithm: str, rounds: int, steps: int) -> None:
    """Prints one configuration's table: uniform and ATS iterations interleaved in rounds."""
    clock = PhaseClock()
    differentiated: list[int] = []
    original_mean = CandidateGradients.mean

    def counting_mean(self: CandidateGradients, indices: np.ndarray) -> ChosenOutcome:
        out = original_mean(self, indices)
        if clock.on:
            differentiated.append(len(self.cache))
        return out

    with tempfile.TemporaryDirectory() as tmp:
        uniform = make_trainer(config_name, algorithm, "uniform", "cpu", Path(tmp) / "u")
        ats = make_trainer(config_name, algorithm, "ats", "cpu", Path(tmp) / "a")
        clock.wrap(ats.parts.learner, "measure_pool", "pool")
        clock.wrap(ats.parts.learner, "evaluate", "reward")
        for method in ("propose", "update", "select"):
            clock.wrap(ats.scheduler, method, "scheduler")
        CandidateGradients.mean = counting_mean  # type: ignore[method-assign]
        clock.wrap(CandidateGradients, "mean", "gradients")
        uniform.train_step()  # warm-up
        ats.train_step()
        uniform_seconds = ats_seconds = 0.0
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(steps):
                uniform.train_step()
            uniform_seconds += time.perf_counter() - start
            clock.on = True
            start = time.perf_counter()
            for _ in range(steps):
                ats.train_step()
            ats_seconds += time.perf_counter() - start
            clock.on = False
        CandidateGradients.mean = original_mean  # type: ignore[method-assign]
    iterations = rounds * steps
    per_uniform = uniform_seconds / iterations
    per_ats = ats_seconds / iterations
    print(f"\n{CONFIGS[config_name]}, {algorithm}, P={POOL}, B={BATCH}, {iterations} iterations\n")
    print("| part | s/it | ÷ uniform iteration |")
    print("|---|---|---|")
    print(f"| uniform iteration (B tasks: forward, backward, Adam) | {per_uniform:.3f} | 1.00 |")
    rest = per_ats
    for phase, label in PHASES.items():
        seconds = clock.seconds[phase] / iterations
        rest -= seconds
        print(f"| {label} | {seconds:.3f} | {seconds / per_uniform:.2f} |")
    rest_label = "the rest (drawing tasks, Adam, bookkeeping)"
    print(f"| {rest_label} | {rest:.3f} | {rest / per_uniform:.2f} |")
    print(f"| **ATS iteration** | **{per_ats:.3f}** | **{per_ats / per_uniform:.2f}** |")
    after_selection = differentiated[1::2]  # each iteration asks twice: proposal, selection
    distinct = sum(after_selection) / len(after_selection)
    print(
        f"\nCandidates differentiated per iteration: {distinct:.2f} of the {2 * BATCH} chosen"
        " (proposal and selection overlap)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["mini84"], choices=list(CONFIGS))
    parser.add_argument("--algorithms", nargs="+", default=["anil", "maml"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads")
    for config_name in args.configs:
        for algorithm in args.algorithms:
            if not (config_name == "drug" and algorithm == "maml"):
                measure(config_name, algorithm, args.rounds, args.steps)


if __name__ == "__main__":
    main()
