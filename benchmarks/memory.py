"""Resident memory of real training runs on a miniImageNet-shaped data set, with the reference
code's way of loading beside them.

Each variant is one ``metasched train --config paper/noisy-1shot-0.6`` process on a
full-shape generated data set (64/16/20 classes x 600 random 84x84 RGB images, written by
``metasched data generate`` and converted once). The parent samples the child's resident
memory (``VmRSS``) every second, with the iteration it had reached, and reads its peak
(``VmHWM``) at the end; seconds per iteration are the median over the run's training records.
The scheduler warm-up is cut (``--warmup``, 100) so that both phases show in a short run, and
validation and test use 50 and 100 tasks (their memory is small beside training's).

Variants (``--variants``):

* ``uniform``, ``ats``: the defaults (at 84x84 ATS keeps no pool graphs: ten would take
  2 GiB, over ``scheduler.graph_memory_gb``; the chosen tasks are recomputed);
* ``ats-kept-graphs``: ``scheduler.graph_memory_gb=null`` (every pool graph kept, as before);
* ``ats-low-memory``: ``train.retain_memory=false`` (glibc's own allocator thresholds);
* ``uniform-float32``, ``ats-float32``: the defaults, with the train and validation splits also
  held in memory as float32 (classes, 600, 3, 84, 84), as the reference's loader holds them.

    python benchmarks/memory.py --iterations 2000 --variants uniform ats   # flat over a long run?
    python benchmarks/memory.py --iterations 40 --warmup 10                # every variant
    python benchmarks/memory.py --plot OUT.png A.csv B.csv C.csv:ats-float32  # runs in one figure

``--plot`` draws the curves of several CSVs in one figure; ``FILE.csv:VARIANT`` draws that
variant's peak as a dashed level instead (e.g. the float32 loading of a short run beside the
curves of long ones).

Writes ``memory.csv`` (the curves) and ``memory.png`` to ``--out`` and a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VARIANTS: dict[str, list[str]] = {
    "uniform": ["scheduler.name=uniform"],
    "ats": ["scheduler.name=ats"],
    "ats-kept-graphs": ["scheduler.name=ats", "scheduler.graph_memory_gb=null"],
    "ats-low-memory": ["scheduler.name=ats", "train.retain_memory=false"],
    "uniform-float32": ["scheduler.name=uniform"],
    "ats-float32": ["scheduler.name=ats"],
}
GIB = 2**30


def prepare_data(folder: Path) -> Path:
    """The full-shape data set, generated and converted once (about 2.5 GB of disk)."""
    converted = folder / "converted"
    if not converted.exists():
        source = folder / "pickles"
        if not source.exists():
            _metasched("data", "generate", "--layout", "pickles", "--out", str(source))
        _metasched(
            "data", "convert", "miniimagenet", "--root", str(source), "--out", str(converted),
            "--image-size", "84", "--channels", "3", "--trust-pickles",
        )  # fmt: skip
    return converted


def _metasched(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "metasched.cli", *argv], check=True)


def child_with_float32_splits(argv: list[str]) -> int:
    """Runs ``metasched train argv`` after loading the train and val splits as float32, as the
    reference code's loader does (they stay referenced for the whole run)."""
    from metasched.cli import main
    from metasched.config import load_config
    from metasched.data.registry import load_dataset

    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    splits = load_dataset(load_config("paper/noisy-1shot-0.6", overrides).data)
    held = []
    for name in ("train", "val"):
        images = splits[name].images.astype(np.float32)
        images /= 255.0
        held.append(images)
    print(f"holding {sum(h.nbytes for h in held) / GIB:.2f} GiB of float32 images", flush=True)
    code = main(argv)
    del held
    return code


