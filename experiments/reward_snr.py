"""How well does each look-ahead reward tell clean tasks from noisy ones?

At a fixed θ0 (a clean pre-trained model), for many trials: build a look-ahead model from two
clean training tasks and one from two noisy ones (random support labels), and score both on two
fresh clean reward tasks (the held-out half of meta-validation). Per look-ahead step size β and
reward kind, it reports the mean reward of clean and of noisy proposals, the spread of a single
reward across trials (each with its own reward tasks, as successive REINFORCE steps are), and
signal / noise = (mean clean - mean noisy) / that spread. "unpaired" is the reference's reward
(the look-ahead model's accuracy); "paired" subtracts θ0's value on the same reward tasks.

    python experiments/reward_snr.py --init-from runs/main/pretrain/best.pt --trials 60
    python experiments/reward_snr.py --init-from runs/main/pretrain/best.pt --set task.noise=flip
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from metasched.config import load_config
from metasched.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init-from", required=True)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--betas", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--config", default="glyphs-noisy")
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    args = parser.parse_args()
    config = load_config(args.config, [f"train.init_from={args.init_from}", *args.set])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer.create(config, Path(run_dir))
    learner, samplers = trainer.parts.learner, trainer.parts.samplers
    params = learner.parameters()
    rng = np.random.default_rng(0)
    rewards: dict[tuple[float, str, str], list[float]] = {}
    for _ in range(args.trials):
        clean, noisy = [], []
        while len(clean) < 2 or len(noisy) < 2:
            episode = samplers["train"].sample(rng)
            (noisy if episode.noisy else clean).append(episode)
        validation = [samplers["reward"].sample(rng) for _ in range(2)]
        before = learner.evaluate(params, validation, learner.train_adaptation, metrics=False)
        values: dict[tuple[str, float], dict[str, float]] = {}
        for name, group in (("clean", clean[:2]), ("noisy", noisy[:2])):
            loss = torch.stack(learner.outcomes(params, group).graphs or ()).mean()
            grads = torch.autograd.grad(loss, list(params.values()))
            for beta in args.betas:
                lookahead = {n: (p - beta * g).detach() for (n, p), g in zip(params.items(), grads)}
                after = learner.evaluate(
                    lookahead, validation, learner.train_adaptation, metrics=False
                )
                values[(name, beta)] = {
                    "accuracy, unpaired": float(after.scores.double().mean()),
                    "accuracy, paired": float((after.scores - before.scores).double().mean()),
                    "-loss, paired": -float((after.losses - before.losses).double().mean()),
                }
        for (name, beta), kinds in values.items():
            for kind, value in kinds.items():
                rewards.setdefault((beta, kind, name), []).append(value)
    print(
        "| look-ahead β | reward | mean, clean proposals | mean, noisy proposals | spread"
        " | signal / noise |"
    )
    print("|---|---|---|---|---|---|")
    for beta in args.betas:
        for kind in values[("clean", beta)]:
            clean = np.array(rewards[(beta, kind, "clean")])
            noisy = np.array(rewards[(beta, kind, "noisy")])
            spread = np.sqrt((clean.var(ddof=1) + noisy.var(ddof=1)) / 2)
            print(
                f"| {beta} | {kind} | {clean.mean():+.4f} | {noisy.mean():+.4f} | {spread:.4f}"
                f" | {(clean.mean() - noisy.mean()) / spread:.2f} |"
            )


if __name__ == "__main__":
    main()
