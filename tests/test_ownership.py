"""Outputs belong to their owner: one process per run directory, no output replaces what the
user owns, and no write follows a link planted beside it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metasched.cli import main
from metasched.files import append_line, atomic_write, temporary_path
from metasched.training.metrics import read_metrics

from .conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _train_command(run_dir: Path, iterations: int) -> list[str]:
    settings = tiny_overrides(**{"train.iterations": iterations, "train.checkpoint_every": 5})
    command = [sys.executable, "-m", "metasched.cli", "train", "--config", "glyphs-5w1s", "--quiet"]
    return [*command, *(a for s in settings for a in ("--set", s)), "--run-dir", str(run_dir)]


def _wait_for_records(run_dir: Path, process: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 120
    metrics = run_dir / "metrics.jsonl"
    while not (metrics.is_file() and metrics.read_text().count('"kind": "train"') >= count):
        assert process.poll() is None and time.monotonic() < deadline, "the run did not start"
        time.sleep(0.2)


def test_a_second_process_on_a_live_run_directory_is_refused_at_once(tmp_path, glyphs) -> None:
    """While one ``train`` writes a run directory, a second ``train`` and a ``--resume`` of it
    exit 2 at once naming the holder; the first run's records stay those of one run."""
    run = tmp_path / "run"
    first = subprocess.Popen(_train_command(run, 100000), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        _wait_for_records(run, first, 3)
        resume = [sys.executable, "-m", "metasched.cli", "train", "--resume", str(run)]
        for second in (_train_command(run, 20), resume):
            start = time.monotonic()
            done = subprocess.run(second, capture_output=True, text=True, cwd=ROOT, timeout=120)
            assert done.returncode == 2, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and f"in use by process {first.pid}" in lines[0]
            assert "Traceback" not in done.stderr and time.monotonic() - start < 60
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    records = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["iteration"] for r in records] == list(range(1, len(records) + 1))


def test_a_directory_of_someone_elses_files_is_not_a_run_directory(tmp_path, capsys) -> None:
    run = tmp_path / "mine"
    run.mkdir()
    (run / "config.yaml").write_text("my own notes\n")
    settings = tiny_overrides(**{"train.iterations": 2})
    args = ["train", "--config", "glyphs-5w1s", "--run-dir", str(run), "--quiet"]
    assert main([*args, *(a for s in settings for a in ("--set", s))]) == 2
    assert "holds files metasched did not write" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == "my own notes\n"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_stale_temporaries_are_cleaned_only_in_metaschedss_own_directories(tmp_path) -> None:
    """The clean-up of killed writers' files never runs in a directory it was refused."""
    foreign = tmp_path / "home"
    foreign.mkdir()
    planted = foreign / ".bashrc.tmp999999999"
    planted.write_text("the user's")
    assert main(["train", "--config", "glyphs-5w1s", "--run-dir", str(foreign), "--quiet"]) == 2
    assert planted.read_text() == "the user's"


def test_predict_never_writes_over_its_inputs_or_an_existing_file(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"weights")
    support = tmp_path / "support.csv"
    support.write_text("smiles,value\nCCO,1\n")
    query = tmp_path / "query.csv"
    query.write_text("smiles\nCCN\n")
    for out in (support, query, run / "best.pt"):
        before = out.read_bytes()
        code = main(["predict", str(run), "--support", str(support), "--query", str(query),
                     "--out", str(out)])  # fmt: skip
        assert code == 2 and "is also an input of this command" in capsys.readouterr().err
        assert out.read_bytes() == before
    existing = tmp_path / "results.csv"
    existing.write_text("keep me")
    code = main(["predict", str(run), "--support", str(support), "--query", str(query),
                 "--out", str(existing)])  # fmt: skip
    assert code == 2 and "pass --force to replace it" in capsys.readouterr().err
    assert existing.read_text() == "keep me"


