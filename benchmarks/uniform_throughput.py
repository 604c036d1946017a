"""Uniform-sampling trainer throughput against a raw Conv4 forward+backward, in one process.

The raw baseline is what a plain supervised loop would do with the same images: for each task
of the meta-batch, one forward and backward pass over its support and query images together,
then an Adam step, on tensors already in memory. The trainer's iteration adds everything
meta-learning needs: sampling the episodes from the uint8 pool, separate support and query
passes (per-set batch norm), the inner loop and the second-order meta-gradient. Timings
alternate between the two in rounds, and the medians are compared.

    python benchmarks/uniform_throughput.py [--rounds 7] [--steps 10] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from metasched.config import load_config
from metasched.models import Conv4
from metasched.training.trainer import Trainer


def seconds_per_call(function: Callable[[], object], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        function()
    return (time.perf_counter() - start) / steps


def raw_step_function(config, images_per_task: int) -> Callable[[], None]:
    """One Adam step of plain Conv4 training over ``meta_batch_size`` task-sized batches."""
    channels, size = config.data.channels, config.data.image_size
    model = Conv4(config.task.n_way, channels, config.model.filters, size)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.train.meta_lr)
    batch = config.train.meta_batch_size
    images = torch.rand(batch, images_per_task, channels, size, size)
    labels = torch.randint(0, config.task.n_way, (batch, images_per_task))

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        for x, y in zip(images, labels):
            (F.cross_entropy(model(x), y) / batch).backward()
        optimiser.step()

    return step


def measure(preset: str, overrides: list[str], rounds: int, steps: int) -> dict[str, float]:
    config = load_config(preset, [*overrides, "train.device=cpu"])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer.create(config, Path(run_dir))
        task = config.task
        images_per_task = task.n_way * (task.k_shot + task.q_query)
        raw = raw_step_function(config, images_per_task)
        seconds_per_call(trainer.train_step, 3)  # warm-up
        seconds_per_call(raw, 3)
        ours, base = [], []
        for _ in range(rounds):
            ours.append(seconds_per_call(trainer.train_step, steps))
            base.append(seconds_per_call(raw, steps))
    images = config.train.meta_batch_size * images_per_task
    trainer_s, raw_s = statistics.median(ours), statistics.median(base)
    return {
        "images": images,
        "trainer_s": trainer_s,
        "raw_s": raw_s,
        "trainer_ips": images / trainer_s,
        "raw_ips": images / raw_s,
        "overhead": trainer_s / raw_s - 1,
    }


CASES = {
    "ANIL 5w1s, glyphs 28x28, Conv4-64, B=4": ("glyphs-5w1s", []),
    "ANIL 5w5s, glyphs 28x28, Conv4-64, B=4": ("glyphs-5w5s", []),
    "first-order MAML 5w1s, glyphs 28x28, Conv4-64, B=4": (
        "glyphs-5w1s",
        ["learner.algorithm=maml", "learner.first_order=true"],
    ),
    "MAML (2nd order) 5w1s, glyphs 28x28, Conv4-64, B=4": (
        "glyphs-5w1s",
        ["learner.algorithm=maml"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print()
    print(
        "| configuration | images/iter | trainer s/iter | trainer img/s"
        " | raw fwd+bwd s | raw img/s | trainer / raw time |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (preset, overrides) in CASES.items():
        r = measure(preset, overrides, args.rounds, args.steps)
        print(
            f"| {name} | {r['images']} | {r['trainer_s']:.3f} | {r['trainer_ips']:.0f} |"
            f" {r['raw_s']:.3f} | {r['raw_ips']:.0f} | {r['trainer_s'] / r['raw_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
