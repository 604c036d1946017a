"""Non-meta baselines run as a run directory of their own, on a config's test tasks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from metasched.config import Config
from metasched.data.registry import load_dataset
from metasched.domains import DOMAINS, domain_of
from metasched.errors import MetaschedError
from metasched.files import atomic_write
from metasched.training.components import STREAMS
from metasched.training.evaluation import evaluate, write_test_results
from metasched.training.provenance import record_start
from metasched.training.run_dir import claim_new

#: Every domain's baselines by name (``metasched baseline NAME``, a ``compare`` method).
BASELINES = sorted({name for domain in DOMAINS.values() for name in domain.baselines})


def run_baseline(
    name: str, config: Config, run_dir: Path, progress: bool = False, **options: Any
) -> dict[str, Any]:
    """Baseline ``name`` of the config's domain, fitted on each test task's support, on exactly
    the test tasks a meta-learner of ``config`` is tested on (the same sampler and random
    stream); writes ``config.yaml``, ``provenance.json``, ``summary.json`` and
    ``test_tasks.csv`` like a run, and returns the summary.

    Args:
        name: a key of the domain's ``baselines``.
        config: the settings whose test tasks it is judged on.
        run_dir: where to write.
        progress: show a progress bar.
        options: the baseline's own settings (e.g. ``trees`` for the forest).
    """
    domain = domain_of(config)
    if name not in domain.baselines:
        fitting = [d.name for d in DOMAINS.values() if name in d.baselines]
        raise MetaschedError(
            f"the {name} baseline fits {' or '.join(fitting)} data; data.name={config.data.name}"
            f" is {domain.name}"
        )
    baseline = domain.baselines[name](config, **options)
    claim_new(run_dir, (run_dir / "summary.json").exists())
    tests = domain.samplers(config, load_dataset(config.data))["test"]
    atomic_write(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    record_start(run_dir, config)
    start = time.perf_counter()
    rng = np.random.default_rng([config.seed, STREAMS["test"]])
    description = "test tasks" if progress else None
    result = evaluate(
        baseline, {}, tests, config.train.test_tasks, rng, torch.device("cpu"), description
    )
    extra = {
        "train_seconds": 0.0,
        "test_seconds": time.perf_counter() - start,
        "baseline": getattr(baseline, "description", name),
    }
    results = {"final": (0, result), "best": (0, result)}
    return write_test_results(run_dir, results, domain.objective, extra)
