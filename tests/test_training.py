"""The trainer: learning happens, checkpoints resume exactly, interruptions lose nothing."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from metasched.cli import main
from metasched.config import load_config
from metasched.errors import MetaschedError, TrainingInterrupted
from metasched.schedulers import SCHEDULERS
from metasched.training import checkpoint as checkpoint_module
from metasched.training.checkpoint import load_checkpoint
from metasched.training.metrics import read_metrics, without_wall_clock
from metasched.training.trainer import Trainer

from .conftest import crash_at, tiny_overrides


def _records(run_dir, kinds=("train", "val")):
    return [
        without_wall_clock(r) for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] in kinds
    ]


def test_tiny_run_learns_well_above_chance(tmp_path, glyphs) -> None:
    config = load_config("glyphs-5w1s", tiny_overrides(**{"train.iterations": 40}))
    summary = Trainer.create(config, tmp_path / "run").fit(progress=False)
    assert summary["final"]["score"] > 0.2 + 0.3  # 5-way chance is 0.2
    first_val = _records(tmp_path / "run", ("val",))[0]["score"]
    assert summary["best"]["score"] >= first_val - 0.1
    for name in ("summary.json", "test_tasks.csv", "best.pt", "last.pt", "config.yaml"):
        assert (tmp_path / "run" / name).exists()


def test_predict_on_image_folders_equals_the_learner(tmp_path, glyphs, capsys) -> None:
    """The predictions are the learner's; images of the opposite polarity (dark ink on white,
    as Omniglot's files) are inverted, with a line saying so, and predicted the same."""
    from PIL import Image

    from metasched.cli import main
    from metasched.tasks import Episode
    from metasched.training.checkpoint import load_checkpoint

    config = load_config("glyphs-5w1s", tiny_overrides(**{"train.iterations": 10}))
    run = tmp_path / "run"
    Trainer.create(config, run).fit(progress=False)
    pool = glyphs.test
    support, query = tmp_path / "support", tmp_path / "query"
    for c in range(5):  # 5 classes, 2 support images each; the query: the third of each
        for folder, ink in (("", lambda x: x), ("inverted-", lambda x: 255 - x)):
            (tmp_path / f"{folder}support" / f"glyph{c}").mkdir(parents=True)
            (tmp_path / f"{folder}query").mkdir(exist_ok=True)
            for i in range(2):
                Image.fromarray(ink(pool.class_images(c)[i, 0])).save(
                    tmp_path / f"{folder}support" / f"glyph{c}" / f"{i}.png"
                )
            Image.fromarray(ink(pool.class_images(c)[2, 0])).save(
                tmp_path / f"{folder}query" / f"q{c}.png"
            )
    out, flipped = tmp_path / "predictions.csv", tmp_path / "inverted.csv"
    assert main(["predict", str(run), "--support", str(support), "--query", str(query),
                 "--out", str(out)]) == 0  # fmt: skip
    assert "inverted" not in capsys.readouterr().err
    inverted = ["--support", str(tmp_path / "inverted-support"), "--query",
                str(tmp_path / "inverted-query")]  # fmt: skip
    assert main(["predict", str(run), *inverted, "--out", str(flipped)]) == 0
    assert "light background and the training images a dark one" in capsys.readouterr().err
    assert flipped.read_text() == out.read_text()
    legacy = load_checkpoint(run / "best.pt")  # from before profiles: the data is read instead
    del legacy["inputs"]
    checkpoint_module.save_checkpoint(run / "best.pt", legacy)
    assert main(["predict", str(run), *inverted, "--out", str(flipped), "--force"]) == 0
    assert "inverted them" in capsys.readouterr().err and flipped.read_text() == out.read_text()
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert rows[0] == ["image", "predicted_class", "probability"] and len(rows) == 6
    trainer = Trainer.resume(run)
    trainer.parts.model.load_state_dict(load_checkpoint(run / "best.pt")["model"])
    learner = trainer.parts.learner
    images = [pool.class_images(c)[:3] for c in range(5)]
    as_float = [torch.from_numpy(np.array(x)).float() / 255 for x in images]
    episode = Episode(
        torch.cat([x[:2] for x in as_float]),
        torch.arange(5).repeat_interleave(2),
        torch.stack([x[2] for x in as_float]),
        torch.arange(5),
    )
    expected = learner.predict(learner.parameters(), episode).argmax(-1)
    assert [row[1] for row in rows[1:]] == [f"glyph{int(c)}" for c in expected]


