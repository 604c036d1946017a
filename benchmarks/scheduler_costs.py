"""Every scheduler's cost per meta-update, in uniform-sampling iterations, measured in one process.

The same measurement ``metasched compare --budget`` makes before an equal-compute study
(``metasched.training.cost.calibrate``: the method's iterations alternating with uniform
sampling's on the same data and model, the median over blocks of their ratio of times), for
every method of the equal-compute study on a preset, from its warm start.
Prints a markdown table with the CPU's name; run it with nothing else on the machine.

    python benchmarks/scheduler_costs.py --config glyphs-noisy \\
        --set train.init_from=experiments/warm-starts/glyphs-pretrain-1shot.pt
    python benchmarks/scheduler_costs.py --config fsmol-gp --methods greedy,agreement,ats \\
        --set data.root=../shared/data/fsmol/fsmol_train_valid.csv.gz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from metasched.compare import uniform_reference
from metasched.compare.methods import build_jobs
from metasched.cpu import cpu_name
from metasched.training.cost import calibrate

METHODS = "oracle,greedy,greedy-p4,agreement,ats,ats-lite,buffer-p3,amortised,gated-p4,proxy-p6"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="preset or YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--methods", default=METHODS, help="comma-separated compare methods")
    parser.add_argument("--rounds", type=int, default=8, help="timed blocks per method")
    parser.add_argument("--iterations", type=int, default=20, help="iteration pairs per block")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # the configs compare --budget calibrates: its jobs (first seed) and its uniform reference
    jobs = build_jobs(args.config, args.methods.split(","), [0], Path("unused"), args.set)
    methods = {job.method: job.config for job in jobs}
    uniform = uniform_reference(args.config, args.set, 0)
    costs = calibrate(methods, uniform, args.iterations, args.rounds, say=lambda _: None)
    print(
        f"{args.config}, {cpu_name()}, {args.threads} thread(s), {args.rounds} blocks of"
        f" {args.iterations} iteration pairs"
    )
    print("\n| method | per meta-update | per warm-up iteration (count) |\n|---|---|---|")
    for name, cost in costs.items():
        warmup = f"{cost.warmup:.2f} ({cost.warmup_iterations})" if cost.warmup_iterations else "–"
        print(f"| {name} | {cost.step:.2f} | {warmup} |")


if __name__ == "__main__":
    main()
