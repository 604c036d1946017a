"""Non-meta baselines run as a run directory of their own, on a config's test tasks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from metasched.config import Config
from metasched.data.registry import ASSAYS, DATASETS, load_dataset
from metasched.errors import MetaschedError
from metasched.files import atomic_write
from metasched.learners.forest import RandomForestBaseline
from metasched.training.components import STREAMS
from metasched.training.domains import domain_of
from metasched.training.evaluation import evaluate, write_test_results
from metasched.training.provenance import record_start

FOREST_TREES = 100


def run_forest(
    config: Config, run_dir: Path, trees: int = FOREST_TREES, progress: bool = False
) -> dict[str, Any]:
    """A random forest per test task, on exactly the test tasks a meta-learner of ``config``
    is tested on (the same sampler and random stream); writes ``config.yaml``,
    ``provenance.json``, ``summary.json`` and ``test_tasks.csv`` like a run, and returns the
    summary."""
    if DATASETS[config.data.name].domain != ASSAYS:
        raise MetaschedError(
            f"the random forest baseline fits assay data; data.name={config.data.name} is images"
        )
    domain = domain_of(config)
    tests = domain.samplers(config, load_dataset(config.data))["test"]
    forest = RandomForestBaseline(domain.objective, trees, seed=config.seed)
    atomic_write(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    record_start(run_dir, config)
    start = time.perf_counter()
    rng = np.random.default_rng([config.seed, STREAMS["test"]])
    description = "test tasks" if progress else None
    result = evaluate(
        forest, {}, tests, config.train.test_tasks, rng, torch.device("cpu"), description
    )
    extra = {
        "train_seconds": 0.0,
        "test_seconds": time.perf_counter() - start,
        "baseline": f"random forest, {trees} trees, fitted per task",
    }
    results = {"final": (0, result), "best": (0, result)}
    return write_test_results(run_dir, results, domain.objective, extra)


#: Baselines that train nothing, by the method name ``metasched compare`` knows them by.
BASELINES = {"forest": run_forest}
