"""Shared fixtures: a private data cache per test session, tiny configurations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Builds data sets into a temporary cache, never the user's."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["METASCHED_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def glyphs():
    """The glyphs data set at 28x28 (built once per session, ~10 s)."""
    from metasched.data.hershey import load_glyphs

    return load_glyphs()


def tiny_overrides(**extra: object) -> list[str]:
    """Overrides that make a glyphs run take seconds on a CPU."""
    values = {
        "model.filters": 16,
        "train.meta_batch_size": 2,
        "train.val_every": 10,
        "train.val_tasks": 20,
        "train.test_tasks": 40,
        "train.checkpoint_every": 10,
        "train.device": "cpu",
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


def omniglot_dir() -> Path:
    path = SHARED_DATA / "omniglot"
    if not path.is_dir():
        pytest.skip(f"Omniglot zips not found at {path} (../shared/data is absent)")
    return path


def crash_at(trainer, iteration: int, message: str = "power cut") -> None:
    """Makes ``trainer`` raise RuntimeError(message) when it is about to run ``iteration`` + 1,
    as a crash after its last save would."""
    step = trainer.train_step

    def crashing():
        if trainer.state.iteration == iteration:
            raise RuntimeError(message)
        return step()

    trainer.train_step = crashing


def directional_derivatives(loss, parameter, direction, eps: float) -> tuple[float, float]:
    """(autograd, central finite difference) derivative of ``loss()`` along ``direction`` of
    ``parameter`` (changed in place and restored)."""
    import torch

    (gradient,) = torch.autograd.grad(loss(), [parameter])
    with torch.no_grad():
        parameter.add_(eps * direction)
        up = loss().item()
        parameter.sub_(2 * eps * direction)
        down = loss().item()
        parameter.add_(eps * direction)
    return (gradient * direction).sum().item(), (up - down) / (2 * eps)
