"""A written model of how an ATS iteration scales over R ranks (issue 13; docs/benchmarks.md).

Nothing here is timed. Compute comes from the measured single-process phase times of
``benchmarks/ats_phases.py`` (docs/benchmarks.md, "Where an ATS iteration's time goes"); each
phase splits over ranks by whole tasks, so a rank's share of it is ceil(tasks / R) / tasks.
Communication is counted in bytes from the models' parameter counts: one ring all-reduce of
the chosen tasks' meta-gradient (float32) per iteration, and all-gathers of the pool's rows and
the rewards, which are a few hundred bytes. Link speeds are stated assumptions, not measured.

    python benchmarks/scaling_model.py
"""

from __future__ import annotations

import math

from metasched.models.conv4 import Conv4
from metasched.models.mlp import FingerprintMLP

# Measured (docs/benchmarks.md): 84x84 ANIL on the 2-core AMD EPYC, seconds per iteration.
PHASES_CPU = {"pool": 1.175, "chosen": 0.296, "reward": 0.165, "serial": 0.020}
POOL, BATCH, REWARD_TASKS = 10, 2, 2  # the paper's 1-shot setting: pool 10, meta-batch 2
# Assumed one-way bandwidths (bytes/s) and per-collective latencies (s).
LINKS = {
    "NVLink (8 GPUs, one node)": (300e9, 20e-6),
    "PCIe 4 x16 (8 GPUs, one node)": (20e9, 30e-6),
    "InfiniBand 100 Gb/s (nodes)": (12e9, 50e-6),
    "Ethernet 10 Gb/s (nodes)": (1.2e9, 100e-6),
}
ROW_BYTES = 4 * 8  # a pool row: a few float32 statistics per candidate


def share(tasks: int, ranks: int) -> float:
    """The fraction of a phase's single-process time that one rank still spends."""
    return math.ceil(tasks / ranks) / tasks


def compute_seconds(phases: dict[str, float], ranks: int, pool: int = POOL) -> float:
    """One rank's compute per iteration (the pool phase scaled to ``pool`` candidates)."""
    return (
        phases["pool"] * pool / POOL * share(pool, ranks)
        + phases["chosen"] * share(BATCH, ranks)
        + phases["reward"] * share(REWARD_TASKS, ranks)
        + phases["serial"]
    )


def communication_seconds(parameters: int, ranks: int, link: tuple[float, float]) -> float:
    """A ring all-reduce of the meta-gradient plus two small all-gathers."""
    if ranks == 1:
        return 0.0
    bandwidth, latency = link
    gradient = 2 * (ranks - 1) / ranks * 4 * parameters / bandwidth + 2 * (ranks - 1) * latency
    gathers = 2 * ((ranks - 1) * latency + POOL * ROW_BYTES / bandwidth)
    return gradient + gathers


def main() -> None:
    models = {
        "Conv4-32, 84x84, 5-way": Conv4(5, 3, 32, 84),
        "fingerprint MLP 1024-500-500-1": FingerprintMLP(1024),
    }
    print("| model | parameters | meta-gradient all-reduced per iteration (ring, per rank, R=8) |")
    print("|---|---|---|")
    counts = {}
    for name, model in models.items():
        counts[name] = sum(p.numel() for p in model.parameters())
        sent = 2 * 7 / 8 * 4 * counts[name]
        print(f"| {name} | {counts[name]:,} | {sent / 1e6:.2f} MB |")
    print()
    print("Compute per rank (84x84 ANIL phases, CPU seconds) and speed-up over one process:")
    print()
    print("| ranks | pool 10: s/it | speed-up | pool 10·R: s/it | ÷ one process at pool 10 |")
    print("|---|---|---|---|---|")
    one = compute_seconds(PHASES_CPU, 1)
    for ranks in (1, 2, 4, 5, 8, 16):
        fixed = compute_seconds(PHASES_CPU, ranks)
        grown = compute_seconds(PHASES_CPU, ranks, POOL * ranks)
        print(f"| {ranks} | {fixed:.3f} | {one / fixed:.2f}x | {grown:.3f} | {grown / one:.2f} |")
    print()
    print("Communication per iteration at R=8, against the compute it accompanies:")
    print()
    print("| link | Conv4-32: all-reduce | compute per rank | MLP: all-reduce | compute per rank |")
    print("|---|---|---|---|---|")
    # Measured H100 ATS s/it (docs/benchmarks.md), split over phases as the CPU's: an assumption.
    gpu_totals = {"Conv4-32, 84x84, 5-way": 0.113, "fingerprint MLP 1024-500-500-1": 0.068}
    per_rank = {
        name: compute_seconds({k: v * total / one for k, v in PHASES_CPU.items()}, 8)
        for name, total in gpu_totals.items()
    }
    for link_name, link in LINKS.items():
        cells = []
        for name in gpu_totals:
            cells.append(f"{communication_seconds(counts[name], 8, link) * 1e3:.2f} ms")
            cells.append(f"{per_rank[name] * 1e3:.1f} ms")
        print(f"| {link_name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
