"""Per-run metrics as JSON lines: one record per training iteration, validation and test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends records to ``metrics.jsonl``; every record carries ``kind`` and ``iteration``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, kind: str, iteration: int, **values: Any) -> None:
        record = {"kind": kind, "iteration": iteration, **values}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate_after(self, iteration: int) -> None:
        """Drops records written after ``iteration`` (by a run that crashed past a checkpoint)."""
        if not self.path.exists():
            return
        kept = [
            r
            for r in read_metrics(self.path)
            if r["iteration"] <= iteration and r["kind"] != "test"
        ]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics file."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
