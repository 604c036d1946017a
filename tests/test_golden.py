"""Results versions: short golden runs of every scheduler in both domains, each learner and two
ranks replay to the last bit, unless the results version of the part that changed was bumped
(:mod:`metasched.training.provenance`; the replay is :mod:`tests.golden.replay`)."""

from __future__ import annotations

import pytest

from tests.golden.cases import CASES
from tests.golden.replay import first_difference, replay, stored, stored_platform, verdict


def _replayed(names: list[str], mutate: bool = False) -> dict:
    result = replay(names, mutate)
    if result["platform"] != stored_platform():
        pytest.skip(
            f"this machine's portable arithmetic differs from the goldens' (probe"
            f" {result['platform']}, goldens {stored_platform()}): they cannot be checked here"
        )
    return result


def test_golden_runs_replay_identically_under_their_results_versions(glyphs) -> None:
    result = _replayed(list(CASES))
    problems = [verdict(name, result["cases"][name])[0] for name in CASES]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


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