# Settings that make each scheduler's own machinery run within a few tiny iterations.
SCHEDULER_EXTRAS = {
    "ats": {"scheduler.ats.warmup": 6},
    "bass": {"scheduler.bass.train_every": 3, "scheduler.bass.max_updates": 20},
    # selection never pays at this cost: off, measuring one pool in three (both modes)
    "gated": {"scheduler.gated.candidate_cost": 10, "scheduler.gated.check_every": 3},
}


def _same_state(a, b) -> bool:
    """Nested checkpoint contents equal, tensors exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize(
    ("algorithm", "scheduler"),
    [("maml", "uniform"), *(("anil", name) for name in SCHEDULERS)],
)
def test_resume_reproduces_the_uninterrupted_run_exactly(
    tmp_path, glyphs, algorithm: str, scheduler: str
) -> None:
    """Every scheduler: a crash after a checkpoint and --resume give the uninterrupted run's
    records, model and scheduler state, exactly."""
    overrides = tiny_overrides(
        **{
            "learner.algorithm": algorithm,
            "learner.inner_steps": 2,
            "learner.eval_inner_steps": 2,
            "train.val_tasks": 5,
            "train.test_tasks": 5,
            "scheduler.name": scheduler,
            "scheduler.pool_size": 4,
            "task.noise_ratio": 0.5,
            **SCHEDULER_EXTRAS.get(scheduler, {}),
        }
    )
    config = load_config("glyphs-5w1s", [*overrides, "train.iterations=18"])
    Trainer.create(config, tmp_path / "full").fit(progress=False)

    crashing = Trainer.create(config, tmp_path / "split")
    crash_at(crashing, 13)
    with pytest.raises(RuntimeError, match="power cut"):
        crashing.fit(progress=False)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["iteration"] == 10
    Trainer.resume(tmp_path / "split").fit(progress=False)

    assert _records(tmp_path / "split") == _records(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert _same_state(a["scheduler"], b["scheduler"])
    if scheduler == "ats":
        assert a["scheduler"]["selections"] == 18 and a["scheduler"]["rewards_seen"] == 24


@pytest.mark.slow
def test_ats_learns_to_down_weight_noisy_tasks(tmp_path, glyphs) -> None:
    """From a briefly pre-trained model, the scheduler's warm-up alone (θ0 fixed) teaches it
    to give noisy candidates (random support labels) less probability than clean ones. This
    tests the learning mechanism, so it uses ``flip`` noise, whose unbalanced supports the
    scheduler can spot at this tiny size; with ``redraw`` noise a model this weak gives it too
    little to go on in 100 iterations (docs/results.md measures both at full size)."""
    quick = {"task.q_query": 5, "learner.inner_lr": 0.1, "train.test_tasks": 5}
    pretrain = load_config("glyphs-pretrain", tiny_overrides(**quick, **{"train.iterations": 40}))
    Trainer.create(pretrain, tmp_path / "pre").fit(progress=False)
    config = load_config(
        "glyphs-noisy-ats",
        tiny_overrides(
            **quick,
            **{
                "train.init_from": tmp_path / "pre" / "best.pt",
                "scheduler.ats.warmup": 100,
                "scheduler.ats.lr": 0.01,
                "train.iterations": 1,
                "task.noise": "flip",
            },
        ),
    )
    Trainer.create(config, tmp_path / "ats").fit(progress=False)
    warmup = [
        r for r in read_metrics(tmp_path / "ats" / "metrics.jsonl") if r.get("phase") == "warmup"
    ]
    early, late = warmup[:30], warmup[-30:]

    def mean(records, key):
        return np.mean([r[key] for r in records if r[key] is not None])

    assert mean(early, "p_noisy") == pytest.approx(mean(early, "p_clean"), rel=0.2)
    assert mean(late, "p_noisy") < 0.8 * mean(late, "p_clean")


def test_resume_refuses_to_change_the_experiment(tmp_path, glyphs) -> None:
    config = load_config(
        "glyphs-5w1s", tiny_overrides(**{"train.iterations": 10, "train.test_tasks": 5})
    )
    Trainer.create(config, tmp_path / "run").fit(progress=False)
    with pytest.raises(MetaschedError, match="cannot change model"):
        Trainer.resume(tmp_path / "run", ["model.filters=8"])
    with pytest.raises(MetaschedError, match="already holds a run"):
        Trainer.create(config, tmp_path / "run")


def test_a_run_from_before_a_new_setting_still_resumes(tmp_path, glyphs) -> None:
    """A checkpoint whose config lacks a setting added since (here scheduler.graph_memory_gb)
    resumes with its default rather than counting as a changed experiment."""
    overrides = tiny_overrides(**{"train.iterations": 4, "train.test_tasks": 5})
    Trainer.create(load_config("glyphs-5w1s", overrides), tmp_path / "run").fit(progress=False)
    payload = checkpoint_module.load_checkpoint(tmp_path / "run" / "last.pt")
    del payload["config"]["scheduler"]["graph_memory_gb"]
    checkpoint_module.save_checkpoint(tmp_path / "run" / "last.pt", payload)
    trainer = Trainer.resume(tmp_path / "run", ["train.iterations=6"])
    assert trainer.config.scheduler.graph_memory_gb == 0.5


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_identically(
    tmp_path, glyphs, monkeypatch
) -> None:
    overrides = tiny_overrides(
        **{
            "train.iterations": 20,
            "train.checkpoint_every": 100,
            "train.val_tasks": 5,
            "train.test_tasks": 5,
        }
    )
    config = load_config("glyphs-5w1s", overrides)
    Trainer.create(config, tmp_path / "full").fit(progress=False)

    trainer = Trainer.create(config, tmp_path / "cut")
    step = trainer.train_step

    def interrupted_step():
        record = step()
        if trainer.state.iteration == 6:  # the 7th step is running: press Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return record

    monkeypatch.setattr(trainer, "train_step", interrupted_step)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        trainer.fit(progress=False)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["iteration"] == 7
    Trainer.resume(tmp_path / "cut").fit(progress=False)
    assert _records(tmp_path / "cut") == _records(tmp_path / "full")


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(
    tmp_path, glyphs, monkeypatch
) -> None:
    config = load_config(
        "glyphs-5w1s", tiny_overrides(**{"train.iterations": 10, "train.test_tasks": 5})
    )
    trainer = Trainer.create(config, tmp_path / "run")
    trainer.fit(progress=False)
    before = (tmp_path / "run" / "last.pt").read_bytes()

    def torn_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", torn_save)
    with pytest.raises(OSError):
        checkpoint_module.save_checkpoint(
            tmp_path / "run" / "last.pt", trainer.checkpoint_payload()
        )
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 10


def test_cli_train_and_evaluate(tmp_path, glyphs, capsys) -> None:
    run_dir = tmp_path / "cli"
    args = ["train", "--config", "demo", "--run-dir", str(run_dir), "--quiet"]
    for override in tiny_overrides(**{"train.iterations": 10}):
        args += ["--set", override]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test accuracy (best on validation" in out and "95% CI over 40 tasks" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert main(["evaluate", str(run_dir), "--tasks", "40"]) == 0
    out = capsys.readouterr().out
    assert f"{100 * summary['best']['score']:.2f}" in out  # same tasks, same model, same number


def test_the_reward_data_control_adds_clean_reward_tasks_at_the_given_rate(
    tmp_path, glyphs
) -> None:
    """uniform-reward: 1.5 reward-split tasks per meta-update on average, fractions carried."""
    overrides = tiny_overrides(
        **{
            "train.iterations": 4,
            "train.val_tasks": 4,
            "train.test_tasks": 4,
            "task.noise_ratio": 1.0,
            "train.reward_tasks_per_update": 1.5,
        }
    )
    config = load_config("glyphs-5w1s", overrides)
    Trainer.create(config, tmp_path / "run").fit(progress=False)
    train = _records(tmp_path / "run", ("train",))
    assert [r["reward_tasks_trained"] for r in train if "reward_tasks_trained" in r] == [1, 2, 1, 2]
    assert [len(r["chosen"]) for r in train] == [3, 4, 3, 4]
    assert [r["noisy"] for r in train] == [2 / 3, 2 / 4, 2 / 3, 2 / 4]  # the added ones are clean


def test_gradient_clipping_bounds_the_meta_update(tmp_path, glyphs) -> None:
    """train.clip_grad_norm rescales the meta-gradient before Adam: at a limit far below any
    real gradient the step is Adam's epsilon-dominated crawl, without it a full step."""
    moved = {}
    for name, limit in (("free", "null"), ("clipped", "1e-12")):
        overrides = tiny_overrides(
            **{"train.iterations": 2, "train.val_tasks": 4, "train.test_tasks": 4}
        )
        config = load_config("glyphs-5w1s", [*overrides, f"train.clip_grad_norm={limit}"])
        trainer = Trainer.create(config, tmp_path / name)
        start = {n: p.detach().clone() for n, p in trainer.parts.learner.parameters().items()}
        trainer.train_step()
        after = trainer.parts.learner.parameters()
        moved[name] = max(float((after[n].detach() - start[n]).abs().max()) for n in start)
    lr = load_config("glyphs-5w1s", tiny_overrides()).train.meta_lr
    assert moved["free"] > 0.5 * lr
    assert moved["clipped"] < 1e-3 * lr


