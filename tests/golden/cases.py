"""The golden runs: a few iterations of every scheduler in both domains, each learner, and
two ranks, small enough that all of them replay in under a minute on one core."""

from __future__ import annotations

from dataclasses import dataclass, field

from metasched.schedulers import SCHEDULERS

IMAGE_SETTINGS = {
    "model.filters": 8,
    "task.q_query": 3,
    "task.noise_ratio": 0.5,
    "learner.inner_steps": 2,
    "learner.eval_inner_steps": 2,
    "scheduler.pool_size": 4,
    "scheduler.ats.warmup": 1,
    "scheduler.bass.train_every": 1,
    "scheduler.bass.hidden": 8,
    "scheduler.bass.max_updates": 20,
    "scheduler.bass.reward_tasks": 2,
    "train.iterations": 3,
    "train.meta_batch_size": 2,
    "train.val_every": 2,
    "train.val_tasks": 3,
    "train.test_tasks": 3,
    "train.checkpoint_every": 2,
    "train.device": "cpu",
}
ASSAY_SETTINGS = {
    **{k: v for k, v in IMAGE_SETTINGS.items() if not k.startswith(("model.", "task."))},
    "model.hidden": 16,
    "task.noise_ratio": 0.5,
    "task.assays.noise_std": 1.0,
    "task.assays.query_cap": 8,
    "task.assays.min_query": 8,
    "scheduler.ats.lookahead_lr": 0.01,
    "learner.inner_lr": 0.01,  # the goldens' values, whatever drug-demo's learner is
    "learner.kernel": "rbf",
}


@dataclass(frozen=True)
class Case:
    """One golden run: a preset, overrides, and the number of processes it runs on."""

    preset: str
    settings: dict[str, object] = field(default_factory=dict)
    ranks: int = 1

    def overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.settings.items()]


def _cases() -> dict[str, Case]:
    cases = {}
    for name in SCHEDULERS:
        cases[f"images-{name}"] = Case("glyphs-5w1s", {**IMAGE_SETTINGS, "scheduler.name": name})
        if name != "gcp":  # class pairs: images only
            cases[f"assays-{name}"] = Case(
                "drug-demo",
                {**ASSAY_SETTINGS, "learner.algorithm": "anil", "scheduler.name": name},
            )
    cases["images-maml"] = Case("glyphs-5w1s", {**IMAGE_SETTINGS, "learner.algorithm": "maml"})
    cases["images-fomaml-uniform-reward"] = Case(
        "glyphs-5w1s",
        {
            **IMAGE_SETTINGS,
            "learner.algorithm": "maml",
            "learner.first_order": True,
            "train.reward_tasks_per_update": 0.5,
        },
    )
    cases["images-ats-faithful"] = Case(
        "glyphs-5w1s",
        {
            **IMAGE_SETTINGS,
            "scheduler.name": "ats",
            "scheduler.ats.faithful": True,
            "task.reward_split": "train-16",
        },
    )
    cases["images-ats-skip"] = Case(
        "glyphs-5w1s",
        {**IMAGE_SETTINGS, "scheduler.name": "ats", "train.on_nonfinite": "skip"},
    )
    cases["images-cosine-test-at"] = Case(
        "glyphs-5w1s",
        {**IMAGE_SETTINGS, "train.lr_schedule": "cosine", "train.test_at": "[1]"},
    )
    cases["assays-ridge"] = Case("drug-demo", {**ASSAY_SETTINGS, "learner.algorithm": "ridge"})
    cases["assays-maml"] = Case("drug-demo", {**ASSAY_SETTINGS, "learner.algorithm": "maml"})
    cases["assays-gp-ats"] = Case(
        "drug-demo",
        {
            **ASSAY_SETTINGS,
            "learner.algorithm": "gp",
            "learner.kernel": "fingerprints+rbf",
            "learner.inner_steps": 1,
            "learner.eval_inner_steps": 1,
            "scheduler.name": "ats",
        },
    )
    cases["images-ats-2ranks"] = Case(
        "glyphs-5w1s", {**IMAGE_SETTINGS, "scheduler.name": "ats", "scheduler.pool_size": 5}, 2
    )
    cases["assays-uniform-2ranks"] = Case(
        "drug-demo", {**ASSAY_SETTINGS, "learner.algorithm": "anil"}, 2
    )
    return cases


#: Every golden run by name.
CASES = _cases()

#: Cases recorded on one CPU vendor's machines and not yet on another's (by vendor): a missing
#: record must be listed here to be left unchecked, so that it is a decision, not an accident.
#: Record them on such a machine with ``python -m tests.golden.replay --update NAME``.
AWAITING_RECORD: dict[str, set[str]] = {
    "GenuineIntel": {"images-gated", "assays-gated", "images-proxy", "assays-proxy"}
}
