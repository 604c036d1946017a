"""Nothing lost, nothing silent: kills, signals, damaged files, full disks and diverging runs."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from metasched.cli import main
from metasched.config import load_config
from metasched.errors import Diverged, MetaschedError, TrainingInterrupted
from metasched.files import atomic_write, remove_stale_temporaries, temporary_path
from metasched.training.checkpoint import load_checkpoint
from metasched.training.metrics import read_metrics, without_wall_clock
from metasched.training.trainer import Trainer

from .conftest import crash_at, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _config(**extra: object):
    values = {"train.iterations": 12, "train.val_tasks": 4, "train.test_tasks": 4}
    values.update(extra)
    return load_config("glyphs-5w1s", tiny_overrides(**values))


def _records(run_dir: Path) -> list[dict]:
    return [without_wall_clock(r) for r in read_metrics(run_dir / "metrics.jsonl")]


@pytest.mark.slow
def test_kills_at_random_iterations_and_mid_write_resume_to_identical_records(tmp_path) -> None:
    """SIGKILL at a random iteration and half-way through a checkpoint write, then --resume:
    every record and the final model equal an uninterrupted run's (experiments/kill_test.py,
    which also runs the long version)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "kill_test.py"), "--kills", "2",
         "--iterations", "15", "--modes", "kill,write", "--seed", "3", "--scheduler", "uniform",
         "--out", str(tmp_path / "kill")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical" in result.stdout and "temporary files left: 0" in result.stdout
    kills = result.stdout.splitlines()[0]
    assert "kill@" in kills and "write#" in kills and kills.count("rc=-9") == 2, kills


def test_sigterm_saves_a_checkpoint_like_ctrl_c(tmp_path, glyphs, monkeypatch) -> None:
    config = _config(**{"train.checkpoint_every": 100})
    Trainer.create(config, tmp_path / "full").fit(progress=False)
    trainer = Trainer.create(config, tmp_path / "cut")
    step = trainer.train_step

    def terminated_step():
        record = step()
        if trainer.state.iteration == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return record

    monkeypatch.setattr(trainer, "train_step", terminated_step)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        trainer.fit(progress=False)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["iteration"] == 5
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is put back
    Trainer.resume(tmp_path / "cut").fit(progress=False)
    assert _records(tmp_path / "cut") == _records(tmp_path / "full")


