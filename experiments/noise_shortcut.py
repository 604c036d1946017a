"""Can a single pool statistic tell noisy tasks from clean ones, per noise mode?

For each noise mode, at the given meta-parameters (a random initialisation, or a checkpoint),
it measures the pool statistics of the same number of clean and noisy training tasks and
reports, per statistic (the adapted query loss and each layer's support/query gradient
cosine), the area under the ROC curve of separating noisy from clean by that one number (0.5:
no information; 1 or 0: perfect). Issue 9 found that ``flip`` noise lets the head bias's
cosine separate them perfectly at a random initialisation; ``redraw`` is the reference's
construction that keeps the support's labels balanced.

    python experiments/noise_shortcut.py --tasks 60
    python experiments/noise_shortcut.py --tasks 60 --init-from runs/main/pretrain/best.pt
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import mannwhitneyu

from metasched.config import load_config
from metasched.tasks import NOISE_MODES
from metasched.training.trainer import Trainer


def auc(noisy: np.ndarray, clean: np.ndarray) -> float:
    """P(a noisy task's value > a clean task's), ties counting half."""
    return float(mannwhitneyu(noisy, clean).statistic / (len(noisy) * len(clean)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60, help="clean and noisy tasks each")
    parser.add_argument("--init-from", help="a checkpoint (default: a random initialisation)")
    parser.add_argument("--config", default="glyphs-noisy")
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"θ0: {args.init_from or 'random initialisation'}; {args.tasks} clean + noisy tasks")
    print()
    print(
        "| noise | loss AUC | best layer cosine AUC (layer) | head bias cosine AUC"
        " | head bias cosine: clean min / noisy max |"
    )
    print("|---|---|---|---|---|")
    for mode in NOISE_MODES:
        overrides = [f"task.noise={mode}", "task.noise_ratio=0.5", "train.device=cpu", *args.set]
        if args.init_from:
            overrides.append(f"train.init_from={args.init_from}")
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer.create(load_config(args.config, overrides), Path(run_dir))
        learner, sampler = trainer.parts.learner, trainer.parts.samplers["train"]
        rng = np.random.default_rng(0)
        groups: dict[bool, list] = {True: [], False: []}
        while min(len(g) for g in groups.values()) < args.tasks:
            episode = sampler.sample(rng)
            if len(groups[episode.noisy]) < args.tasks:
                groups[episode.noisy].append(episode)
        params = learner.parameters()
        stats = {
            noisy: learner.measure_pool(params, episodes, keep_graph=False).stats
            for noisy, episodes in groups.items()
        }
        layers = learner.scored_layers()
        loss_auc = auc(stats[True].query_loss.numpy(), stats[False].query_loss.numpy())
        cosines = {k: s.cosine.numpy() for k, s in stats.items()}
        layer_aucs = [auc(cosines[True][:, j], cosines[False][:, j]) for j in range(len(layers))]
        best = int(np.argmax([abs(a - 0.5) for a in layer_aucs]))
        head = layers.index("head.bias")
        print(
            f"| {mode} | {loss_auc:.3f} | {layer_aucs[best]:.3f} ({layers[best]})"
            f" | {layer_aucs[head]:.3f} | {cosines[False][:, head].min():.3f} /"
            f" {cosines[True][:, head].max():.3f} |"
        )


if __name__ == "__main__":
    main()
