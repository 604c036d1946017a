"""Per-run metrics as JSON lines: one record per training iteration, validation and test."""

from __future__ import annotations

import gzip
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metasched.errors import MetaschedError
from metasched.files import append_line, atomic_write, dumps, os_error

METRICS = "metrics.jsonl"
#: Fields of records and summaries that hold wall-clock time (or where a run lived): the
#: only ones two runs of one config and one results version may differ in.
WALL_CLOCK = ("seconds", "wall_seconds", "train_seconds", "test_seconds", "run_dir")
#: A finished run's records may be kept compressed beside (or instead of) ``metrics.jsonl``,
#: as committed runs are (``experiments/runs``); readers take either.
COMPRESSED = METRICS + ".gz"


def metrics_file(run_dir: Path) -> Path | None:
    """The run's records: ``metrics.jsonl``, else ``metrics.jsonl.gz``, else None."""
    for name in (METRICS, COMPRESSED):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


class MetricsLog:
    """Appends records to ``metrics.jsonl``; every record carries ``kind`` and ``iteration``.

    A record is one ``write`` of one line, so a kill can tear at most the last line; readers
    drop a torn last line, and :meth:`truncate_after` rewrites the file atomically (from the
    compressed copy when only that is left, as in a committed unfinished run).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, kind: str, iteration: int, **values: Any) -> None:
        append_line(self.path, dumps({"kind": kind, "iteration": iteration, **values}))

    def truncate_after(self, iteration: int) -> None:
        """Drops records written after ``iteration`` (by a run that crashed past a checkpoint)
        and the test records, replacing the file in one rename."""
        source = metrics_file(self.path.parent)
        if source is None:
            return
        kept = [
            r
            for r in read_metrics(source, quiet=True)
            if r["iteration"] <= iteration and r["kind"] != "test"
        ]
        atomic_write(self.path, "".join(dumps(r) + "\n" for r in kept))


def read_metrics(path: Path, quiet: bool = False) -> list[dict[str, Any]]:
    """All records of a metrics file (gzip-compressed if its name ends in ``.gz``). A torn
    last line (a write cut by a kill) is dropped, with a warning unless ``quiet``; a damaged
    line elsewhere is an error naming it."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt") as handle:
                lines = handle.read().split("\n")
        else:
            lines = path.read_text().split("\n")
    except (EOFError, gzip.BadGzipFile) as error:
        raise MetaschedError(
            f"{str(path)!r} is a damaged gzip file; restore or remove it"
        ) from error
    except OSError as error:
        raise os_error(error, path) from error
    except UnicodeDecodeError as error:
        raise MetaschedError(f"{str(path)!r} is not a metrics file (not text)") from error
    records = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "kind" not in record or "iteration" not in record:
                raise ValueError("not a metrics record")
        except ValueError as error:
            if number == last:  # a kill mid-write tears the last line only
                if not quiet:
                    warnings.warn(
                        f"{path}: ignored its unfinished last line (a write cut short)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                break
            raise MetaschedError(
                f"{str(path)!r} line {number + 1} is not a metrics record ({error}); the file"
                " is damaged: remove that line"
            ) from error
        records.append(record)
    return records


def without_wall_clock(record: dict[str, Any]) -> dict[str, Any]:
    """A record or summary without its wall-clock fields (:data:`WALL_CLOCK`): what must be
    identical between two runs of one config on one machine."""
    return {k: v for k, v in record.items() if k not in WALL_CLOCK}


@dataclass(frozen=True)
class RunRecords:
    """One run's name, config and metrics, split by kind."""

    name: str
    config: dict[str, Any]
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    summary: dict[str, Any] | None
    milestones: list[dict[str, Any]] = field(default_factory=list)

    @property
    def wall_seconds(self) -> float:
        """Training and the final test, in seconds of wall time (0 before it finished)."""
        summary = self.summary or {}
        return float(summary.get("train_seconds", 0.0) + summary.get("test_seconds", 0.0))


def run_metrics(run_dir: Path, quiet: bool = False, required: bool = True) -> list[dict[str, Any]]:
    """Every record of the run in ``run_dir``, from ``metrics.jsonl`` or its compressed copy;
    if it has neither, an error (or none, unless ``required``)."""
    metrics = metrics_file(run_dir)
    if metrics is None:
        if not required:
            return []
        raise MetaschedError(f"{str(run_dir)!r} holds no metrics.jsonl; pass a run directory")
    return read_metrics(metrics, quiet)


def load_run(run_dir: Path, records_required: bool = True) -> RunRecords:
    """Reads a run directory (the one reader of ``report`` and ``compare``): its config,
    summary (None until it finishes) and records (none for a baseline, which trains nothing,
    unless ``records_required``)."""
    records = run_metrics(run_dir, required=records_required)
    summary_path = run_dir / "summary.json"
    config_path = run_dir / "config.yaml"
    try:
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as error:
        culprit = summary_path if isinstance(error, json.JSONDecodeError) else config_path
        raise MetaschedError(
            f"{str(culprit)!r} is damaged ({type(error).__name__}); restore it or remove it"
        ) from error
    if not isinstance(config, dict) or not (summary is None or isinstance(summary, dict)):
        raise MetaschedError(f"{str(run_dir)!r}: config.yaml or summary.json is not a mapping")
    return RunRecords(
        name=run_dir.name,
        config=config,
        train=[r for r in records if r["kind"] == "train"],
        val=[r for r in records if r["kind"] == "val"],
        summary=summary,
        milestones=[r for r in records if r["kind"] == "milestone"],
    )
