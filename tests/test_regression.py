"""The regression domain end to end: config checks, a learning run, its words and files."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from metasched.cli import main
from metasched.config import config_from_dict, load_config
from metasched.data.fingerprints import FingerprintSpec, morgan_fingerprints
from metasched.errors import MetaschedError
from metasched.training.checkpoint import load_checkpoint
from metasched.training.components import build_components
from metasched.training.evaluation import evaluate
from metasched.training.trainer import Trainer

from .molecules import SMILES, write_csv

pytest.importorskip("rdkit", reason="molecules need RDKit: metasched[chem]")


def learnable_csv(tmp_path: Path) -> Path:
    """12 assays of 16 compounds whose value is a fixed function of the fingerprint (the
    count of set bits among the first 256) plus an offset per assay: learnable across assays."""
    prints = morgan_fingerprints(list(SMILES), FingerprintSpec(bits=1024))
    bits = np.unpackbits(prints.packed, axis=1)[:, :256].sum(axis=1).astype(float)
    rng = np.random.default_rng(0)
    rows = []
    for a in range(12):
        offset = rng.normal(0, 1)
        for i in rng.choice(len(SMILES), 16, replace=False):
            rows.append([f"T{a}", SMILES[i], round(0.3 * bits[i] + offset, 4)])
    return write_csv(tmp_path / "learnable.csv", ["assay", "smiles", "value"], rows)


def overrides(path: Path, **extra: object) -> list[str]:
    values = {
        "data.name": "csv",
        "data.root": str(path),
        "model.hidden": 32,
        "task.assays.support": 6,
        "task.assays.min_query": 4,
        "task.assays.query_cap": 10,
        "task.reward_split": "val",
        "learner.algorithm": "ridge",  # a point predictor; the preset's GP: tests/test_gp.py
        "learner.inner_lr": 0.1,
        "train.iterations": 60,
        "train.meta_batch_size": 4,
        "train.meta_lr": 0.003,
        "train.val_every": 20,
        "train.val_tasks": 10,
        "train.test_tasks": 20,
        "train.checkpoint_every": 20,
        "train.device": "cpu",
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


def test_domain_mismatches_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(MetaschedError, match=r"use model\.name=mlp"):
        load_config("drug-demo", ["model.name=conv4"])
    with pytest.raises(MetaschedError, match=r"use model\.name=conv4"):
        load_config("glyphs-5w1s", ["model.name=mlp"])
    with pytest.raises(MetaschedError, match="train-16"):
        load_config("drug-demo", ["task.reward_split=train-16"])
    path = learnable_csv(tmp_path)
    config = load_config(
        "drug-demo", overrides(path, **{"scheduler.name": "gcp", "scheduler.pool_size": 8})
    )
    with pytest.raises(MetaschedError, match="scheduler gcp samples pairs of classes"):
        build_components(config)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A tiny regression run on learnable assays: (data file, run directory, printed text)."""
    tmp_path = tmp_path_factory.mktemp("regression")
    path = learnable_csv(tmp_path)
    run = tmp_path / "run"
    sets = [a for o in overrides(path) for a in ("--set", o)]
    with pytest.MonkeyPatch.context() as patch:
        printed: list[str] = []
        patch.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
        assert (
            main(["train", "--config", "drug-demo", "--run-dir", str(run), "--quiet", *sets]) == 0
        )
    return path, run, "\n".join(printed)


