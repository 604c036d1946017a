"""Backbones with a linear head, as plain ``nn.Module``s (``model.backbone``, ``model.head``)."""

from metasched.models.conv4 import Conv4, Conv4Backbone
from metasched.models.grouped import shared_weights, task_linear
from metasched.models.mlp import FingerprintBackbone, FingerprintMLP
from metasched.models.norm import TaskBatchNorm, cancelled_parameters, task_batch_norm

__all__ = [
    "Conv4",
    "Conv4Backbone",
    "FingerprintBackbone",
    "FingerprintMLP",
    "TaskBatchNorm",
    "cancelled_parameters",
    "shared_weights",
    "task_batch_norm",
    "task_linear",
]
