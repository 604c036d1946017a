"""CUDA checks: the same numbers on the GPU as on the CPU, and training that learns there.

They skip without a GPU (as in CI); run them where one is available.
"""

from __future__ import annotations

import pytest
import torch

from metasched.config import load_config
from metasched.learners import ANIL, MAML, Adaptation, Classification
from metasched.models import Conv4
from metasched.tasks import Episode
from metasched.training.trainer import Trainer

from .conftest import tiny_overrides

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _pool(device: str) -> tuple[Conv4, list[Episode]]:
    torch.manual_seed(0)
    model = Conv4(5, 3, 16, 32).to(device, torch.float64)
    g = torch.Generator().manual_seed(1)
    episodes = [
        Episode(
            torch.rand(5, 3, 32, 32, generator=g, dtype=torch.float64), torch.arange(5),
            torch.rand(15, 3, 32, 32, generator=g, dtype=torch.float64), torch.arange(5).repeat(3),
        ).to(device)
        for _ in range(6)
    ]  # fmt: skip
    return model, episodes


@pytest.mark.parametrize("kind", [ANIL, MAML])
def test_grouped_scoring_on_cuda_matches_the_cpu_loop(kind) -> None:
    """In float64: float32 on these GPUs runs as TF32 (10-bit mantissas), and second-order
    MAML through batch norm over 5 support images amplifies that to a few percent."""
    results = []
    for device, batching in (("cpu", "loop"), ("cuda", "grouped")):
        model, episodes = _pool(device)
        learner = kind(
            model, Classification(), Adaptation(0.1, 3), Adaptation(0.1, 3), batching=batching
        )
        stats = learner.measure_pool(learner.parameters(), episodes, keep_graph=False).stats
        graphs = learner.outcomes(learner.parameters(), episodes).graphs
        loss = torch.stack(graphs).mean()
        grads = torch.autograd.grad(loss, list(learner.parameters().values()))
        results.append((stats, [g.cpu() for g in grads]))
    (cpu_stats, cpu_grads), (gpu_stats, gpu_grads) = results
    for name in ("query_loss", "support_norm", "query_norm", "dot"):
        torch.testing.assert_close(
            getattr(gpu_stats, name).cpu(), getattr(cpu_stats, name), rtol=1e-9, atol=1e-12
        )
    for a, b in zip(cpu_grads, gpu_grads):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


def test_ats_trains_on_cuda(tmp_path, glyphs) -> None:
    overrides = tiny_overrides(
        **{"train.device": "cuda", "train.iterations": 30, "scheduler.ats.warmup": 5}
    )
    config = load_config(
        "glyphs-noisy-ats", [*overrides, "learner.inner_lr=0.1", "task.noise_ratio=0"]
    )
    summary = Trainer.create(config, tmp_path / "run").fit(progress=False)
    assert summary["final"]["score"] > 0.5
