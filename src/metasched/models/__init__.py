"""Backbones with a linear head, as plain ``nn.Module``s (``model.backbone``, ``model.head``):
Conv4 and the fingerprint MLP with a grouped computation, ResNet-12 without one."""

from metasched.models.conv4 import Conv4, Conv4Backbone
from metasched.models.grouped import shared_weights, task_linear
from metasched.models.mlp import FingerprintBackbone, FingerprintMLP
from metasched.models.norm import TaskBatchNorm, cancelled_parameters, task_batch_norm
from metasched.models.resnet12 import ResNet12, ResNet12Backbone

#: The results version of this layer: bump it in the commit that changes the networks'
#: initialisation and forward computation, i.e. any number a run records (tests/golden replays
#: short runs and fails otherwise).
RESULTS_VERSION = 1

__all__ = [
    "RESULTS_VERSION",
    "Conv4",
    "Conv4Backbone",
    "FingerprintBackbone",
    "FingerprintMLP",
    "ResNet12",
    "ResNet12Backbone",
    "TaskBatchNorm",
    "cancelled_parameters",
    "shared_weights",
    "task_batch_norm",
    "task_linear",
]
