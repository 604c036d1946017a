"""metasched compare: runs every method and seed, reuses what still matches, writes a table."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from metasched.cli import main
from metasched.compare import method_overrides, run_comparison
from metasched.config import Config, load_config
from metasched.errors import MetaschedError
from metasched.schedulers import SCHEDULERS

from .conftest import tiny_overrides

TINY = tiny_overrides(
    **{
        "train.iterations": 6,
        "train.val_every": 3,
        "train.checkpoint_every": 3,
        "train.val_tasks": 4,
        "train.test_tasks": 6,
        "learner.inner_steps": 1,
        "learner.eval_inner_steps": 1,
        "scheduler.ats.warmup": 2,
    }
)


def test_compare_runs_reuses_and_reruns_what_changed(tmp_path, glyphs, monkeypatch) -> None:
    said: list[str] = []
    methods = ["uniform", "greedy", "oracle"]
    table, _ = run_comparison("glyphs-noisy", methods, [0, 1], tmp_path, TINY, say=said.append)
    for method in methods:
        assert f"| {method} |" in table
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {r["method"] for r in rows} == set(methods)
    assert all(float(r["minutes"]) > 0 for r in rows)
    assert float(next(r for r in rows if r["method"] == "oracle")["noisy_trained"]) == 0.0
    assert (tmp_path / "results.png").stat().st_size > 0
    assert "metasched compare --config glyphs-noisy" in (tmp_path / "results.md").read_text()

    said.clear()
    run_comparison("glyphs-noisy", methods, [0, 1], tmp_path, TINY, say=said.append)
    assert sum("reused" in line for line in said) == 6  # nothing ran again

    said.clear()  # another setting for greedy only: its runs are set aside and redone
    run_comparison(
        "glyphs-noisy", ["greedy"], [0], tmp_path, [*TINY, "task.q_query=4"], say=said.append
    )
    assert any("config differs in task.q_query" in line for line in said)
    assert (tmp_path / "stale" / "greedy-seed0" / "summary.json").is_file()  # kept, not deleted

    said.clear()  # another scheduler's section changes nothing that uniform runs
    run_comparison(
        "glyphs-noisy", ["uniform"], [0], tmp_path, [*TINY, "scheduler.ats.lookahead_lr=0.01"],
        say=said.append,
    )  # fmt: skip
    assert sum("reused" in line for line in said) == 1

    # A setting added after a run was made reads as its default; a source edit that keeps the
    # results versions keeps the run; a bumped version of greedy's scheduler redoes greedy only.
    stored = tmp_path / "uniform-seed1" / "config.yaml"
    values = yaml.safe_load(stored.read_text())
    del values["train"]["on_nonfinite"]
    stored.write_text(yaml.safe_dump(values))
    monkeypatch.setattr(SCHEDULERS["greedy"], "results_version", 2)
    said.clear()
    run_comparison("glyphs-noisy", ["uniform", "greedy"], [1], tmp_path, TINY, say=said.append)
    assert said[0] == "uniform-seed1: finished with this config and results version; reused"
    assert "ran other results versions (scheduler.greedy 1 -> 2)" in said[1]


def test_a_run_without_results_versions_is_not_reused(tmp_path, glyphs) -> None:
    from metasched.compare import stored_state
    from metasched.training.trainer import Trainer

    config = load_config("glyphs-noisy", [*TINY, "scheduler.name=uniform", "train.iterations=2"])
    Trainer.create(config, tmp_path / "run").fit(progress=False)
    assert stored_state(tmp_path / "run", config) == ("done", "")
    provenance = tmp_path / "run" / "provenance.json"
    start = json.loads(provenance.read_text())["starts"][0]  # names what its wall time ran on
    assert start["machine"]["cores"] == os.cpu_count() and start["machine"]["cpu"]
    provenance.write_text('{"starts": [{"code_version": "31b9709a428c"}]}')  # an older run
    assert stored_state(tmp_path / "run", config) == (
        "stale",
        "start 1 of it records no results version",
    )


def _reward_tasks_drawn(config) -> int:
    """How many clean reward-split tasks a run of ``config`` draws, counted as it trains."""
    from metasched.training.trainer import Trainer

    trainer = Trainer(config, Path(tempfile.mkdtemp()) / "run")
    sampler = trainer.parts.samplers["reward"]
    draws = []
    original = sampler.sample
    sampler.sample = lambda *args, **kwargs: draws.append(1) or original(*args, **kwargs)
    while trainer.state.updates < config.train.iterations:
        trainer.train_step()
        trainer.state.iteration += 1
    return len(draws)


def test_the_uniform_reward_control_draws_as_many_reward_tasks_as_ats(glyphs) -> None:
    """Observed in two runs: the control trains on as many clean reward tasks as ATS draws to
    compute its rewards over its warm-up and its updates."""
    settings = [*TINY, "train.iterations=5", "scheduler.ats.warmup=3", "scheduler.pool_size=4"]
    base = load_config("glyphs-noisy", settings)
    ats = _reward_tasks_drawn(load_config("glyphs-noisy", [*settings, "scheduler.name=ats"]))
    control = load_config("glyphs-noisy", [*settings, *method_overrides("uniform-reward", base)])
    assert ats > 0 and _reward_tasks_drawn(control) == ats


def test_methods_and_controls_are_what_they_say() -> None:
    base = load_config("glyphs-noisy")
    assert "train.iterations=2500" in method_overrides("uniform-x5", base)
    assert "scheduler.ats.inputs=[loss, progress]" in method_overrides("ats-loss", base)
    with pytest.raises(MetaschedError, match="unknown method 'nope'"):
        method_overrides("nope", base)


def test_method_names_compose() -> None:
    """A pool size and a decayed rate apply to any method, a variant of a scheduler too."""
    base = load_config("glyphs-noisy")

    def config(method: str) -> Config:
        return load_config("glyphs-noisy", method_overrides(method, base))

    lite, composed = config("ats-lite"), config("ats-lite-p8+cosine")
    assert composed.scheduler.name == "ats" and composed.scheduler.pool_size == 8
    assert composed.train.lr_schedule == "cosine" and base.scheduler.pool_size != 8
    assert composed.scheduler.gradient_layers == lite.scheduler.gradient_layers == "last"
    greedy = config("greedy-p4")
    assert (greedy.scheduler.name, greedy.scheduler.pool_size) == ("greedy", 4)
    assert greedy.train.lr_schedule == "constant"


def test_compare_cli_rejects_an_unknown_method(tmp_path, capsys) -> None:
    args = ["compare", "--config", "glyphs-noisy", "--schedulers", "uniform,nope"]
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    missing = tmp_path / "missing"
    assert main([*args, "--out", str(missing), "--tables-only"]) == 2
    assert "is not a directory; --tables-only reads" in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_killed_compare_stops_its_workers(tmp_path, glyphs, signal_name) -> None:
    """`kill` (or `kill -9`) on compare must not leave its workers training on, orphaned."""
    long = [*TINY, "train.iterations=100000", "train.checkpoint_every=100000"]
    command = [sys.executable, "-m", "metasched.cli", "compare", "--config", "glyphs-noisy"]
    command += ["--schedulers", "uniform", "--seeds", "2", "--workers", "2", "--out", str(tmp_path)]
    command += [f"--set={o}" for o in long]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"uniform-seed{s}" / "config.yaml").is_file() for s in (0, 1)):
        assert process.poll() is None and time.monotonic() < deadline, "the runs did not start"
        time.sleep(0.5)
    children = subprocess.run(
        ["pgrep", "-P", str(process.pid), "-f", "spawn_main"], capture_output=True, text=True
    )
    workers = children.stdout.split()
    assert len(workers) == 2
    process.send_signal(getattr(signal, signal_name))
    assert process.wait(timeout=60) != 0
    deadline = time.monotonic() + 30
    alive = [int(pid) for pid in workers]
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.2)
    for pid in alive:  # do not leave them running beside the other tests
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers {alive} survived their comparison"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_compare_at_equal_compute_stops_each_method_at_each_budget(tmp_path, glyphs) -> None:
    """Budgets 1x and 2x of the 6-update uniform run, costs given (no timing): uniform runs once
    to 12 updates and is tested at 6 too; its cosine twin once per budget, decayed to it.
    Gated (2 uniform iterations per measured update, 1 per light one), with costs measured as
    fixed, is planned at 3 and 6 updates and falls short of its budgets (the table says what it
    spent); with costs measured as varying (gated-p5) it runs until it has spent each budget."""
    import json

    costs = {
        "uniform": {"step": 1.0},
        "uniform+cosine": {"step": 1.0},
        "gated": {"step": 2.0, "light": 1.0},
        "gated-p5": {"step": 2.0, "light": 1.0, "varies": True},
        "oracle+cosine": {"step": 1.0},
    }
    (tmp_path / "costs.json").write_text(json.dumps({"methods": costs}))
    extra = ["scheduler.pool_size=4", "scheduler.gated.candidate_cost=10"]  # off: mostly light
    table, _ = run_comparison(
        "glyphs-noisy", list(costs), [0], tmp_path, [*TINY, *extra], budgets=[1.0, 2.0],
        say=lambda _: None,
    )  # fmt: skip
    assert "| uniform+cosine |" in table and "| gated |" in table
    stored = {d.name: load_config(d / "config.yaml") for d in tmp_path.iterdir() if d.is_dir()}
    assert stored["uniform-seed0"].train.iterations == 12
    assert stored["uniform-seed0"].train.test_at == [6]
    assert stored["uniform+cosine-1x-seed0"].train.iterations == 6
    assert stored["uniform+cosine-2x-seed0"].train.iterations == 12
    assert stored["gated-seed0"].train.iterations == 6
    assert stored["gated-seed0"].train.test_at == [3]
    with open(tmp_path / "budgets.csv") as handle:
        rows = {(r["method"], float(r["budget"])): r for r in csv.DictReader(handle)}
    assert float(rows[("uniform", 2.0)]["cost"]) == 12.0
    assert float(rows[("uniform+cosine", 1.0)]["cost"]) == 6.0
    spent = float(rows[("gated", 2.0)]["cost"])
    assert 6.0 < spent < 12.0  # its first iteration measured (2), its light ones cost 1 each
    gated_cell = next(line for line in table.splitlines() if line.startswith("| gated |"))
    assert f"(1) spent {spent / 6:.2g}x" in gated_cell.split("|")[3]  # the 2x column
    assert "spent" not in next(
        line for line in table.splitlines() if line.startswith("| uniform |")
    )
    assert stored["gated-p5-seed0"].train.budget.total == 12.0
    assert stored["gated-p5-seed0"].train.budget.test_at == [6.0]
    by_compute = [float(rows[("gated-p5", b)]["cost"]) for b in (1.0, 2.0)]
    assert 6.0 <= by_compute[0] < 8.0 and 12.0 <= by_compute[1] < 14.0  # within one iteration
    assert int(rows[("gated-p5", 2.0)]["meta_updates"]) > 6  # its light iterations bought more
    peaks = (tmp_path / "budgets.md").read_text().split("peaked on validation:")[1]
    uniform_row = next(line for line in peaks.splitlines() if line.startswith("| uniform |"))
    assert "| 2.0x |" in uniform_row  # its run ends at 12 of 6 uniform iterations
    assert f"| {spent / 6:.1f}x |" in next(
        line for line in peaks.splitlines() if line.startswith("| gated |")
    )
    # A study made by several comparisons gets one table of them all: --tables-only runs
    # nothing, reads the finished runs and names the rest.
    before = {d.name: (d / "metrics.jsonl").stat().st_mtime_ns for d in stored_dirs(tmp_path)}
    said: list[str] = []
    table, _ = run_comparison(
        "glyphs-noisy", ["uniform", "uniform+cosine", "oracle"], [0, 1], tmp_path,
        [*TINY, *extra], budgets=[1.0, 2.0], say=said.append, tables_only=True,
    )  # fmt: skip
    assert "| gated |" not in table and "| uniform+cosine |" in table
    with open(tmp_path / "budgets.csv", newline="") as handle:
        again = {(r["method"], float(r["budget"])): r for r in csv.DictReader(handle)}
    assert again[("uniform", 2.0)] == rows[("uniform", 2.0)]  # the same run, read again
    assert ("gated", 2.0) not in again
    assert "oracle: no measured cost" in " ".join(said)
    assert "uniform-seed1: not run yet; left out of the tables" in said
    after = {d.name: (d / "metrics.jsonl").stat().st_mtime_ns for d in stored_dirs(tmp_path)}
    assert after == before  # nothing ran, nothing was set aside
    # A decayed method whose 2x run has not finished is waiting for it, not out of reach.
    shutil.rmtree(tmp_path / "oracle+cosine-2x-seed0")
    table, _ = run_comparison(
        "glyphs-noisy", ["uniform+cosine", "oracle+cosine"], [0], tmp_path, [*TINY, *extra],
        budgets=[1.0, 2.0], say=said.append, tables_only=True,
    )  # fmt: skip
    assert "- oracle+cosine: undecided, under two paired seeds at 1x, 2x" in table
    with pytest.raises(MetaschedError, match="no run of these methods"):
        run_comparison(
            "glyphs-noisy", ["uniform"], [0], tmp_path, TINY, budgets=[1.0], say=said.append,
            tables_only=True,
        )  # fmt: skip


def stored_dirs(out: Path) -> list[Path]:
    """The run directories of a comparison."""
    return [d for d in out.iterdir() if (d / "config.yaml").is_file()]


def test_a_run_whose_warm_start_changed_is_not_reused(tmp_path, glyphs) -> None:
    """A warm start rewritten at the same path (a pre-training run again) makes the runs
    made from it stale; a run that recorded no warm start (made before runs did) is kept."""
    import shutil

    from metasched.compare import stored_state
    from metasched.training.trainer import Trainer

    tiny = [*TINY, "scheduler.name=uniform", "train.iterations=2"]
    for name, seed in (("first", 0), ("second", 1)):
        config = load_config("glyphs-noisy", [*tiny, f"seed={seed}"])
        Trainer.create(config, tmp_path / name).fit(progress=False)
    warm = tmp_path / "warm.pt"
    shutil.copy(tmp_path / "first" / "last.pt", warm)
    config = load_config("glyphs-noisy", [*tiny, f"train.init_from={warm}"])
    Trainer.create(config, tmp_path / "run").fit(progress=False)
    assert stored_state(tmp_path / "run", config) == ("done", "")

    shutil.copy(tmp_path / "second" / "last.pt", warm)
    assert stored_state(tmp_path / "run", config) == (
        "stale",
        f"its warm start {warm} has changed since it began",
    )
    provenance = tmp_path / "run" / "provenance.json"
    history = json.loads(provenance.read_text())
    for start in history["starts"]:
        del start["warm_start"]
    provenance.write_text(json.dumps(history))
    assert stored_state(tmp_path / "run", config) == ("done", "")


def test_every_method_under_a_budget_validates_at_the_presets_interval_of_compute(
    tmp_path,
) -> None:
    """uniform-x<k> stretches its own validation interval k times; under --budget it is
    validated as often as every other method of its cost."""
    from metasched.compare.budgets import budget_jobs
    from metasched.compare.methods import build_jobs
    from metasched.training.cost import IterationCost

    jobs = build_jobs("glyphs-noisy", ["uniform", "uniform-x5", "greedy"], [0], tmp_path, [])
    costs = {"uniform": IterationCost(1.0), "uniform-x5": IterationCost(1.0),
             "greedy": IterationCost(2.0)}  # fmt: skip
    preset = load_config("glyphs-noisy").train
    planned = {p.job.method: p.job.config.train for p in budget_jobs(jobs, [1, 3], preset, costs)}
    assert planned["uniform"].val_every == planned["uniform-x5"].val_every == preset.val_every
    assert planned["greedy"].val_every == preset.val_every // 2
    assert (
        planned["uniform-x5"].iterations == planned["uniform"].iterations == 3 * preset.iterations
    )


def test_a_budget_is_scored_by_the_best_checkpoint_within_it(tmp_path) -> None:
    """A constant-rate run answers for a smaller budget with the test score of its best
    checkpoint up to that budget (its milestone's ``score_best``), not with its overall best,
    which it may reach later; its largest budget with the run's own best."""
    from metasched.compare.budget_report import budget_values
    from metasched.compare.budgets import BudgetJob
    from metasched.compare.methods import Job
    from metasched.training.cost import IterationCost

    run = tmp_path / "uniform-seed0"
    run.mkdir()
    records = [{"kind": "train", "iteration": i, "phase": "train"} for i in range(1, 31)]
    records += [
        {"kind": "milestone", "iteration": 10, "updates": 10, "score_best": 0.70},
        {"kind": "milestone", "iteration": 20, "updates": 20, "score_best": 0.75},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"best": {"score": 0.90}, "final": {"score": 0.85}, "train_seconds": 60.0}
    (run / "summary.json").write_text(json.dumps(summary))
    job = Job("uniform", 0, load_config("glyphs-noisy"), run)
    planned = [BudgetJob(job, {1.0: 10, 3.0: 20, 10.0: 30})]
    values = budget_values(planned, {"uniform": IterationCost(1.0)})
    assert [(v.budget, v.score, v.steps, v.cost) for v in values] == [
        (1.0, 0.70, 10, 10.0),
        (3.0, 0.75, 20, 20.0),
        (10.0, 0.90, 30, 30.0),
    ]


def test_the_wall_time_table_gives_minutes_to_each_budget_and_the_machines_recorded(
    tmp_path,
) -> None:
    """Minutes to a smaller budget come from the validation at its milestone, to the largest
    from the whole run (training and test), mean over seeds; the machine column names each
    CPU with its highest load at a start, and says "not recorded" for a start without one."""
    from metasched.compare.budget_report import budget_values, wall_table
    from metasched.compare.budgets import BudgetJob
    from metasched.compare.methods import Job
    from metasched.training.cost import IterationCost

    planned = []
    for seed, (middle, train, machines) in enumerate(
        [
            (120.0, 540.0, [{"cpu": "AMD EPYC", "load": 2.8}, {"cpu": "AMD EPYC", "load": 1.0}]),
            (240.0, 600.0, [{"cpu": "Intel Xeon", "load": 0.5}, {}]),
        ]
    ):
        run = tmp_path / f"uniform-seed{seed}"
        run.mkdir()
        records = [{"kind": "train", "iteration": i, "phase": "train"} for i in range(1, 21)]
        records += [
            {"kind": "val", "iteration": 10, "score": 0.7, "wall_seconds": middle},
            {"kind": "milestone", "iteration": 10, "updates": 10, "score_best": 0.70},
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        summary = {"best": {"score": 0.9}, "train_seconds": train, "test_seconds": 60.0}
        (run / "summary.json").write_text(json.dumps(summary))
        starts = [{"machine": m} if m else {} for m in machines]
        (run / "provenance.json").write_text(json.dumps({"starts": starts}))
        job = Job("uniform", seed, load_config("glyphs-noisy"), run)
        planned.append(BudgetJob(job, {1.0: 10, 2.0: 20}))
    values = budget_values(planned, {"uniform": IterationCost(1.0)})
    row = wall_table(values, [1.0, 2.0], planned).splitlines()[-1]
    assert row == (
        "| uniform | 3.0 min | 10.5 min |"
        " AMD EPYC (load up to 2.8), Intel Xeon (load up to 0.5), not recorded |"
    )


def test_a_compute_budget_run_without_a_milestone_at_a_budget_gives_no_score_there(
    tmp_path,
) -> None:
    """A run stopped by its compute (``train.budget``) answers for a smaller budget only with
    the milestone it wrote on crossing it: with that record missing it gives no score there,
    rather than its final best, reached beyond the budget; its own end still counts."""
    from metasched.compare.budget_report import budget_values
    from metasched.compare.budgets import BudgetJob
    from metasched.compare.methods import Job
    from metasched.config import config_from_dict
    from metasched.training.cost import IterationCost

    run = tmp_path / "gated-seed0"
    run.mkdir()
    records = [{"kind": "train", "iteration": i, "phase": "train"} for i in range(1, 31)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"best": {"score": 0.90}, "final": {"score": 0.85}, "train_seconds": 60.0}
    (run / "summary.json").write_text(json.dumps(summary))
    values = load_config("glyphs-noisy").to_dict()
    values["train"]["budget"] = {"total": 30.0, "step": 1.0, "light": 1.0, "test_at": [10.0]}
    job = Job("gated", 0, config_from_dict(values, []), run)
    planned = [BudgetJob(job, {1.0: 10, 3.0: 30})]
    scored = budget_values(planned, {"gated": IterationCost(1.0)})
    assert [(v.budget, v.score) for v in scored] == [(3.0, 0.90)]


def test_the_budget_table_pairs_each_method_with_the_reference_by_seed() -> None:
    """Differences are taken seed by seed: three seeds whose scores differ by +3, +1 and +3
    points give +2.33 ± 2.87 (t with 2 degrees of freedom: 4.303 x 1.155 / √3), ahead on 3
    of 3; a seed the reference lacks is left out."""
    from metasched.compare.budget_report import BudgetValue, budget_table

    def value(method: str, seed: int, score: float) -> BudgetValue:
        return BudgetValue(method, seed, 1.0, score, 500, 500.0, 1.0)

    values = [value("uniform+cosine", s, x) for s, x in enumerate([0.90, 0.91, 0.92])]
    values += [value("amortised", s, x) for s, x in enumerate([0.93, 0.92, 0.95, 0.99])]
    table = budget_table(values, [1.0], True, "uniform+cosine", 500)
    assert "| amortised | +2.33 ± 2.87 (3/3) |" in table


def test_the_budget_table_marks_the_best_mean_among_the_methods_with_most_seeds() -> None:
    """One seed at 99% is not marked above three seeds at 93%: bold goes to the best mean among
    the methods with the most seeds at that budget."""
    from metasched.compare.budget_report import BudgetValue, budget_table

    values = [BudgetValue("uniform+cosine", s, 1.0, 0.90, 1, 1.0, 1.0) for s in range(3)]
    values += [BudgetValue("amortised", s, 1.0, 0.93, 1, 1.0, 1.0) for s in range(3)]
    values.append(BudgetValue("lonely", 0, 1.0, 0.99, 1, 1.0, 1.0))
    rows = {
        line.split(" | ")[0]: line
        for line in budget_table(values, [1.0], True, None, 1).splitlines()
    }
    assert "**93.00" in rows["| amortised"]
    assert "**" not in rows["| lonely"] and "**" not in rows["| uniform+cosine"]


def test_the_verdict_judges_each_method_by_paired_intervals_at_every_budget() -> None:
    """Against a reference at 1x and 30x (seeds 1, 2, 3, listed out of order):
    - "winner", 2 to 3 points ahead at both, meets the goal;
    - "slow", clearly behind at 1x, fails it there whatever it does at 30x;
    - "sloppy" is behind at 1x in every seed, but the t interval of -3.0, -0.1, -2.0 includes
      zero: it fails on the mean, said as such;
    - "lucky" is ahead at 30x in every seed by 0.1, 5.0 and 0.2 points: its t interval
      (+1.77 ± 6.96) includes zero, so it is not ahead;
    - "late" has no model at 1x (a warm-up longer than the budget): it fails;
    - "lonely", one seed far ahead, is undecided and is not named best over three seeds;
    - seed 0 of a method, which the reference lacks, is not paired."""
    from metasched.compare.budget_report import BudgetValue, verdict

    reference = {1.0: {3: 0.92, 1: 0.90, 2: 0.91}, 30.0: {2: 0.96, 3: 0.97, 1: 0.95}}
    offsets = {
        "winner": {1.0: [0.02, 0.03, 0.02], 30.0: [0.03, 0.02, 0.03]},
        "slow": {1.0: [-0.05, -0.06, -0.05], 30.0: [0.03, 0.03, 0.04]},
        "sloppy": {1.0: [-0.030, -0.001, -0.020], 30.0: [0.03, 0.02, 0.03]},
        "lucky": {1.0: [0.001, 0.002, 0.001], 30.0: [0.001, 0.050, 0.002]},
        "late": {30.0: [0.03, 0.02, 0.03]},
    }
    values = [
        BudgetValue("uniform+cosine", seed, b, x, 1, 1.0, 1.0)
        for b, xs in reference.items()
        for seed, x in xs.items()
    ]
    for method, by_budget in offsets.items():
        for b, ds in by_budget.items():
            values += [
                BudgetValue(method, seed, b, reference[b][seed] + d, 1, 1.0, 1.0)
                for seed, d in zip([1, 2, 3], ds)
            ]
            values.append(BudgetValue(method, 0, b, 0.0, 1, 1.0, 1.0))  # no reference seed 0
    values += [BudgetValue("lonely", 1, b, 0.999, 1, 1.0, 1.0) for b in reference]
    reachable = {m: {1.0, 30.0} for m in [*offsets, "lonely"]} | {"late": {30.0}}
    text = verdict(values, [1.0, 30.0], "uniform+cosine", True, reachable)
    lines = text.splitlines()
    assert "| 1x | winner (3 seeds) | winner | slow |" in lines
    assert "| 30x | slow (3 seeds) | winner, slow, sloppy, late | – |" in lines
    assert "- winner: meets it; at 30x +2.67 ± 1.43 (3/3)" in lines
    assert "- slow: fails it, behind at 1x (its interval excludes zero)" in lines
    assert "- sloppy: fails it, behind at 1x (on the mean)" in lines
    assert "- lucky: fails it, not ahead at 30x; at 30x +1.77 ± 6.96 (3/3)" in lines
    assert "- late: fails it, no model at 1x (its warm-up outlasts it)" in lines
    assert "- lonely: undecided, under two paired seeds at 1x, 30x" in lines


def test_the_paired_table_prints_small_r2_differences_with_three_decimals() -> None:
    """Scores that are not percentages (R²) differ by thousandths: 0.004, 0.006 and 0.0045
    print as +0.005, not as +0.00."""
    from metasched.compare.budget_report import BudgetValue, budget_table

    values = [BudgetValue("uniform+cosine", s, 1.0, 0.3, 1, 1.0, 1.0) for s in range(3)]
    values += [
        BudgetValue("greedy", s, 1.0, 0.3 + d, 1, 1.0, 1.0)
        for s, d in enumerate([0.004, 0.006, 0.0045])
    ]
    table = budget_table(values, [1.0], False, "uniform+cosine", 500)
    assert "| greedy | +0.005 ± 0.003 (3/3) |" in table
