"""Cost accounting of equal-compute runs: each iteration is counted at its phase's cost, and
calibration times each phase apart, by blocks of alternating iterations or, where a phase is
scattered, over all its iterations. Timings here are synthetic: the arithmetic is what is
tested."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from metasched.config import Config, load_config
from metasched.training import cost
from metasched.training.cost import IterationCost, calibrate, run_cost


def _fake_trainers(monkeypatch, timed, warmup: int = 0, made: list[str] | None = None) -> None:
    """Calibration without training: each trainer is a stub whose ``role`` is ``method`` or
    ``uniform`` (the reference), timed by ``timed(trainer) -> (phase, seconds)``."""

    def create(config, run_dir):
        role = "uniform" if run_dir.name.endswith("-uniform") else "method"
        if made is not None:
            made.append(role)
        return SimpleNamespace(role=role, done=0, warmup=warmup)

    monkeypatch.setattr("metasched.training.trainer.Trainer.create", create)
    monkeypatch.setattr(cost, "_timed", timed)


def test_a_run_is_charged_each_iteration_at_its_phases_cost() -> None:
    records = [
        {"phase": "warmup"},
        {"phase": "train", "measured": 1},
        {"phase": "train", "measured": 0},
        {"phase": "train"},
    ]
    charged = run_cost(records, IterationCost(step=3.0, warmup=2.0, warmup_iterations=1, light=1.1))
    assert charged == pytest.approx(np.cumsum([2.0, 3.0, 1.1, 3.0]))


def test_calibration_times_measured_and_light_iterations_apart(monkeypatch) -> None:
    """The method measures one iteration in four (3 s, 'train') and otherwise draws uniformly
    (1.1 s, light); uniform sampling takes 1 s, except while another process slows everything
    down by half for a stretch. Light iterations fill most of every block and are timed by
    blocks; the measured ones never fill half a block and are timed all together. The slow
    stretch slows both sides of each pair alike, so it changes nothing."""
    made: list[str] = []
    clock = {"calls": 0}

    def timed(trainer):
        clock["calls"] += 1
        load = 1.5 if 100 <= clock["calls"] < 180 else 1.0
        i, trainer.done = trainer.done, trainer.done + 1
        if trainer.role == "uniform":
            return "train", 1.0 * load
        return ("train", 3.0 * load) if i % 4 == 0 else ("light", 1.1 * load)

    _fake_trainers(monkeypatch, timed, made=made)
    uniform = load_config("glyphs-5w1s")
    gated = load_config("glyphs-5w1s", ["scheduler.name=gated", "scheduler.pool_size=8"])
    costs = calibrate({"gated": gated, "uniform+cosine": uniform}, uniform, say=lambda _: None)
    assert costs["gated"].light == pytest.approx(1.1)
    assert costs["gated"].step == pytest.approx(3.0)
    assert costs["uniform+cosine"] == IterationCost(step=1.0)  # same computation: not timed
    assert made == ["method", "uniform"]


def test_compare_warns_before_measuring_costs_on_a_busy_machine(tmp_path, monkeypatch) -> None:
    """Within half a core of the core count the machine is busy, and compare says so before
    it measures; below that it is quiet."""
    from metasched import cpu
    from metasched.compare import costs as cost_store

    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (1.5, 2.0, 1.0))
    assert cpu.busy_machine() == "the load average is 1.5 on 2 cores"
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (1.4, 0.2, 0.1))
    assert cpu.busy_machine() is None

    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (2.9, 2.0, 1.0))
    monkeypatch.setattr(
        cost_store, "calibrate", lambda missing, *a, **k: {n: IterationCost(2.0) for n in missing}
    )
    said: list[str] = []
    uniform = load_config("glyphs-5w1s")
    cost_store.method_costs({"greedy": uniform}, uniform, tmp_path, said.append)
    assert said[1].startswith("warning: the load average is 2.9 on 2 cores;")
    stored = json.loads((tmp_path / "costs.json").read_text())
    assert stored["measured_on"]["greedy"].endswith("(the load average is 2.9 on 2 cores)")


def test_a_cost_is_measured_again_when_its_settings_change(tmp_path, monkeypatch) -> None:
    """costs.json keeps the settings each cost was measured with: a method whose pool size
    changed is measured again (and says why), one whose learning-rate schedule changed is
    not, and a cost recorded without its settings (an older file) is kept."""
    from metasched.compare import costs as cost_store

    measured: list[list[str]] = []

    def calibrate(missing, *args, **kwargs):
        measured.append(sorted(missing))
        return {name: IterationCost(float(len(measured))) for name in missing}

    monkeypatch.setattr(cost_store, "calibrate", calibrate)
    monkeypatch.setattr(cost_store, "busy_machine", lambda: None)
    uniform = load_config("glyphs-5w1s")

    def greedy(*settings: str) -> dict[str, Config]:
        return {"greedy": load_config("glyphs-5w1s", ["scheduler.name=greedy", *settings])}

    said: list[str] = []
    cost_store.method_costs(greedy("scheduler.pool_size=6"), uniform, tmp_path, said.append)
    costs = cost_store.method_costs(
        greedy("scheduler.pool_size=6", "train.lr_schedule=cosine"), uniform, tmp_path, said.append
    )
    assert measured == [["greedy"]] and costs["greedy"].step == 1.0
    costs = cost_store.method_costs(greedy("scheduler.pool_size=8"), uniform, tmp_path, said.append)
    assert measured == [["greedy"], ["greedy"]] and costs["greedy"].step == 2.0
    assert "scheduler.pool_size: 6 -> 8" in said[-2]

    # The same method with a decayed rate computes the same: it takes the measured cost.
    decayed = greedy("scheduler.pool_size=8", "train.lr_schedule=cosine")
    costs = cost_store.method_costs(
        {"greedy+cosine": decayed["greedy"]}, uniform, tmp_path, said.append
    )
    assert len(measured) == 2 and costs["greedy+cosine"] == costs["greedy"]
    assert said[-1] == "cost of greedy+cosine: greedy's, the same computation"

    stored = json.loads((tmp_path / "costs.json").read_text())
    assert stored["measured_on"]["greedy+cosine"] == "greedy's cost (the same computation)"
    del stored["computations"]  # a file written before costs kept their settings
    (tmp_path / "costs.json").write_text(json.dumps(stored))
    costs = cost_store.method_costs(
        greedy("scheduler.pool_size=12"), uniform, tmp_path, said.append
    )
    assert len(measured) == 2 and costs["greedy"].step == 2.0


def test_a_gate_that_stayed_on_while_timed_still_stops_at_its_compute(monkeypatch) -> None:
    """Gated measured every iteration of its calibration (selection paid throughout); its
    light iterations are declared, not inferred, so its runs still stop at their compute."""

    def timed(trainer):
        return "train", 1.0 if trainer.role == "uniform" else 1.5

    _fake_trainers(monkeypatch, timed)
    uniform = load_config("glyphs-5w1s")
    methods = {
        "gated": load_config("glyphs-5w1s", ["scheduler.name=gated", "scheduler.pool_size=8"]),
        "greedy": load_config("glyphs-5w1s", ["scheduler.name=greedy", "scheduler.pool_size=8"]),
    }
    costs = calibrate(methods, uniform, say=lambda _: None)
    assert costs["gated"].varies and costs["gated"].step == pytest.approx(1.5)
    assert not costs["greedy"].varies


def test_calibration_times_with_the_runs_threads_and_restores_the_process_setting(
    monkeypatch,
) -> None:
    """Two threads on a 2-core machine whose other core is busy ran a calibration tens of times
    slower than the runs it planned; it times with the runs' thread count, then puts the
    process's back."""
    import torch

    seen: list[int] = []

    def timed(trainer):
        seen.append(torch.get_num_threads())
        return "train", 1.0

    _fake_trainers(monkeypatch, timed)
    uniform = load_config("glyphs-5w1s")
    greedy = load_config("glyphs-5w1s", ["scheduler.name=greedy", "scheduler.pool_size=8"])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        calibrate({"greedy": greedy}, uniform, say=lambda _: None, threads=1)
        assert set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_warm_up_too_short_to_time_is_charged_at_the_steps_cost(monkeypatch) -> None:
    """The first two iterations of each trainer are left out of the timing: a warm-up of two
    iterations is never timed, and is charged at the meta-update's cost, not at nothing."""

    def timed(trainer):
        i, trainer.done = trainer.done, trainer.done + 1
        if trainer.role == "uniform":
            return "train", 1.0
        return ("warmup", 2.0) if i < 2 else ("train", 3.0)

    _fake_trainers(monkeypatch, timed, warmup=2)
    uniform = load_config("glyphs-5w1s")
    ats = load_config("glyphs-5w1s", ["scheduler.name=ats", "scheduler.pool_size=8"])
    measured = calibrate({"ats": ats}, uniform, say=lambda _: None)["ats"]
    assert measured == IterationCost(step=3.0, warmup=3.0, warmup_iterations=2, light=1.0)