@pytest.mark.parametrize("scheduler", ["ats", "greedy"])
def test_a_graph_memory_budget_changes_memory_not_results(tmp_path, glyphs, scheduler) -> None:
    """Pool graphs are kept only while P of them fit in scheduler.graph_memory_gb; a pool
    measured without them recomputes the chosen tasks and must train the same way (the same
    choices; losses equal up to float32 round-off, the recomputation's order of operations)."""
    from metasched.learners.functional import graph_bytes

    runs = {}
    for name, budget in (("kept", "null"), ("recomputed", "1e-6")):
        overrides = tiny_overrides(
            **{
                "train.iterations": 4,
                "scheduler.name": scheduler,
                "scheduler.pool_size": 4,
                "scheduler.ats.warmup": 1,
                "task.noise_ratio": 0.5,
            }
        )
        config = load_config("glyphs-5w1s", [*overrides, f"scheduler.graph_memory_gb={budget}"])
        trainer = Trainer.create(config, tmp_path / name)
        learner, params = trainer.parts.learner, trainer.parts.learner.parameters()
        episodes = [
            trainer.parts.samplers["train"].sample(np.random.default_rng(i)) for i in range(4)
        ]
        measured = learner.measure_pool(
            params, episodes, True, graph_budget=None if budget == "null" else 1000
        )
        assert (measured.graphs is None) == (budget != "null")
        if measured.graphs is not None:  # 80 images' activations through Conv4-16 at 28x28
            assert 1e6 < graph_bytes(measured.graphs[0]) < 1e8
        trainer.fit(progress=False)
        runs[name] = _records(tmp_path / name)
    assert len(runs["kept"]) == len(runs["recomputed"]) >= 5  # training and validation
    for kept, recomputed in zip(runs["kept"], runs["recomputed"], strict=True):
        assert kept.keys() == recomputed.keys() and kept.get("chosen") == recomputed.get("chosen")
        for key, value in kept.items():
            if isinstance(value, float):
                assert value == pytest.approx(recomputed[key], rel=1e-5, abs=1e-6), key


