"""Reliability of the GP learners' predictive intervals on held-out FS-Mol assays (issue 24;
docs/results/assay-benchmark.md, "Calibration").

On the benchmark's own seeded supports (``metasched.benchmark.benchmark_draws``), each query
compound's standardised residual z = (y − mean) / sd is collected; the central interval of
nominal coverage p holds the compound when |z| ≤ Φ⁻¹((1 + p) / 2). The plot draws observed
against nominal coverage for each run and for the per-assay Tanimoto GP; on the diagonal an
interval means what it says. Compounds are pooled over assays and draws.

    python experiments/gp_reliability.py runs/gp-adaptive-k64 runs/gp-fpr-k64 --sizes 16,64 \
        --draws 3 --out docs/figures/assay-benchmark/reliability.png \
        --set data.root=../shared/data/fsmol/fsmol_train_valid.csv.gz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm

from metasched.benchmark import MIN_QUERY, SEED, benchmark_draws, trained_learner
from metasched.data.registry import load_dataset
from metasched.domains import domain_of
from metasched.files import save_figure
from metasched.learners.gp import TanimotoGP
from metasched.tasks.assay_sampler import AssaySampler

LEVELS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.7, 0.8, 0.9, 0.95, 0.99])


def predictor(run: Path, overrides: list[str]):
    """The run's learner (best checkpoint) as episode -> (mean, variance), and its config."""
    learner, config = trained_learner(run, overrides)
    params = learner.parameters()
    return (lambda episode: learner.predict(params, episode)), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--sizes", default="16,64")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    methods = {}
    config = None
    for run in args.runs:
        methods[run.name], config = predictor(run, args.overrides)
    assert config is not None
    methods["per-assay GP"] = TanimotoGP(domain_of(config).objective).predict
    pool = load_dataset(config.data).test
    spec = config.task.assays
    episodes = AssaySampler(pool, 1, 10**9, 1, standardise=True, min_scale=spec.min_scale)
    sizes = [int(s) for s in args.sizes.split(",")]
    plan = benchmark_draws(pool, sizes, args.draws, MIN_QUERY)
    z: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    with torch.no_grad():
        for item in plan:
            episode = episodes.episode(item.assay, item.support, item.query)
            for name, predict in methods.items():
                with torch.enable_grad():
                    out = predict(episode).double().reshape(-1, 2)
                sd = out[:, 1].clamp_min(1e-12).sqrt()
                z[name].append(((episode.query_y.double() - out[:, 0]) / sd).numpy())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    print(f"{len(plan)} draws (seed {SEED}), sizes {sizes}; observed coverage at nominal:")
    print("| method | " + " | ".join(f"{level:.2f}" for level in LEVELS) + " |")
    print("|---|" + "---|" * len(LEVELS))
    for name, parts in z.items():
        values = np.abs(np.concatenate(parts))
        observed = np.array([np.mean(values <= norm.ppf((1 + p) / 2)) for p in LEVELS])
        axis.plot(LEVELS, observed, marker="o", markersize=3, label=name)
        print(f"| {name} | " + " | ".join(f"{o:.2f}" for o in observed) + " |")
    axis.set(xlabel="nominal coverage of the central interval", ylabel="observed coverage",
             title="GP predictive intervals, held-out FS-Mol assays")  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    save_figure(figure, args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