def test_a_run_with_a_compute_budget_stops_when_spent_and_resumes_exactly(tmp_path, glyphs):
    """Gated, off but for one measured pool in three (2 uniform iterations each, light ones
    1): the run stops at the first iteration that brings its spending to 20, well before its
    cap of 40 meta-updates, is tested where it crosses 8, decays its rate over the budget, and
    a crash after a checkpoint resumes to the same records."""
    from metasched.training.metrics import read_metrics
    from metasched.training.step import learning_rate
    from metasched.training.trainer import Trainer

    from .conftest import crash_at, tiny_overrides
    from .test_training import _records

    overrides = tiny_overrides(
        **{
            "scheduler.name": "gated",
            "scheduler.pool_size": 4,
            "scheduler.gated.candidate_cost": 10,
            "scheduler.gated.check_every": 3,
            "learner.inner_steps": 1,
            "learner.eval_inner_steps": 1,
            "train.iterations": 40,
            "train.val_every": 5,
            "train.checkpoint_every": 5,
            "train.lr_schedule": "cosine",
            "train.budget": "{total: 20, step: 2, light: 1, test_at: [8]}",
        }
    )
    config = load_config("glyphs-5w1s", overrides)
    full = Trainer.create(config, tmp_path / "full")
    full.fit(progress=False)
    train = [r for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if r["kind"] == "train"]
    spent = run_cost(train, config.train.budget)
    assert spent[-2] < 20 <= spent[-1] and len(train) < 40
    assert {r["measured"] for r in train} == {0, 1}
    milestone = [
        r for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if r["kind"] == "milestone"
    ]
    assert len(milestone) == 1 and milestone[0]["spent"] >= 8 > milestone[0]["spent"] - 2
    half = type(full.state)(updates=0, spent=10.0)
    assert learning_rate(config, half) == pytest.approx(config.train.meta_lr / 2)

    crashing = Trainer.create(config, tmp_path / "split")
    crash_at(crashing, 7)
    with pytest.raises(RuntimeError, match="power cut"):
        crashing.fit(progress=False)
    Trainer.resume(tmp_path / "split").fit(progress=False)
    assert _records(tmp_path / "split") == _records(tmp_path / "full")
    from metasched.errors import MetaschedError

    for changed in ("train.budget={total: 30, step: 3, light: 1}", "train.budget=null"):
        with pytest.raises(MetaschedError, match=r"per-iteration costs of its train\.budget"):
            Trainer.resume(tmp_path / "split", [changed])
