"""What a comparison runs: methods (schedulers, named variants, controls and baselines) as
config overrides, and the jobs of every method and seed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metasched.config import LR_SCHEDULES, Config, config_from_dict, load_config, read_config_file
from metasched.errors import MetaschedError
from metasched.schedulers import SCHEDULERS
from metasched.training.baselines import BASELINES

#: Named variants: a scheduler plus overrides.
VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "ats-loss": ("ats", ["scheduler.ats.inputs=[loss, progress]"], "ATS reading the loss only"),
    "ats-gradients": (
        "ats",
        ["scheduler.ats.inputs=[gradients, progress]"],
        "ATS reading the gradient similarity only",
    ),
    "ats-noprogress": ("ats", ["scheduler.ats.inputs=[loss, gradients]"], "ATS without progress"),
    "ats-faithful": (
        "ats",
        [
            "scheduler.ats.faithful=true",
            "scheduler.ats.lookahead_lr=0.01",
            "task.reward_split=train-16",
        ],
        "the reference code's ATS (network, reward, reward tasks from training classes 0..15)",
    ),
    "ats-lite": ("ats", ["scheduler.gradient_layers=last"], "ATS on the last layers' gradients"),
    "ats-bf16": ("ats", ["scheduler.pool_precision=bf16"], "ATS measuring the pool in bfloat16"),
    "bass-centred": ("bass", ["scheduler.bass.centred=true"], "BASS with centred contexts"),
    "agreement-last": (
        "agreement",
        ["scheduler.gradient_layers=last"],
        "gradient agreement of the last backbone layer and the head only",
    ),
    "bass-val": (
        "bass",
        ["scheduler.bass.reward_source=reward"],
        "BASS rewarded on clean reward-split tasks",
    ),
}
PATTERNS = (
    "forest: a random forest fitted on each test task's support alone (assay data only)",
    "uniform-reward: uniform sampling plus clean reward-split tasks at the rate ATS draws them",
    "uniform-x<k>: uniform sampling with k times the meta-updates (and validation interval)",
    "<method>+cosine, <method>+linear: the method with its meta-learning rate decayed to zero",
    "<method>-p<k>: the method with a pool of k candidates",
)
PRETRAIN_SECTIONS = ("data", "model", "learner")
PRETRAIN_TASK_KEYS = ("n_way", "k_shot", "q_query")


@dataclass(frozen=True)
class Job:
    """One run of a comparison: a method's meta-training run, or a baseline that trains
    nothing (``baseline``: its name in :data:`metasched.training.baselines.BASELINES`)."""

    method: str
    seed: int
    config: Config
    run_dir: Path
    baseline: str | None = None

    def payload(self, threads: int) -> JobPayload:
        """What a worker process needs to run the job (plain values only)."""
        return (self.config.to_dict(), str(self.run_dir), threads, self.baseline)


#: (config values, run directory, torch threads, baseline or None).
JobPayload = tuple[dict[str, Any], str, int, str | None]


def method_overrides(method: str, base: Config) -> list[str]:
    """The overrides that turn the base config into ``method``'s runs. ``<method>+cosine``
    (or ``+linear``) is the method with its meta-learning rate decayed to zero over its run."""
    name, plus, schedule = method.partition("+")
    if plus:
        if schedule not in LR_SCHEDULES or schedule == "constant":
            decayed = [s for s in LR_SCHEDULES if s != "constant"]
            raise MetaschedError(
                f"method {method!r}: {schedule!r} is not a decaying schedule; use"
                f" {' or '.join(f'{name}+{s}' for s in decayed)}"
            )
        return [*method_overrides(name, base), f"train.lr_schedule={schedule}"]
    if method in VARIANTS:
        name, extra, _ = VARIANTS[method]
        return [f"scheduler.name={name}", *extra]
    if method in BASELINES:
        return ["scheduler.name=uniform"]  # no meta-training: only the test tasks matter
    if method == "uniform-reward":
        rate = reward_task_rate(base)
        return ["scheduler.name=uniform", f"train.reward_tasks_per_update={rate}"]
    pool = re.fullmatch(r"(.+)-p(\d+)", method)
    if pool:
        return [*method_overrides(pool.group(1), base), f"scheduler.pool_size={pool.group(2)}"]
    match = re.fullmatch(r"uniform-x(\d+)", method)
    if match:
        k = int(match.group(1))
        train = base.train
        return [
            "scheduler.name=uniform",
            f"train.iterations={train.iterations * k}",
            f"train.val_every={train.val_every * k}",
            f"train.checkpoint_every={train.checkpoint_every * k}",
        ]
    if method in SCHEDULERS:
        return [f"scheduler.name={method}"]
    known = [*SCHEDULERS, *VARIANTS, *BASELINES, "uniform-reward", "uniform-x<k>", "<any>+cosine",
             "<any>-p<k>"]  # fmt: skip
    raise MetaschedError(f"unknown method {method!r} for compare; use one of {', '.join(known)}")


#: The ends of the gap a scheduler's gain is read on: no selection, and perfect selection.
GAP_ENDS = ("uniform", "oracle")


def reference_method(methods: list[str]) -> str | None:
    """The baseline every method is paired with under a budget: decayed uniform sampling if
    it runs, else uniform sampling."""
    for name in ("uniform+cosine", "uniform+linear", "uniform"):
        if name in methods:
            return name
    return None


def reward_task_rate(base: Config) -> float:
    """Clean reward tasks ATS draws per meta-update in the base config: R (W + I) / I."""
    ats = base.scheduler.options.get("ats") or SCHEDULERS["ats"].Options()
    per_iteration = ats.reward_tasks or base.train.meta_batch_size
    iterations = base.train.iterations
    return per_iteration * (ats.warmup + iterations) / iterations


def build_jobs(
    preset: str, methods: list[str], seeds: list[int], out: Path, overrides: list[str]
) -> list[Job]:
    """The runs of a comparison, their configs checked before anything runs."""
    base = load_config(preset, overrides)
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise MetaschedError(
            f"--schedulers names {', '.join(repeated)} twice; list each method once (seeds"
            " come from --seeds)"
        )
    jobs = []
    for method in methods:
        extra = method_overrides(method, base)
        config = load_config(preset, [*overrides, *extra])
        scheduler = SCHEDULERS[config.scheduler.name]
        if not scheduler.needs_larger_pool:  # its draw is uniform: a bigger pool only costs
            config = load_config(
                preset,
                [*overrides, *extra, f"scheduler.pool_size={config.train.meta_batch_size}"],
            )
        for seed in seeds:
            seeded = config_from_dict(config.to_dict(), [f"seed={seed}"])
            baseline = method if method in BASELINES else None
            jobs.append(Job(method, seed, seeded, out / f"{method}-seed{seed}", baseline))
    return jobs


def pretrain_config(preset: str, main: Config) -> Config:
    """The warm start's config: ``preset`` with the main config's data, model, learner and
    task shape, so its checkpoint fits every run."""
    main_values = main.to_dict()
    values = read_config_file(preset)
    for section in PRETRAIN_SECTIONS:
        values[section] = main_values[section]
    task = dict(values.get("task") or {})
    task.update({k: main_values["task"][k] for k in PRETRAIN_TASK_KEYS})
    values["task"] = task
    values["seed"] = main.seed
    return config_from_dict(values)
