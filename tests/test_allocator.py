import platform
import resource

import pytest
import torch
from torch import nn

from metasched.allocator import retain_freed_cpu_memory


def page_faults_per_step(steps: int) -> list[int]:
    """Minor page faults of each forward+backward pass of two 84x84 conv layers (40 images)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1))
    images = torch.randn(40, 3, 84, 84)
    faults = []
    for _ in range(steps):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        net(images).square().mean().backward()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_memory_is_reused_instead_of_faulted_back() -> None:
    assert retain_freed_cpu_memory()
    activation_pages = 40 * 32 * 84 * 84 * 4 // resource.getpagesize()
    # glibc's defaults fault every activation in anew: 18 activations' pages per pass, 108 in
    # the six passes counted; reused memory faults in a few at most.
    assert sum(page_faults_per_step(8)[2:]) < 12 * activation_pages
