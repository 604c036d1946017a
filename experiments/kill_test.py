"""Kills a training run again and again, resumes it each time, and checks that it ends exactly
as an uninterrupted run does.

Each kill is one of (``--modes``, taken in a random order, each once per round):

* ``kill``: SIGKILL at a random iteration (no chance to save anything);
* ``write``: SIGKILL in the middle of a checkpoint write (the child dies with half a
  temporary file on disk, at a random one of its checkpoint writes);
* ``term``, ``int``: SIGTERM or SIGINT at a random iteration (the run saves and stops).

After every kill the run is resumed with ``metasched train --resume``; after ``--kills`` kills
it runs to the end. Every metrics record (training, validation, test; wall times aside) and
the final model must equal those of the same run made without interruption. Exit status 0
when they do, 1 when they do not.

    python experiments/kill_test.py --kills 20 --iterations 200            # the long check
    python experiments/kill_test.py --kills 3 --iterations 30 --modes kill,write   # the test's
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from metasched.training.metrics import without_wall_clock

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}


def tiny_settings(iterations: int, scheduler: str) -> list[str]:
    """A glyph run of ``iterations`` meta-updates that takes seconds, checkpointing often."""
    values = {
        "model.filters": 8,
        "train.iterations": iterations,
        "train.meta_batch_size": 2,
        "train.val_every": 5,
        "train.val_tasks": 4,
        "train.test_tasks": 4,
        "train.checkpoint_every": 3,
        "train.device": "cpu",
        "scheduler.name": scheduler,
        "scheduler.pool_size": 4,
        "task.noise_ratio": 0.5,
        "task.q_query": 5,
        "learner.inner_steps": 2,
        "learner.eval_inner_steps": 2,
    }
    if scheduler == "ats":
        values["scheduler.ats.warmup"] = 3
    return [item for k, v in values.items() for item in ("--set", f"{k}={v}")]


def _command(*argv: str) -> list[str]:
    return [sys.executable, __file__, "--child", *argv]


def _trained(run_dir: Path) -> int:
    """Training records written so far."""
    try:
        return (run_dir / "metrics.jsonl").read_text().count('"kind": "train"')
    except OSError:
        return 0


def _has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / "last.pt").exists() or any(run_dir.glob("last.pt.[0-9]*"))


def records(run_dir: Path) -> list[dict]:
    """The run's metrics records, wall times left out."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [without_wall_clock(json.loads(x)) for x in lines if x]


def interrupted_run(
    run_dir: Path, settings: list[str], kills: int, modes: list[str], seed: int
) -> list[str]:
    """Trains in ``run_dir``, killing the child ``kills`` times; returns what was done."""
    rng = np.random.default_rng(seed)
    start = ["train", "--config", "glyphs-5w1s", "--quiet", "--run-dir", str(run_dir), *settings]
    log: list[str] = []
    resume = ["train", "--resume", str(run_dir), "--quiet"]
    order = [str(m) for m in rng.permutation(modes)]  # each mode once per len(modes) kills
    for number in range(kills):
        argv = resume if _has_checkpoint(run_dir) else start  # killed before the first: anew
        mode = order[number % len(order)]
        if mode == "write":
            nth = int(rng.integers(1, 4))
            result = subprocess.run(
                _command("--die-in-write", str(nth), *argv), capture_output=True, text=True
            )
            log.append(f"write#{nth}:rc={result.returncode}")
            continue
        done = _trained(run_dir)
        target = done + int(rng.integers(1, 8))
        child = subprocess.Popen(_command(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while child.poll() is None and _trained(run_dir) < target:
            time.sleep(0.01)
        if child.poll() is None:
            child.send_signal(SIGNALS[mode])
        code = child.wait()
        log.append(f"{mode}@{_trained(run_dir)}:rc={code}")
        if code == 0:
            return log  # it finished before the kill landed
    argv = resume if _has_checkpoint(run_dir) else start
    result = subprocess.run(_command(*argv), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the last resume failed:\n{result.stderr}")
    return log


def same_model(a: Path, b: Path) -> bool:
    import torch

    from metasched.training.checkpoint import load_checkpoint

    x, y = load_checkpoint(a / "last.pt")["model"], load_checkpoint(b / "last.pt")["model"]
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def child(argv: list[str]) -> int:
    """Runs the CLI; with ``--die-in-write N``, SIGKILLs itself half-way through the N-th
    checkpoint write, leaving half a temporary file behind."""
    from metasched.cli import main
    from metasched.training import checkpoint

    if argv[:1] == ["--die-in-write"]:
        nth, argv = int(argv[1]), argv[2:]
        calls = [0]
        write = checkpoint.atomic_write

        def dying_write(path: Path, content: bytes | str) -> None:
            calls[0] += 1
            if calls[0] == nth:
                from metasched.files import temporary_path

                data = content if isinstance(content, bytes) else content.encode()
                temporary_path(path).write_bytes(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            write(path, content)

        checkpoint.atomic_write = dying_write  # type: ignore[assignment]
    return main(argv)


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--modes", default="kill,write,term,int")
    parser.add_argument("--scheduler", default="ats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/kill-test")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty; give a new directory")
    settings = tiny_settings(args.iterations, args.scheduler)
    reference = out / "uninterrupted"
    subprocess.run(
        _command("train", "--config", "glyphs-5w1s", "--quiet", "--run-dir", str(reference))
        + settings,
        check=True,
        capture_output=True,
    )
    victim = out / "interrupted"
    log = interrupted_run(victim, settings, args.kills, args.modes.split(","), args.seed)
    same = records(victim) == records(reference) and same_model(victim, reference)
    leftovers = sorted(p.name for p in victim.iterdir() if ".tmp" in p.name)
    print(f"{len(log)} kills: {' '.join(log)}")
    print(f"records {len(records(reference))}: {'identical' if same else 'DIFFERENT'}")
    print(f"temporary files left: {len(leftovers)}")
    return 0 if same and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
