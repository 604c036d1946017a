"""Backbones: derived head sizes, per-task batch norm, batched tasks, memory layout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from metasched.errors import MetaschedError
from metasched.models import Conv4, FingerprintMLP
from metasched.models.layout import cpu_layout, keep_nchw


@pytest.mark.parametrize(
    ("size", "channels", "filters", "features"),
    [(28, 1, 64, 64), (84, 3, 32, 800), (32, 3, 16, 64), (16, 1, 8, 8)],
)
def test_conv4_head_size_is_derived(size: int, channels: int, filters: int, features: int) -> None:
    model = Conv4(5, channels, filters, size)
    assert model.head.in_features == features
    assert model(torch.rand(7, channels, size, size)).shape == (7, 5)


def test_conv4_matches_the_reference_parameter_count() -> None:
    model = Conv4(5, in_channels=3, filters=32, image_size=84)
    assert sum(p.numel() for p in model.parameters()) == 32_901  # ats-method.md section 2
    assert sum(p.numel() for p in model.head.parameters()) == 4_005


def test_conv4_rejects_tiny_images() -> None:
    with pytest.raises(MetaschedError, match="at least 16"):
        Conv4(5, 1, 8, 12)


def test_batch_norm_uses_each_tasks_own_statistics() -> None:
    torch.manual_seed(0)
    model = Conv4(5, 1, 8, 28)
    with torch.no_grad():
        for block in model.backbone.blocks:
            block.norm.weight.uniform_(0.5, 1.5)
            block.norm.bias.uniform_(-0.2, 0.2)
    tasks = torch.rand(3, 6, 1, 28, 28) * torch.tensor([1.0, 2.0, 5.0]).view(3, 1, 1, 1, 1)
    batched = model(tasks)
    separate = torch.stack([model(t) for t in tasks])
    assert batched.shape == (3, 6, 5)
    torch.testing.assert_close(batched, separate, rtol=1e-4, atol=1e-5)
    # A task's outputs do not depend on the other images in the pass: statistics are per task.
    torch.testing.assert_close(model(tasks[:1])[0], separate[0], rtol=1e-4, atol=1e-5)


def test_fingerprint_mlp_is_the_supplements_network() -> None:
    model = FingerprintMLP(1024)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(1024, 500), (500, 500), (500, 1)]
    assert model(torch.rand(4, 1024)).shape == (4, 1)
    with_norm = FingerprintMLP(64, batch_norm=True)
    x = torch.rand(2, 5, 64)
    batched = with_norm(x)
    assert batched.shape == (2, 5, 1)
    torch.testing.assert_close(batched[1], with_norm(x[1]), rtol=1e-4, atol=1e-5)


def test_channels_last_on_cpu_unless_nchw_is_kept() -> None:
    x = torch.randn(2, 3, 8, 8)
    assert cpu_layout(x).is_contiguous(memory_format=torch.channels_last)
    with keep_nchw():
        assert not cpu_layout(x).is_contiguous(memory_format=torch.channels_last)
        with keep_nchw(enabled=False):  # an inner context does not undo an outer one
            assert not cpu_layout(x).is_contiguous(memory_format=torch.channels_last)
    with keep_nchw(enabled=False):
        assert cpu_layout(x).is_contiguous(memory_format=torch.channels_last)
    assert cpu_layout(x).is_contiguous(memory_format=torch.channels_last)


def test_conv4_features_do_not_depend_on_the_memory_layout() -> None:
    torch.manual_seed(0)
    model = Conv4(5, 3, 8, 32)
    x = torch.randn(6, 3, 32, 32)
    with keep_nchw():
        nchw = model(x)
    torch.testing.assert_close(model(x), nchw, atol=1e-5, rtol=1e-5)


def test_pooling_before_the_rectifier_changes_nothing() -> None:
    """The block pools before ReLU; values, gradients and second derivatives equal the
    textbook conv, norm, ReLU, pool order."""
    torch.manual_seed(0)
    block = Conv4(5, 3, 8, 21).backbone.blocks[0]
    x = torch.randn(6, 3, 21, 21)

    def textbook(weight: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.conv2d(x, weight, block.conv.bias, padding=1)
        return torch.nn.functional.max_pool2d(torch.relu(block.norm(h)), 2)

    def ours(weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(block, {"conv.weight": weight}, (x,))

    def derivatives(forward: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        weight = block.conv.weight
        (grad,) = torch.autograd.grad(forward(weight).pow(2).sum(), weight, create_graph=True)
        (second,) = torch.autograd.grad(grad.pow(2).sum(), weight)
        return [grad.detach(), second]

    assert torch.equal(ours(block.conv.weight), textbook(block.conv.weight))
    ours_grad, ours_second = derivatives(ours)
    textbook_grad, textbook_second = derivatives(textbook)
    torch.testing.assert_close(ours_grad, textbook_grad, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours_second, textbook_second, rtol=1e-5, atol=1e-6)