def test_resume_skips_a_corrupt_checkpoint_for_an_older_copy(tmp_path, glyphs) -> None:
    # validation at the end only: no new best adds a checkpoint between the periodic ones
    extra = {"train.checkpoint_every": 3, "train.keep_checkpoints": 3, "train.val_every": 100}
    config = _config(**extra)
    Trainer.create(config, tmp_path / "full").fit(progress=False)
    run = tmp_path / "run"
    cut = Trainer.create(config, run)
    crash_at(cut, 10)
    with pytest.raises(RuntimeError):
        cut.fit(progress=False)
    iterations = [
        load_checkpoint(run / n)["iteration"] for n in ("last.pt", "last.pt.1", "last.pt.2")
    ]
    assert iterations == [9, 6, 3] and not (run / "last.pt.3").exists()
    data = bytearray((run / "last.pt").read_bytes())
    data[len(data) // 2] ^= 1  # one bit flipped in the newest
    (run / "last.pt").write_bytes(bytes(data))
    with pytest.raises(MetaschedError, match="checksum"):
        load_checkpoint(run / "last.pt")
    with pytest.warns(RuntimeWarning, match="skipped: .*last.pt' is corrupt"):
        resumed = Trainer.resume(run)
    assert resumed.resumed_from == run / "last.pt.1" and resumed.state.iteration == 6
    resumed.fit(progress=False)
    assert _records(run) == _records(tmp_path / "full")


def test_stale_temporary_files_are_removed_and_failed_writes_leave_none(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomic_write(target, "old")
    stale = tmp_path / ".last.pt.tmp999999999"  # no such process
    stale.write_bytes(b"half")
    mine = temporary_path(tmp_path / "x")
    assert remove_stale_temporaries(tmp_path) == [stale] and not mine.exists()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(MetaschedError, match=r"disk is full.*last checkpoint is intact"):
        atomic_write(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.parametrize(
    ("code", "message"),
    [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission")],
)
def test_a_failing_disk_stops_training_with_one_line(
    tmp_path, glyphs, monkeypatch, capsys, code, message
) -> None:
    def failing(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing)
    argv = ["train", "--config", "glyphs-5w1s", "--run-dir", str(tmp_path / "run"), "--quiet"]
    assert main([*argv, *[f"--set={o}" for o in tiny_overrides()]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metasched: error: cannot write") and message in err
    assert "config.yaml" in err and len(err.splitlines()) == 1
    assert not [p for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]


def test_a_torn_last_metrics_line_is_dropped_on_resume_and_in_reports(tmp_path, glyphs) -> None:
    config = _config(**{"train.iterations": 6, "train.checkpoint_every": 3})
    Trainer.create(config, tmp_path / "full").fit(progress=False)
    run = tmp_path / "run"
    cut = Trainer.create(config, run)
    step = cut.train_step

    def crash():
        if cut.state.iteration == 4:
            with open(run / "metrics.jsonl", "a") as handle:
                handle.write('{"kind": "train", "iteration": 5, "lo')  # killed mid-append
            raise RuntimeError("killed")
        return step()

    cut.train_step = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        cut.fit(progress=False)
    with pytest.warns(RuntimeWarning, match="unfinished last line"):
        assert len(read_metrics(run / "metrics.jsonl")) == 4
    with pytest.warns(RuntimeWarning, match="unfinished last line"):
        assert main(["report", str(run), "--out", str(tmp_path / "plots")]) == 0
    Trainer.resume(run).fit(progress=False)
    assert _records(run) == _records(tmp_path / "full")


def test_a_run_kept_with_compressed_records_resumes_and_reports(tmp_path, glyphs) -> None:
    """A run committed mid-way as experiments/runs keeps it (last.pt and metrics.jsonl.gz
    only) resumes to the records of an uninterrupted run; reports read compressed records."""
    import gzip

    config = _config(**{"train.iterations": 6, "train.checkpoint_every": 3})
    Trainer.create(config, tmp_path / "full").fit(progress=False)
    run = tmp_path / "run"
    cut = Trainer.create(config, run)
    crash_at(cut, 3, "the machine went away")
    with pytest.raises(RuntimeError):
        cut.fit(progress=False)
    live = run / "metrics.jsonl"
    (run / "metrics.jsonl.gz").write_bytes(gzip.compress(live.read_bytes()))
    live.unlink()
    Trainer.resume(run).fit(progress=False)
    assert _records(run) == _records(tmp_path / "full")
    live.unlink()  # now a finished run with compressed records only
    assert main(["report", str(run), "--out", str(tmp_path / "plots")]) == 0


def test_a_new_meta_lr_on_resume_reaches_the_optimiser(tmp_path, glyphs) -> None:
    Trainer.create(_config(), tmp_path / "run").fit(progress=False)
    trainer = Trainer.resume(tmp_path / "run", ["train.meta_lr=0.5", "train.iterations=14"])
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.5]
    trainer.fit(progress=False)
    assert (
        load_checkpoint(tmp_path / "run" / "last.pt")["optimizer"]["param_groups"][0]["lr"] == 0.5
    )


@pytest.mark.parametrize(
    ("setting", "culprit"),
    [("train.meta_lr=1.0e+30", "train.meta_lr"), ("learner.inner_lr=1.0e+30", "learner.inner_lr")],
)
def test_divergence_stops_the_run_naming_the_cause_and_saves_no_nan_model(
    tmp_path, glyphs, setting, culprit
) -> None:
    config = load_config(
        "glyphs-5w1s",
        [*tiny_overrides(**{"train.iterations": 30, "train.checkpoint_every": 1}), setting],
    )
    run = tmp_path / "run"
    with pytest.raises(Diverged, match=rf"training diverged at iteration \d+: .*{culprit}"):
        Trainer.create(config, run).fit(progress=False)
    assert not (run / "summary.json").exists()
    for name in ("last.pt", "best.pt"):
        if (run / name).exists():
            weights = load_checkpoint(run / name)["model"]
            assert all(torch.isfinite(w).all() for w in weights.values())
    metrics = run / "metrics.jsonl"  # none when it diverged at the first iteration
    for line in metrics.read_text().splitlines() if metrics.exists() else []:
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl"))


def test_skip_drops_the_tasks_that_give_nan_and_trains_on(tmp_path, glyphs, monkeypatch) -> None:
    """With train.on_nonfinite=skip, a task whose loss is NaN is left out of the update."""
    config = _config(**{"train.on_nonfinite": "skip", "train.meta_batch_size": 3})
    trainer = Trainer.create(config, tmp_path / "run")
    learner = trainer.parts.learner
    outcomes = learner.outcomes
    poisoned: set[int] = set()

    def one_nan(params, episodes):
        results = outcomes(params, episodes)
        it = trainer.state.iteration
        if it % 3 == 1 and it not in poisoned:  # one task of every third iteration
            poisoned.add(it)
            graphs = list(results.graphs)
            graphs[0] = graphs[0] * float("nan")
            losses = results.losses.clone()
            losses[0] = float("nan")
            return dataclasses.replace(results, losses=losses, graphs=tuple(graphs))
        return results

    monkeypatch.setattr(learner, "outcomes", one_nan)
    trainer.fit(progress=False)
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r.get("skipped_tasks", 0) for r in train] == [1 if i % 3 == 1 else 0 for i in range(12)]
    assert all(np.isfinite(r["loss"]) for r in train)
    weights = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_the_count_of_skipped_iterations_in_a_row_survives_a_resume(tmp_path, glyphs) -> None:
    """A run stops after SKIPS_IN_A_ROW wholly skipped iterations in a row, whether or not
    it was resumed among them: the count is part of the checkpoint."""
    from metasched.training.step import SKIPS_IN_A_ROW

    config = _config(**{"train.on_nonfinite": "skip"})
    trainer = Trainer.create(config, tmp_path / "run")
    trainer.step.skipped_in_a_row = SKIPS_IN_A_ROW - 1
    trainer._save_last()
    assert Trainer.resume(tmp_path / "run").step.skipped_in_a_row == SKIPS_IN_A_ROW - 1


_PEAK_RSS_CHILD = """
import json, sys
import torch.nn.functional as F
from metasched.cli import main
if sys.argv[1] == "leak":  # the control: keep every loss and its graph, as a careless loop would
    kept, plain = [], F.cross_entropy
    F.cross_entropy = lambda *a, **k: kept.append(plain(*a, **k)) or kept[-1]
rc = main(sys.argv[2:])
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"rc": rc, "peak_kib": int(peak.split()[1])}))
"""


def _peak_rss_mib(run_dir: Path, iterations: int, leak: bool = False) -> float:
    """Peak RSS (MiB) of a fresh process that trains a small ATS run for ``iterations``."""
    settings = tiny_overrides(**{
        "scheduler.name": "ats", "scheduler.pool_size": 6, "scheduler.ats.warmup": 5,
        "train.iterations": iterations, "train.val_every": iterations, "train.val_tasks": 10,
        "train.test_tasks": 10, "train.checkpoint_every": iterations, "model.filters": 8,
    })  # fmt: skip
    argv = ["train", "--config", "glyphs-5w1s", "--quiet", "--run-dir", str(run_dir)]
    argv += [item for s in settings for item in ("--set", s)]
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_CHILD, "leak" if leak else "clean", *argv],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["rc"] == 0
    return measured["peak_kib"] / 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_stays_flat_over_many_iterations(tmp_path) -> None:
    """Six times the iterations cost (almost) no more peak memory: nothing is kept per
    iteration. A control that keeps each loss's graph (20 MiB an iteration) passes the bound
    in the short run's length, so the check can fail (benchmarks/memory.py measures the 84x84
    curve over 2,000 iterations)."""
    short = _peak_rss_mib(tmp_path / "short", 30)
    long = _peak_rss_mib(tmp_path / "long", 180)
    leaky = _peak_rss_mib(tmp_path / "leaky", 30, leak=True)
    bound = 12.0  # MiB over 150 more iterations: 80 KiB per iteration
    assert long - short < bound, (short, long)
    assert leaky - short > bound, (short, leaky)


def test_nan_and_infinity_are_written_as_json_null(tmp_path) -> None:
    """A NaN score (a constant prediction's Pearson R², say) must not make summary.json or
    metrics.jsonl invalid JSON, as Python's json module would by default."""
    from metasched.files import dumps
    from metasched.training.metrics import MetricsLog

    record = {"score": float("nan"), "ci95": float("inf"), "nested": [1.0, float("-inf")]}
    assert json.loads(dumps(record), parse_constant=_refuse) == {
        "score": None, "ci95": None, "nested": [1.0, None]
    }  # fmt: skip
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append("val", 1, **record)
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert read_metrics(tmp_path / "metrics.jsonl")[0]["score"] is None


def _refuse(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_a_stopped_comparison_says_so_in_one_line_and_rerunning_continues_it(tmp_path, how) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or SIGTERM to the
    comparison alone: the running jobs save and stop, the queued one never starts, one line says
    how to continue, and the same command then resumes every run to its exact end."""
    out = tmp_path / "cmp"
    command = [
        sys.executable, "-m", "metasched.cli", "compare", "--config",
        str(ROOT / "tests" / "corpus" / "configs" / "tiny.yaml"), "--schedulers",
        "uniform,greedy,spl", "--seeds", "1", "--workers", "2", "--out", str(out),
        "--set", "train.iterations=60", "--set", "train.checkpoint_every=5",
        "--set", "scheduler.pool_size=4",
    ]  # fmt: skip
    log = (tmp_path / "stdout").open("w")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    metrics = {m: out / f"{m}-seed0" / "metrics.jsonl" for m in ("uniform", "greedy", "spl")}
    deadline = time.monotonic() + 120

    def started() -> list[str]:
        return [m for m, f in metrics.items() if f.exists() and f.read_text().count("\n") >= 6]

    while len(started()) < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr
        time.sleep(0.2)
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("metasched: interrupted;"), stderr
    assert "run the same metasched compare command again" in stderr, stderr
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    running = started()
    assert len(running) == 2 and all((out / f"{m}-seed0" / "last.pt").is_file() for m in running)
    queued = next(m for m in metrics if m not in running)
    assert not metrics[queued].exists()  # never started after the stop
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("resuming") == 2, again.stdout
    for m in metrics.values():
        train = [r for r in read_metrics(m) if r["kind"] == "train"]
        assert [r["iteration"] for r in train] == list(range(1, 61))


def test_a_run_failing_inside_a_parallel_comparison_is_named_in_one_line(tmp_path) -> None:
    """A worker's error (here a divergence) reaches the user as one line naming the run."""
    command = [
        sys.executable, "-m", "metasched.cli", "compare", "--config",
        str(ROOT / "tests" / "corpus" / "configs" / "tiny.yaml"), "--schedulers", "uniform",
        "--seeds", "2", "--workers", "2", "--out", str(tmp_path / "cmp"),
        "--set", "train.meta_lr=1.0e+30",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert re.match(r"metasched: error: uniform-seed\d: training diverged at iteration", last), last
    assert "train.meta_lr" in last and "Traceback" not in done.stderr, done.stderr