def _status(pid: int) -> dict[str, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    values = {}
    for key in ("VmRSS", "VmHWM"):
        found = re.search(rf"{key}:\s+(\d+)", text)
        values[key] = int(found.group(1)) * 1024 if found else 0
    return values


@dataclass
class Measured:
    """One variant's run: (seconds, iterations done, RSS bytes) samples, peak RSS, s/it."""

    variant: str
    curve: list[tuple[float, int, int]]
    peak: int
    seconds: float
    iterations: int

    def rss_at(self, fraction: float) -> float:
        """RSS in GiB at that fraction of the run's samples."""
        return self.curve[min(int(fraction * len(self.curve)), len(self.curve) - 1)][2] / GIB


def run_variant(name: str, data: Path, iterations: int, warmup: int, run_dir: Path) -> Measured:
    """One training process; its memory curve, peak and seconds per iteration."""
    argv = ["train", "--config", "paper/noisy-1shot-0.6", "--quiet", "--run-dir", str(run_dir)]
    settings = [
        f"data.root={data}",
        f"train.iterations={iterations}",
        f"scheduler.ats.warmup={warmup}",
        f"train.val_every={max(iterations // 4, 1)}",
        f"train.checkpoint_every={max(iterations // 4, 1)}",
        "train.val_tasks=50",
        "train.test_tasks=100",
        *VARIANTS[name],
    ]
    argv += [item for s in settings for item in ("--set", s)]
    command = [sys.executable, __file__, "--child-float32", *argv]
    if not name.endswith("float32"):
        command = [sys.executable, "-m", "metasched.cli", *argv]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    curve: list[tuple[float, int, int]] = []
    peak, start = 0, time.perf_counter()
    while process.poll() is None:
        try:
            status = _status(process.pid)
        except (FileNotFoundError, AttributeError):
            break
        peak = max(peak, status["VmHWM"])
        done = metrics.read_text().count('"kind": "train"') if metrics.exists() else 0
        curve.append((time.perf_counter() - start, done, status["VmRSS"]))
        time.sleep(1.0)
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{output}")
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    seconds = [r["seconds"] for r in records if r["kind"] == "train" and r.get("phase") != "warmup"]
    return Measured(name, curve, peak, statistics.median(seconds), len(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=100, help="ATS warm-up iterations")
    parser.add_argument("--data", default=os.path.expanduser("~/metasched-bench/miniimagenet"))
    parser.add_argument("--out", default="docs/figures/memory")
    args = parser.parse_args()
    data = prepare_data(Path(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.variants:
        run_dir = Path(args.data).parent / "runs" / f"{name}-{args.iterations}"
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        results.append(run_variant(name, data, args.iterations, args.warmup, run_dir))
        print(f"{name}: peak {results[-1].peak / GIB:.2f} GiB", file=sys.stderr, flush=True)
        # Written after every variant, so a long sweep stopped part-way keeps what it measured.
        _write(results, out / f"memory-{args.iterations}")
    print("| variant | peak RSS | RSS at 10% / 50% / end of the run | s/it (median) | iterations |")
    print("|---|---|---|---|---|")
    for r in results:
        at = " / ".join(f"{r.rss_at(f):.2f}" for f in (0.1, 0.5, 1.0))
        print(
            f"| {r.variant} | {r.peak / GIB:.2f} GiB | {at} GiB | {r.seconds:.3f} |"
            f" {r.iterations} |"
        )


def _write(results: list[Measured], stem: Path) -> None:
    """The curves as CSV and a plot."""
    with open(f"{stem}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "seconds", "iteration", "rss_bytes"])
        for result in results:
            for seconds, done, rss in result.curve:
                writer.writerow([result.variant, f"{seconds:.1f}", done, rss])
    _plot(results, Path(f"{stem}.png"))


def _plot(results: list[Measured], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for r in results:
        axis.plot([c[1] for c in r.curve], [c[2] / GIB for c in r.curve], label=r.variant)
    axis.set_xlabel("training iteration (warm-up included)")
    axis.set_ylabel("resident memory (GiB)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_csvs(path: Path, sources: list[str]) -> None:
    """One figure of the curves in ``sources`` (CSVs written by :func:`_write`); a source
    ``FILE.csv:VARIANT`` is drawn as a dashed level at that variant's peak instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for source in sources:
        file, _, only = source.partition(":")
        curves: dict[str, list[tuple[int, int]]] = {}
        with open(file, newline="") as handle:
            for row in csv.DictReader(handle):
                if not only or row["variant"] == only:
                    curve = curves.setdefault(row["variant"], [])
                    curve.append((int(row["iteration"]), int(row["rss_bytes"])))
        for variant, curve in curves.items():
            run = max(i for i, _ in curve)
            if only:  # a level: the peak of a (short) run
                peak = max(r for _, r in curve) / GIB
                label = f"{variant}: peak {peak:.2f} GiB ({run}-iteration run)"
                axis.axhline(peak, linestyle="--", color=f"C{len(axis.lines)}", label=label)
            else:
                label = f"{variant} ({run} iterations)"
                axis.plot([i for i, _ in curve], [r / GIB for _, r in curve], label=label)
    axis.set_xlabel("training iteration (warm-up included)")
    axis.set_ylabel("resident memory (GiB)")
    axis.set_ylim(bottom=0)
    axis.legend(loc="center right", fontsize="small")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-float32":
        sys.exit(child_with_float32_splits(sys.argv[2:]))
    if len(sys.argv) > 2 and sys.argv[1] == "--plot":
        plot_csvs(Path(sys.argv[2]), sys.argv[3:])
        sys.exit(0)
    main()
