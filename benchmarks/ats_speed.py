"""Speed of an ATS iteration against uniform sampling, raw Conv4 passes and the reference code.

For each configuration, in one process and interleaved in rounds (medians reported):

* ``uniform``: one trainer iteration with uniform sampling (meta-batch B);
* ``ats``: one trainer iteration of ATS (pool P, meta-batch B), plus its ``lite``, ``bf16`` and
  ``lite+bf16`` variants (cheaper pool statistics; see docs/benchmarks.md for their accuracy);
* ``reference``: the reference code's structure on the same tasks (benchmarks/reference_ats.py),
  with the reference's NCHW memory layout and with ours (channels-last on CPUs);
* ``pool``: the pool statistics alone, and ``raw``: one batched forward and backward pass of
  the bare network over the same P tasks' images (the hardware's pace for that work), each
  in a fresh subprocess of its own.

Peak RSS is measured per method in a fresh subprocess. The Markdown table goes to stdout.

    python benchmarks/ats_speed.py                     # CPU, all configurations
    python benchmarks/ats_speed.py --device cuda       # on a GPU (grouped task batching)
    python benchmarks/ats_speed.py --configs glyphs --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference_ats import ReferenceStructure

from metasched.config import load_config
from metasched.cpu import cpu_name, native_bf16
from metasched.data.pool import ClassPool
from metasched.learners import ANIL, Adaptation, Regression
from metasched.models import Conv4, FingerprintMLP
from metasched.models.layout import keep_nchw
from metasched.schedulers import ATSScheduler
from metasched.schedulers.base import SchedulerSetup
from metasched.tasks import Episode, FewShotSampler, TaskSource
from metasched.training.components import (
    Components,
    build_learner,
    build_scheduler,
    resolve_device,
)
from metasched.training.trainer import Trainer

POOL, BATCH = 10, 2
CONFIGS = {
    "glyphs": "glyphs 28x28, Conv4-64",
    "mini84": "84x84x3, Conv4-32 (synthetic images)",
    "drug": "fingerprint MLP 1024-500-500-1 (synthetic tasks)",
}
VARIANTS = {
    "uniform": ["scheduler.name=uniform"],
    "ats": [],
    "ats-lite": ["scheduler.gradient_layers=last"],
    "ats-bf16": ["scheduler.pool_precision=bf16"],
    "ats-lite-bf16": ["scheduler.gradient_layers=last", "scheduler.pool_precision=bf16"],
}


class RegressionTasks:
    """Random fingerprint regression tasks shaped like ChEMBL assays (50 + 100 compounds)."""

    def sample(self, rng: np.random.Generator, index: int | None = None) -> Episode:
        x = torch.from_numpy((rng.random((150, 1024)) < 0.05).astype(np.float32))
        y = torch.from_numpy(rng.normal(6.0, 1.0, 150).astype(np.float32))
        return Episode(x[:50], y[:50], x[50:], y[50:])


def image_samplers(size: int) -> dict[str, FewShotSampler]:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (20, 3, size, size), dtype=np.uint8) for _ in range(32)]
    pool = ClassPool.from_class_arrays(arrays, [str(i) for i in range(32)], ["-"] * 32)
    sampler = FewShotSampler(pool, 5, 1, 15)
    return {"train": sampler, "val": sampler, "test": sampler, "reward": sampler}


def make_trainer(
    config_name: str,
    algorithm: str,
    variant: str,
    device: str,
    run_dir: Path,
    batching: str = "auto",
) -> Trainer:
    overrides = [
        *VARIANTS[variant],
        f"learner.batching={batching}",
        f"learner.algorithm={algorithm}",
        f"train.device={device}",
        f"train.meta_batch_size={BATCH}",
        f"scheduler.pool_size={POOL if variant != 'uniform' else BATCH}",
        "scheduler.ats.warmup=0",
    ]
    if config_name == "glyphs":
        return Trainer(load_config("glyphs-noisy-ats", overrides), run_dir)
    config = load_config(
        "glyphs-noisy-ats",
        [*overrides, "model.filters=32", "data.image_size=84", "data.channels=3"],
    )
    torch.manual_seed(0)
    target = resolve_device(device)
    samplers: dict[str, TaskSource]
    if config_name == "mini84":
        samplers = dict(image_samplers(84))
        model = Conv4(config.task.n_way, 3, config.model.filters, 84).to(target)
        learner = build_learner(config, model, target)
    else:  # raw pIC50 targets give MSEs near 30: the look-ahead step must be small
        config = load_config("glyphs-noisy-ats", [*overrides, "scheduler.ats.lookahead_lr=0.01"])
        samplers = dict.fromkeys(("train", "val", "test", "reward"), RegressionTasks())
        model = FingerprintMLP(1024).to(target)
        learner = ANIL(
            model,
            Regression(),
            Adaptation(0.01, 5),
            Adaptation(0.01, 5),
            scored="last" if "lite" in variant else "all",
            batching=batching
            if batching != "auto"
            else "grouped"
            if target.type == "cuda"
            else "loop",
        )
    setup = SchedulerSetup(
        num_layers=len(learner.scored_layers()),
        n_way=config.task.n_way,
        batch_size=config.train.meta_batch_size,
        iterations=config.train.iterations,
        seed=config.seed,
    )
    scheduler = build_scheduler(config, setup)
    return Trainer(config, run_dir, Components(samplers, model, learner, scheduler, target))


def timed(function: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


class PhaseClock:
    """Sums the seconds spent in wrapped methods while ``on``, per phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.on = False

    def wrap(self, owner: object, method: str, phase: str) -> None:
        """Replaces ``owner.method`` by a timed call of it."""
        original: Callable[..., object] = getattr(owner, method)

        def timed(*args: object, **kwargs: object) -> object:
            if not self.on:
                return original(*args, **kwargs)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start

        setattr(owner, method, timed)


