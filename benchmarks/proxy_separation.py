"""How well a cheap proxy of a candidate's adapted query loss (the loss on a few of its query
examples, adapted without a meta-graph) tells noisy candidates from clean ones, and what it
costs per candidate against a trained task, in one process: the design measurement behind the
``proxy`` scheduler.

    python benchmarks/proxy_separation.py --config glyphs-noisy \\
        --set train.init_from=experiments/warm-starts/glyphs-pretrain-1shot.pt

For each number of query examples (all, 25, 10, 5) and task batching (loop, grouped), at the
warm start θ0 of the config: the area under the ROC curve of the proxy loss for noisy against
clean candidates (1: every noisy candidate scores above every clean one; 0.5: chance), and the
milliseconds per candidate; then the milliseconds per task of the meta-update on the same
tasks (adapted with a meta-graph, then backpropagated), timed before and after.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from metasched.config import load_config
from metasched.cpu import cpu_name
from metasched.schedulers.proxy import glance
from metasched.training.trainer import Trainer


def trained_task_ms(trainer: Trainer, episodes: list, batch: int) -> float:
    """Milliseconds per task of forward (with the meta-graph) and backward, ``batch`` at a
    time as the meta-update runs them."""
    learner, params = trainer.parts.learner, trainer.parts.learner.parameters()
    start = time.perf_counter()
    for i in range(0, len(episodes), batch):
        graphs = learner.outcomes(params, episodes[i : i + batch]).graphs
        assert graphs is not None
        torch.stack(graphs).mean().backward()
    return (time.perf_counter() - start) / len(episodes) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--pool", type=int, default=10, help="candidates scored in one call")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config, [*args.set, "train.iterations=1"])
    trainer = Trainer.create(config, Path(tempfile.mkdtemp()) / "run")
    learner, params = trainer.parts.learner, trainer.parts.learner.parameters()
    rng = np.random.default_rng(0)
    episodes = [trainer.parts.samplers["train"].sample(rng) for _ in range(args.candidates)]
    noisy = np.array([e.noisy for e in episodes])
    print(f"{cpu_name()}; {args.config} {' '.join(args.set)}; {len(episodes)} candidates,")
    print(f"{noisy.mean():.0%} noisy; query examples per task {len(episodes[0].query_y)}")
    batch = config.train.meta_batch_size
    before = trained_task_ms(trainer, episodes[:40], batch)
    print("| query examples | batching | AUC noisy vs clean | ms per candidate |")
    print("|---|---|---|---|")
    for queries in (None, 25, 10, 5):
        glances = episodes if queries is None else [glance(e, queries, rng) for e in episodes]
        for batching in ("loop", "grouped"):
            start = time.perf_counter()
            losses = torch.cat(
                [
                    learner.evaluate(
                        params, glances[i : i + args.pool], learner.train_adaptation, False,
                        batching,
                    ).losses
                    for i in range(0, len(glances), args.pool)
                ]
            ).numpy()  # fmt: skip
            ms = (time.perf_counter() - start) / len(glances) * 1e3
            auc = roc_auc_score(noisy, losses)
            print(f"| {queries or 'all'} | {batching} | {auc:.3f} | {ms:.1f} |")
    after = trained_task_ms(trainer, episodes[:40], batch)
    print(f"a trained task (meta-graph and backward, {batch} a batch): {before:.1f} ms before,")
    print(f"{after:.1f} ms after")


if __name__ == "__main__":
    main()
