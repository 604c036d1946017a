"""Replays the golden runs and checks them against their recorded outcomes.

    python -m tests.golden.replay              # replay every case; exit 1 on a difference
    python -m tests.golden.replay --update     # record new cases and cases whose results
                                               # versions were bumped
    python -m tests.golden.replay images-ats   # some cases only

A golden run is a few iterations of one configuration (:mod:`tests.golden.cases`); its
outcome is every metrics record and the summary (wall-clock times left out) and digests of the
final meta-model and scheduler state. Each replay trains in a fresh process under portable
arithmetic: ATen's portable kernels (``ATEN_CPU_CAPABILITY=default``), MKL's conditional
numerical reproducibility (``MKL_CBWR=COMPATIBLE``), no oneDNN, one thread. That is the same on
the x86-64 CPUs of one vendor, not across vendors, so the goldens are kept per vendor
(``records/GenuineIntel``, ``records/AuthenticAMD``), each set with a platform probe (a digest
of those operations' results); a machine whose probe differs cannot check them and says so, and
a case recorded for another vendor only is not checked here until it is recorded here.

The rule the check enforces: an outcome may change only together with the results version of
the part that changed it (``RESULTS_VERSION`` of a layer, ``results_version`` of a scheduler;
see :mod:`metasched.training.provenance`), and ``--update`` refuses to record a changed
outcome under unchanged versions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from metasched.cpu import cpu_vendor
from tests.golden.cases import CASES

HERE = Path(__file__).resolve().parent


# The goldens are kept per CPU vendor: the portable settings do not give every vendor's CPUs
# the same arithmetic (those recorded on an Intel Xeon differ on an AMD EPYC from the second
# iteration, by about 1e-7, under the same platform probe).
ALL_RECORDS = HERE / "records"
RECORDS = ALL_RECORDS / cpu_vendor()
PLATFORM = RECORDS / "platform.json"
ROOT = HERE.parents[1]
PORTABLE = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def replay(names: list[str], mutate: bool = False) -> dict[str, Any]:
    """Trains the named cases in one portable-arithmetic process; returns the platform probe
    and each case's versions and outcome."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "outcomes.json"
        command = [sys.executable, "-m", "tests.golden.worker", str(out), work, *names]
        env = {**os.environ, **PORTABLE}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        done = subprocess.run(
            [*command, *(["--mutate", "ulp"] if mutate else [])],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"golden replay failed:\n{done.stdout}\n{done.stderr}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def stored(name: str) -> dict[str, Any] | None:
    path = RECORDS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def stored_platform() -> str | None:
    return json.loads(PLATFORM.read_text())["probe"] if PLATFORM.is_file() else None


def recorded_elsewhere(name: str) -> list[str]:
    """The other vendors' CPUs that case ``name`` has a golden for."""
    return sorted(
        d.name for d in ALL_RECORDS.iterdir() if d != RECORDS and (d / f"{name}.json").is_file()
    )


def first_difference(old: Any, new: Any, where: str = "", added: bool = True) -> str:
    """Where two outcomes first differ (empty when equal); with ``added=False``, keys that only
    ``new`` has are not a difference (a record that gained a field keeps its numbers)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = old.keys() | new.keys() if added else old.keys()
        for key in sorted(keys, key=str):
            found = first_difference(old.get(key), new.get(key), f"{where}.{key}", added)
            if found:
                return found
        return ""
    if isinstance(old, list) and isinstance(new, list):
        for index, (a, b) in enumerate(zip(old, new)):
            found = first_difference(a, b, f"{where}[{index}]", added)
            if found:
                return found
        if len(old) != len(new):
            return f"{where}: {len(old)} items, now {len(new)}"
        return ""
    return "" if old == new else f"{where.lstrip('.')}: {old!r}, now {new!r}"


def verdict(name: str, fresh: dict[str, Any]) -> tuple[str, bool]:
    """(what is wrong with case ``name``'s replay, whether ``--update`` may record it);
    empty when it matches its golden. Records that gained fields but kept every number may be
    recorded without a bump: runs made before still hold what the code gives."""
    golden = stored(name)
    if golden is None:
        return f"{name}: no golden recorded yet", True
    if golden["versions"] != fresh["versions"]:
        changed = first_difference(golden["versions"], fresh["versions"])
        return f"{name}: the results versions changed ({changed}); record the new golden", True
    changed = first_difference(golden["outcome"], fresh["outcome"], added=False)
    if changed:
        return (
            f"{name}: its outcome changed while the results versions stayed the same"
            f" ({changed}): bump the results version of the part you changed (RESULTS_VERSION"
            " of its layer, or the scheduler's results_version), then record it with"
            " python -m tests.golden.replay --update",
            False,
        )
    gained = first_difference(golden["outcome"], fresh["outcome"])
    if gained:
        return f"{name}: its records gained fields ({gained}); record them", True
    return "", False


def main(argv: list[str]) -> int:
    update = "--update" in argv
    names = [a for a in argv if a != "--update"] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown golden cases {unknown}; known: {', '.join(CASES)}")
        return 2
    result = replay(names)
    platform = stored_platform()
    if platform is not None and platform != result["platform"]:
        print(
            f"this machine's portable arithmetic differs from the goldens' (probe"
            f" {result['platform']}, goldens {platform}); the goldens cannot be checked here"
        )
        return 1
    problems = []
    RECORDS.mkdir(parents=True, exist_ok=True)
    for name in names:
        fresh = result["cases"][name]
        problem, recordable = verdict(name, fresh)
        if problem and update and recordable:
            (RECORDS / f"{name}.json").write_text(json.dumps(fresh, indent=1) + "\n")
            print(f"recorded {name}")
        elif problem:
            problems.append(problem)
    if update and platform is None:
        PLATFORM.write_text(json.dumps({"probe": result["platform"]}) + "\n")
    print("\n".join(problems) or f"{len(names)} golden runs replayed identically")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