def sample_tasks(trainer: Trainer) -> tuple[list[Episode], list[Episode], np.random.Generator]:
    """P candidates and B validation tasks for the methods that take tasks directly."""
    rng = np.random.default_rng(1)
    samplers, device = trainer.parts.samplers, trainer.parts.device
    pool = [samplers["train"].sample(rng).to(device) for _ in range(POOL)]
    validation = [samplers["reward"].sample(rng).to(device) for _ in range(BATCH)]
    return pool, validation, rng


def interleaved(
    methods: Mapping[str, Callable[[], object]],
    device: torch.device,
    rounds: int,
    steps: int,
    after_warmup: Callable[[], None] = lambda: None,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per method, the median of ``steps`` calls in each round, and its peak GPU memory."""
    gpu_peaks = {}
    for name, method in methods.items():  # warm-up, and each method's peak GPU memory
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        method()
        if device.type == "cuda":
            gpu_peaks[name] = torch.cuda.max_memory_allocated() / 2**30
    after_warmup()
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, method in methods.items():
            samples[name].append(statistics.median(timed(method, device) for _ in range(steps)))
    return samples, gpu_peaks


def measure(
    config_name: str, algorithm: str, device: str, rounds: int, steps: int, batching: str
) -> dict[str, float]:
    """Median seconds per iteration of every trainer variant and of the reference structure."""
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            v: make_trainer(config_name, algorithm, v, device, Path(tmp) / v, batching)
            for v in VARIANTS
            if not (v.endswith("bf16") and device == "cuda")
        }
        ats = trainers["ats"]
        methods: dict[str, Callable[[], object]] = {
            name: t.train_step for name, t in trainers.items()
        }
        if algorithm == "anil" and config_name != "drug":
            pool, validation, rng = sample_tasks(ats)
            layers = len(ats.parts.learner.scored_layers())
            reference = ReferenceStructure(ats.parts.model, 0.01, 5, layers)
            methods["reference"] = lambda: reference.iteration(pool, validation, rng)

            def reference_nchw() -> None:  # the reference's own memory layout
                with keep_nchw():
                    reference.iteration(pool, validation, rng)

            methods["reference-nchw"] = reference_nchw
        clock = PhaseClock()  # the scheduler's and the whole iteration's seconds
        scheduler = ats.scheduler
        assert isinstance(scheduler, ATSScheduler)
        for name in ("propose", "update", "select"):
            clock.wrap(scheduler, name, "scheduler")
        clock.wrap(ats, "train_step", "ats")
        methods["ats"] = ats.train_step

        def start_clock() -> None:
            clock.on = True

        samples, gpu_peaks = interleaved(methods, ats.parts.device, rounds, steps, start_clock)
        result = {name: statistics.median(values) for name, values in samples.items()}
        result["scheduler_share"] = clock.seconds["scheduler"] / clock.seconds["ats"]
        result.update({f"gpu_gib_{name}": gib for name, gib in gpu_peaks.items()})
        return result


def pool_child(
    config_name: str, algorithm: str, method: str, device: str, rounds: int, steps: int
) -> None:
    """Prints the best time of the pool statistics or of the raw batched pass as JSON.

    Each in a fresh process of its own, best of ``rounds * steps`` calls after a warm-up: the
    raw pass's single batch of P tasks' images needs far larger blocks than anything else,
    and glibc grows the heap (page faults) for some of its calls but not others (1.2 s or
    2-3 s at 84x84), which no median over a few calls hides.
    """
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(config_name, algorithm, "ats", device, Path(tmp))
    model, learner = trainer.parts.model, trainer.parts.learner
    pool, _, _ = sample_tasks(trainer)
    images = torch.cat([torch.cat([e.support_x, e.query_x]) for e in pool])
    targets = torch.cat([torch.cat([e.support_y, e.query_y]) for e in pool])
    loss_of = learner.objective.loss

    def raw() -> None:
        loss = loss_of(model(images), targets)
        torch.autograd.grad(loss, list(model.parameters()))

    def pool_stats() -> None:
        learner.measure_pool(learner.parameters(), pool, keep_graph=True)

    function = {"raw": raw, "pool": pool_stats}[method]
    function()
    best = min(timed(function, trainer.parts.device) for _ in range(rounds * steps))
    print(json.dumps({"seconds": best, "images": len(images)}))


def child_json(arguments: list[str]) -> dict[str, float]:
    """Runs this script with ``arguments`` in a fresh process; its last line, parsed."""
    command = [sys.executable, __file__, *arguments]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def peak_rss(config_name: str, algorithm: str, variant: str, device: str) -> float:
    """Peak resident memory (GiB) of a fresh process running 5 iterations of one method."""
    arguments = ["--rss-of", config_name, algorithm, variant, "--device", device]
    return child_json(arguments)["gib"]


def rss_child(config_name: str, algorithm: str, variant: str, device: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(
            config_name, algorithm, variant.replace("reference", "ats"), device, Path(tmp)
        )
        step: Callable[[], object] = trainer.train_step
        if variant == "reference":
            parts, rng = trainer.parts, np.random.default_rng(1)
            reference = ReferenceStructure(parts.model, 0.01, 5, len(parts.learner.scored_layers()))

            def step() -> None:
                pool = [parts.samplers["train"].sample(rng).to(parts.device) for _ in range(POOL)]
                validation = [
                    parts.samplers["reward"].sample(rng).to(parts.device) for _ in range(BATCH)
                ]
                reference.iteration(pool, validation, rng)

        for _ in range(5):
            step()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
    status = Path("/proc/self/status").read_text()
    peak_kib = next(
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
    )
    print(json.dumps({"gib": peak_kib / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--algorithms", nargs="+", default=["anil", "maml"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--batching", default="auto", choices=["auto", "loop", "grouped"])
    parser.add_argument("--rss-of", nargs=3, metavar=("CONFIG", "ALGORITHM", "VARIANT"))
    parser.add_argument("--time-of", nargs=3, metavar=("CONFIG", "ALGORITHM", "pool|raw"))
    args = parser.parse_args()
    if args.rss_of:
        config_name, algorithm, variant = args.rss_of
        rss_child(config_name, algorithm, variant, args.device)
        return
    if args.time_of:
        config_name, algorithm, method = args.time_of
        pool_child(config_name, algorithm, method, args.device, args.rounds, args.steps)
        return
    bf16 = {True: "with", False: "without", None: "unknown"}[native_bf16()]
    name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{cpu_name()} ({bf16} bfloat16 instructions)"
    )
    print(
        f"torch {torch.__version__}, {name}, {torch.get_num_threads()} threads,"
        f" P={POOL}, B={BATCH}, task batching {args.batching}"
    )
    print()
    header = [
        "configuration",
        "learner",
        "uniform s/it",
        "ATS s/it",
        "ATS ÷ uniform",
        "lite ÷ uniform",
        "bf16 ÷ uniform",
        "lite+bf16 ÷ uniform",
        "reference s/it, NCHW / our layout",
        "reference ÷ ATS, NCHW / our layout",
        "pool stats img/s",
        "pool ÷ raw fwd+bwd time",
        "scheduler share",
        "peak RSS uniform / ATS / reference",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for config_name in args.configs:
        for algorithm in args.algorithms:
            if config_name == "drug" and algorithm == "maml":
                continue
            r = measure(config_name, algorithm, args.device, args.rounds, args.steps, args.batching)
            options = ["--device", args.device, "--rounds", str(args.rounds), "--steps"]
            pool, raw = (
                child_json(["--time-of", config_name, algorithm, m, *options, str(args.steps)])
                for m in ("pool", "raw")
            )
            reference = r.get("reference")
            variants = ["uniform", "ats"] + (["reference"] if reference else [])
            if args.device == "cuda":
                rss = " / ".join(f"{r[f'gpu_gib_{v}']:.2f}" for v in variants) + " GiB (GPU)"
            elif args.no_rss:
                rss = "n/a"
            else:
                peaks = [peak_rss(config_name, algorithm, v, args.device) for v in variants]
                rss = " / ".join(f"{gib:.2f}" for gib in peaks) + " GiB"
            cells = [
                CONFIGS[config_name],
                algorithm,
                f"{r['uniform']:.3f}",
                f"{r['ats']:.3f}",
                f"{r['ats'] / r['uniform']:.2f}",
                f"{r['ats-lite'] / r['uniform']:.2f}",
                f"{r['ats-bf16'] / r['uniform']:.2f}" if "ats-bf16" in r else "n/a",
                f"{r['ats-lite-bf16'] / r['uniform']:.2f}" if "ats-lite-bf16" in r else "n/a",
                f"{r['reference-nchw']:.3f} / {reference:.3f}" if reference else "n/a",
                f"{r['reference-nchw'] / r['ats']:.1f} / {reference / r['ats']:.1f}"
                if reference
                else "n/a",
                f"{pool['images'] / pool['seconds']:.0f}",
                f"{pool['seconds'] / raw['seconds']:.2f}",
                f"{100 * r['scheduler_share']:.1f}%",
                rss,
            ]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
