"""Results versions: short golden runs of every scheduler in both domains, each learner and two
ranks replay to the last bit, unless the results version of the part that changed was bumped
(:mod:`metasched.training.provenance`; the replay is :mod:`tests.golden.replay`)."""

from __future__ import annotations

import warnings

import pytest

from metasched.cpu import cpu_vendor
from tests.golden.cases import AWAITING_RECORD, CASES
from tests.golden.replay import (
    first_difference,
    recorded_elsewhere,
    replay,
    stored,
    stored_platform,
    verdict,
)


def _replayed(names: list[str], mutate: bool = False) -> dict:
    if stored_platform() is None:
        pytest.skip(
            f"no goldens are recorded for {cpu_vendor()} CPUs (portable arithmetic differs"
            " between vendors): record them with python -m tests.golden.replay --update"
        )
    result = replay(names, mutate)
    if result["platform"] != stored_platform():
        pytest.skip(
            f"this machine's portable arithmetic differs from the goldens' (probe"
            f" {result['platform']}, goldens {stored_platform()}): they cannot be checked here"
        )
    return result


def test_golden_runs_replay_identically_under_their_results_versions(glyphs) -> None:
    """Every case recorded for this CPU vendor replays to the last bit. A case without a record
    here fails unless it is recorded for another vendor and listed as awaiting its record here
    (then it is named in a warning and left unchecked)."""
    awaiting = AWAITING_RECORD.get(cpu_vendor(), set())
    missing = [name for name in CASES if stored(name) is None]
    unlisted = [n for n in missing if n not in awaiting or not recorded_elsewhere(n)]
    assert not unlisted, (
        f"no golden recorded on {cpu_vendor()} CPUs for {', '.join(unlisted)}: record them with"
        " python -m tests.golden.replay --update"
    )
    stale = sorted(awaiting - set(missing))
    assert not stale, f"{', '.join(stale)} are recorded now: drop them from AWAITING_RECORD"
    checked = [name for name in CASES if name not in missing]
    result = _replayed(checked)
    problems = [verdict(name, result["cases"][name])[0] for name in checked]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
    if missing:
        warnings.warn(
            f"golden cases awaiting their record on {cpu_vendor()} CPUs, not checked here:"
            f" {', '.join(missing)}",
            stacklevel=1,
        )


def test_a_one_ulp_change_to_the_inner_loop_changes_every_golden_outcome(glyphs) -> None:
    """The check catches the smallest change a learner can make: each inner step's learning
    rate one float32 ulp larger, in both domains."""
    names = ["images-uniform", "assays-uniform", "images-ats"]
    result = _replayed(names, mutate=True)
    for name in names:
        golden = stored(name)
        assert golden is not None
        assert first_difference(golden["outcome"], result["cases"][name]["outcome"])
        problem, recordable = verdict(name, result["cases"][name])
        assert "bump the results version" in problem and not recordable