def test_no_write_follows_a_link_planted_at_a_temporary_name(tmp_path) -> None:
    """A link at every name a write of ``summary.json`` could predictably use, and one in
    place of the metrics file: the files they point to stay untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    target = out / "summary.json"
    prefix = temporary_path(target)
    for name in (prefix.name, *(f"{prefix.name}.{s}" for s in ("x", "tmp", "abc123"))):
        (out / name).symlink_to(victim)
    atomic_write(target, json.dumps({"score": 1}))
    assert victim.read_text() == "precious" and json.loads(target.read_text()) == {"score": 1}
    metrics = out / "metrics.jsonl"
    metrics.symlink_to(victim)
    with pytest.raises(Exception, match="is a symbolic link"):
        append_line(metrics, '{"kind": "train", "iteration": 1}')
    assert victim.read_text() == "precious"
    os.unlink(metrics)


def test_compare_refuses_a_method_twice_and_an_out_of_other_files(tmp_path, capsys) -> None:
    args = ["compare", "--config", "glyphs-noisy", "--schedulers", "uniform,uniform"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "names uniform twice" in capsys.readouterr().err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "results.md").write_text("mine")
    args = ["compare", "--config", "glyphs-noisy", "--schedulers", "uniform"]
    assert main([*args, "--out", str(notes)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (notes / "results.md").read_text() == "mine"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_the_nproc_launcher_ends_its_ranks_with_a_resumable_checkpoint(tmp_path, glyphs, how):
    """``--nproc 2`` under SIGTERM, Ctrl-C (SIGINT to the launcher) or ``kill -9``: within
    10 s no rank is left, and the run resumes from a checkpoint at least as new as the last
    save point before the signal (the ranks save on their way out)."""
    run = tmp_path / "run"
    command = [*_train_command(run, 100000), "--nproc", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, env=env)  # fmt: skip
    _wait_for_records(run, launcher, 12)
    ranks = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True)
    pids = [int(p) for p in ranks.stdout.split()]
    assert len(pids) == 2
    saved = 5 * ((run / "metrics.jsonl").read_text().count('"kind": "train"') // 5)
    launcher.send_signal(getattr(signal, how))
    code = launcher.wait(timeout=60)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"ranks {left} outlived their launcher"
    if how != "SIGKILL":
        assert code == {"SIGTERM": 143, "SIGINT": 130}[how]
        err = launcher.stderr.read() if launcher.stderr else ""
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    from metasched.training.checkpoint import newest_checkpoint

    _, payload = newest_checkpoint(run / "last.pt")
    assert payload["iteration"] >= saved
    resumed = subprocess.run(
        [sys.executable, "-m", "metasched.cli", "train", "--resume", str(run), "--quiet",
         "--set", f"train.iterations={payload['iteration'] + 2}"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_resume_that_would_read_other_data_is_refused(tmp_path, monkeypatch, capsys) -> None:
    """A relative data.root names another file from another folder: the resume refuses it with
    one line, resumes from the folder the run began in, and accepts the same data elsewhere."""
    from .test_regression import learnable_csv, overrides

    first, other, moved = (tmp_path / name for name in ("first", "other", "moved"))
    for folder in (first, other, moved):
        folder.mkdir()
    data = learnable_csv(first)
    (other / data.name).write_text(data.read_text().replace("T1,", "T9,"))
    (moved / data.name).write_bytes(data.read_bytes())
    settings = overrides(Path(data.name), **{"train.iterations": 20, "train.checkpoint_every": 10})
    monkeypatch.chdir(first)
    args = ["train", "--config", "drug-demo", "--run-dir", str(tmp_path / "run"), "--quiet"]
    assert main([*args, *(a for s in settings for a in ("--set", s))]) == 0
    resume = ["train", "--resume", str(tmp_path / "run"), "--set", "train.iterations=30"]
    capsys.readouterr()
    monkeypatch.chdir(other)
    assert main(resume) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"trained on {data.resolve()}" in error[0], error
    assert "holds other data" in error[0]
    monkeypatch.chdir(moved)  # the same bytes at another path: the same data
    assert main(resume) == 0
    monkeypatch.chdir(other)
    again = ["train", "--resume", str(tmp_path / "run"), "--set", "train.iterations=40"]
    assert main([*again, "--set", f"data.root={moved / data.name}"]) == 0
    assert main([*again[:3], "--set", "train.iterations=50"]) == 0  # that root is kept