def test_a_new_best_is_followed_by_a_checkpoint_and_a_mismatched_best_is_refused(
    tmp_path, glyphs, monkeypatch
) -> None:
    """A validation that improves the best saves last.pt at once (a run killed before its
    next checkpoint then resumes knowing that best.pt); a best.pt from another iteration
    than the state's best is refused, not tested as the best model."""
    from metasched.training import trainer as trainer_module

    saved: list[tuple[str, int]] = []
    save = trainer_module.save_checkpoint

    def recording(path, payload, *args, **kwargs):
        saved.append((path.name, payload["iteration"]))
        return save(path, payload, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", recording)
    extra = {"train.iterations": 12, "train.val_every": 2, "train.checkpoint_every": 100}
    config = load_config("glyphs-5w1s", tiny_overrides(**extra))
    trainer = Trainer.create(config, tmp_path / "run")
    trainer.fit(progress=False)
    bests = [it for name, it in saved if name == "best.pt"]
    assert len(bests) >= 2  # the run improved more than once: some saves came between
    assert all(("last.pt", it) in saved for it in bests)

    assert load_checkpoint(tmp_path / "run" / "best.pt")["iteration"] == bests[-1]
    assert trainer.state.best_iteration == bests[-1]
    # The state a kill between best.pt and last.pt would leave: it knows an older best.
    trainer.state = replace(trainer.state, best_iteration=bests[0])
    with pytest.raises(MetaschedError, match=f"holds iteration {bests[-1]}, not the run's best"):
        trainer.test(progress=False)
