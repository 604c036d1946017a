"""How much a method's measured cost moves from one calibration to the next, alternating
iteration by iteration (what ``metasched.training.cost.calibrate`` does) or in bursts of 20
iterations of each (what it did before): run it beside other work to see which survives load.

    python benchmarks/calibration_spread.py --config glyphs-noisy --repeats 2 \\
        --set train.init_from=experiments/warm-starts/glyphs-pretrain-1shot.pt \\
        --set scheduler.name=greedy --set scheduler.pool_size=4
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from metasched.compare import uniform_reference
from metasched.config import load_config
from metasched.cpu import cpu_name
from metasched.training import cost
from metasched.training.trainer import Trainer


def bursts(method: Trainer, reference: Trainer, iterations: int, rounds: int) -> float:
    """The median over ``rounds`` of (mean time of ``iterations`` method iterations) / (mean
    time of the ``iterations`` uniform iterations after them)."""
    ratios = []
    for _ in range(rounds):
        mine = [cost._timed(method)[1] for _ in range(iterations)]
        base = [cost._timed(reference)[1] for _ in range(iterations)]
        ratios.append(float(np.mean(mine) / np.mean(base)))
    return float(np.median(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config, args.set)
    uniform = uniform_reference(args.config, args.set, 0)
    print(f"{cpu_name()}, 1 thread, 8 blocks of 20")
    for repeat in range(args.repeats):
        alternating = cost.calibrate({"method": config}, uniform, say=lambda _: None)["method"]
        with tempfile.TemporaryDirectory() as work:
            method = Trainer.create(cost._endless(config), Path(work) / "method")
            reference = Trainer.create(cost._endless(uniform), Path(work) / "uniform")
            for _ in range(2):
                cost._timed(method), cost._timed(reference)
            burst = bursts(method, reference, 20, 8)
        print(f"repeat {repeat}: alternating {alternating.step:.3f}, bursts {burst:.3f}")


if __name__ == "__main__":
    main()