def test_regression_run_learns_and_speaks_regression(trained: tuple[Path, Path, str]) -> None:
    path, run, printed = trained
    config = load_config("drug-demo", overrides(path))
    parts = build_components(config)
    rng = np.random.default_rng([config.seed, 2])
    untrained = evaluate(
        parts.learner, parts.learner.parameters(), parts.samplers["test"], 20, rng, parts.device
    )
    assert "pearson R²" in printed and "accuracy" not in printed
    assert not re.search(r"\d ± [\d.]+%", printed)  # R² is not a percentage
    summary = json.loads((run / "summary.json").read_text())
    assert summary["score_name"] == "pearson_r2" and summary["score_percent"] is False
    assert summary["final"]["score"] > untrained.mean + 0.1  # learning happened
    metrics = summary["best"]["metrics"]
    assert set(metrics) == {"pearson_r2", "oos_r2", "rmse"}
    assert metrics["pearson_r2"]["assays"] >= 1
    header = (run / "test_tasks.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["task", "source"] and "oos_r2_best" in header


def test_anil_learns_the_assays_too(tmp_path: Path) -> None:
    """ANIL's SGD head (these tests' runs use the ridge head) meta-trains on the same assays."""
    path = learnable_csv(tmp_path)
    sets = overrides(path, **{"learner.algorithm": "anil", "train.iterations": 40})
    config = load_config("drug-demo", sets)
    parts = build_components(config)
    rng = np.random.default_rng([config.seed, 2])
    untrained = evaluate(
        parts.learner, parts.learner.parameters(), parts.samplers["test"], 20, rng, parts.device
    )
    run = tmp_path / "anil"
    args = [a for o in sets for a in ("--set", o)]
    assert main(["train", "--config", "drug-demo", "--run-dir", str(run), "--quiet", *args]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["score"] > untrained.mean + 0.1


def test_predict_equals_the_evaluation_path(
    trained: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, run, _ = trained
    payload = load_checkpoint(run / "best.pt")
    config = config_from_dict(payload["config"])
    parts = build_components(config)
    parts.model.load_state_dict(payload["model"])
    episode = parts.samplers["test"].sample(np.random.default_rng(5), 0)
    expected = parts.learner.predict(parts.learner.parameters(), episode).squeeze(-1)
    expected = expected * episode.target_scale + episode.target_shift
    # Back from fingerprints to SMILES (the small set's fingerprints are distinct).
    prints = morgan_fingerprints(list(SMILES), FingerprintSpec(bits=1024))
    table = np.unpackbits(prints.packed, axis=1).astype(np.float32)

    def smiles_of(x: torch.Tensor) -> list[str]:
        return [SMILES[int(np.flatnonzero((table == row).all(axis=1))[0])] for row in x.numpy()]

    values = episode.support_y * episode.target_scale + episode.target_shift
    support = write_csv(
        tmp_path / "measured.csv",
        ["smiles", "value"],
        [[s, float(v)] for s, v in zip(smiles_of(episode.support_x), values)],
    )
    query = write_csv(tmp_path / "candidates.csv", ["smiles"],
                      [[s] for s in smiles_of(episode.query_x)])  # fmt: skip
    out = tmp_path / "predictions.csv"
    command = ["predict", str(run), "--support", str(support), "--query", str(query)]
    assert main([*command, "--out", str(out)]) == 0
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert rows[0] == ["smiles", "prediction"] and len(rows) == len(expected) + 1
    got = torch.tensor([float(r[1]) for r in rows[1:]])
    assert torch.allclose(got, expected.float(), atol=1e-3)


def test_predict_rejects_unparsable_smiles(
    trained: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run, _ = trained
    support = write_csv(tmp_path / "s.csv", ["smiles", "value"], [["CCO", 5.0], ["CCN", 6.0]])
    query = write_csv(tmp_path / "q.csv", ["smiles"], [["CCC"], ["C1CC"]])
    out = tmp_path / "p.csv"
    command = ["predict", str(run), "--support", str(support), "--query", str(query)]
    assert main([*command, "--out", str(out)]) == 2
    assert "line 3: RDKit cannot parse SMILES 'C1CC'" in capsys.readouterr().err
    assert not out.exists()
    query.write_text("smiles\nCCC\n\nC1CC\n")  # a blank line is skipped, not renumbered
    assert main([*command, "--out", str(out)]) == 2
    assert "line 4: RDKit cannot parse SMILES 'C1CC'" in capsys.readouterr().err


def test_forest_baseline_runs_on_the_learners_test_tasks(tmp_path: Path) -> None:
    path = learnable_csv(tmp_path)
    sets = [a for o in overrides(path) for a in ("--set", o)]
    assert main(["baseline", "forest", "--config", "drug-demo", "--run-dir",
                 str(tmp_path / "forest"), "--trees", "20", *sets]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "forest" / "summary.json").read_text())
    # The forest learns the shared function from 6 compounds: better than the support mean.
    assert summary["best"]["metrics"]["oos_r2"]["mean"] > 0.05
    config = load_config("drug-demo", overrides(path))
    parts = build_components(config)
    rng = np.random.default_rng([config.seed, 2])  # the test stream of every run
    episodes = [parts.samplers["test"].sample(rng, i) for i in range(20)]
    rows = (tmp_path / "forest" / "test_tasks.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in rows] == [e.source_name for e in episodes]
    assert all(name.startswith("T") for name in [e.source_name for e in episodes])  # assay ids


def test_forest_needs_assay_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "forest", "--config", "glyphs-5w1s"]) == 2
    assert (
        "the forest baseline fits assays data; data.name=glyphs is images"
        in capsys.readouterr().err
    )


def test_paper_pqsar_preset_runs_on_the_supporting_file_formats(tmp_path: Path) -> None:
    from metasched.training.trainer import Trainer

    from .molecules import write_pqsar

    root = write_pqsar(tmp_path / "pqsar", assays=8, rows=12)
    settings = {
        "data.root": str(root), "model.hidden": 16, "scheduler.pool_size": 4,
        "train.meta_batch_size": 2, "train.iterations": 4, "train.val_every": 2,
        "train.val_tasks": 2, "train.test_tasks": 3, "train.checkpoint_every": 2,
        "train.device": "cpu",
    }  # fmt: skip
    config = load_config("paper/pqsar-noisy", [f"{k}={v}" for k, v in settings.items()])
    summary = Trainer.create(config, tmp_path / "run").fit(progress=False)
    assert summary["score_name"] == "pearson_r2" and summary["final"]["iteration"] == 4
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().count('"kind": "train"')
    assert rows == 4 and np.isfinite(summary["final"]["loss"])


def test_compare_on_assays_speaks_regression(tmp_path: Path) -> None:
    from metasched.compare import run_comparison

    path = learnable_csv(tmp_path)
    short = {"train.iterations": 6, "train.val_every": 3, "train.checkpoint_every": 3}
    settings = overrides(path, **short, **{"scheduler.pool_size": 8})
    methods = ["uniform", "greedy", "forest"]
    table, _ = run_comparison("drug-demo", methods, [0], tmp_path / "cmp", settings, say=print)
    assert "test pearson R², mean ± 95% CI over seeds" in table and "out-of-sample R²" in table
    assert "accuracy" not in table and not re.search(r"\d%", table.split("\n", 2)[-1])
    assert "| forest |" in table and "(trains nothing)" in table
    rows = list(csv.DictReader((tmp_path / "cmp" / "results.csv").open()))
    assert [r["method"] for r in rows] == methods
    for row in rows:  # each line is its run's own test scores, as its summary holds them
        run = tmp_path / "cmp" / f"{row['method']}-seed0"
        summary = json.loads((run / "summary.json").read_text())
        assert float(row["best"]) == pytest.approx(summary["best"]["score"], abs=5e-5)
        assert float(row["final"]) == pytest.approx(summary["final"]["score"], abs=5e-5)
    forest = json.loads((tmp_path / "cmp" / "forest-seed0" / "summary.json").read_text())
    alone = tmp_path / "alone"  # the same forest as `metasched baseline forest` gives
    sets = [a for o in settings for a in ("--set", o)]
    assert (
        main(["baseline", "forest", "--config", "drug-demo", "--run-dir", str(alone), *sets]) == 0
    )
    assert json.loads((alone / "summary.json").read_text())["best"] == forest["best"]


def test_report_keeps_each_domains_words_beside_another(tmp_path: Path, glyphs, capsys) -> None:
    """An image run beside an assay run: each gets its own table and plot in its own score."""
    from .conftest import tiny_overrides

    images = Trainer.create(
        load_config("glyphs-5w1s", tiny_overrides(**{"train.iterations": 3})), tmp_path / "img"
    )
    images.fit(progress=False)
    settings = overrides(learnable_csv(tmp_path), **{"train.iterations": 4})
    Trainer.create(load_config("drug-demo", settings), tmp_path / "assay").fit(progress=False)
    capsys.readouterr()
    runs = [str(tmp_path / "img"), str(tmp_path / "assay")]
    assert main(["report", *runs, "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    accuracy, pearson = printed.index("test accuracy (best on val)"), printed.index("pearson R²")
    assert printed.index("| img |") < pearson and printed.index("| assay |") > pearson > accuracy
    assert "%" not in printed[pearson:]
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {"accuracy.png", "score.png"}
