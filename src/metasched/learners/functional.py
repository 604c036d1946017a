"""The functional pieces every learner is made of: parameters as dictionaries with a leading
task dimension, inner-loop SGD steps, per-layer gradient statistics, and how much memory a
kept graph holds.

Example:
    >>> params = {"w": torch.ones(3)}
    >>> task_views(params, 4)["w"].shape
    torch.Size([4, 3])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from metasched.errors import MetaschedError
from metasched.models.layout import keep_nchw

Params = dict[str, torch.Tensor]
Predictor = Callable[[torch.Tensor], torch.Tensor]
GradientRows = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Adaptation:
    """Inner-loop settings: plain SGD with learning rate ``lr`` for ``steps`` steps."""

    lr: float
    steps: int

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise MetaschedError(f"inner learning rate must be positive, got {self.lr}")
        if self.steps < 0:
            raise MetaschedError(f"inner steps must be >= 0, got {self.steps}")


def task_views(params: Params, tasks: int) -> Params:
    """θ0 seen as T tasks' parameters (a leading task dimension, no copy): the gradient of a
    loss with respect to a view is each task's own, and the graph still reaches θ0."""
    if tasks == 1:  # unsqueeze's backward is a view; expand's sums, copying every gradient
        return {n: p.unsqueeze(0) for n, p in params.items()}
    return {n: p.expand(tasks, *p.shape) for n, p in params.items()}


def gradient_rows(
    support: Sequence[torch.Tensor | None],
    query: Sequence[torch.Tensor | None],
    like: Sequence[torch.Tensor],
) -> GradientRows:
    """(‖g_s‖, ‖g_q‖, ⟨g_s, g_q⟩), (T, L) each, from per-task gradients (T, ...) of L layers;
    a layer a loss does not reach has zero gradient."""
    flat_s = [_flat(g, p) for g, p in zip(support, like)]
    flat_q = [_flat(g, p) for g, p in zip(query, like)]
    return (
        torch.stack([g.norm(dim=1) for g in flat_s], dim=1),
        torch.stack([g.norm(dim=1) for g in flat_q], dim=1),
        torch.stack([(a * b).sum(dim=1) for a, b in zip(flat_s, flat_q)], dim=1),
    )


def sgd_steps(
    loss_of: Callable[[Params], torch.Tensor],
    params: Params,
    adaptation: Adaptation,
    create_graph: bool,
) -> Params:
    """Runs ``adaptation.steps`` plain SGD steps on ``loss_of``, functionally.

    With ``create_graph`` the result stays differentiable through the gradients (second
    order). Without it the gradients are constants, so the result depends on ``params`` only
    through the identity (first order). Parameters that do not require grad (evaluation) are
    adapted as fresh leaves at every step, so no graph accumulates.
    """
    tracked = any(p.requires_grad for p in params.values())
    fast = params if tracked else _leaves(params)
    for _ in range(adaptation.steps):
        with keep_nchw(create_graph):  # differentiated twice: see keep_nchw
            loss = loss_of(fast)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
        fast = {n: p - adaptation.lr * g for (n, p), g in zip(fast.items(), grads)}
        if not tracked:
            fast = _leaves(fast)
    return fast


def _flat(gradient: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A per-task gradient (T, ...) as (T, n), detached; zeros where the loss does not reach."""
    return (gradient if gradient is not None else torch.zeros_like(like)).detach().flatten(1)


def _leaves(params: Params) -> Params:
    return {n: p.detach().requires_grad_() for n, p in params.items()}


def graph_bytes(output: torch.Tensor) -> int:
    """The memory of the tensors autograd saved for ``output``'s backward (each storage once;
    leaves such as parameters and input images, which exist anyway, excluded).

    Walks the graph and reads each node's saved tensors: saved-tensor hooks would do it during
    the forward pass, but a hook that returns the tensor itself ties a saved output to its own
    node in a reference cycle, and the graph is never freed (260 MB an iteration at 84x84).
    """
    seen_nodes: set[int] = set()
    seen_storages: set[int] = set()
    total = 0
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        stack.extend(next_node for next_node, _ in node.next_functions)
        for name in dir(node):
            if not name.startswith("_saved_"):
                continue
            try:
                value = getattr(node, name)
            except RuntimeError:  # freed, or not a readable saved value
                continue
            for tensor in value if isinstance(value, tuple | list) else (value,):
                if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
                    storage = tensor.untyped_storage()
                    if storage.data_ptr() not in seen_storages:
                        seen_storages.add(storage.data_ptr())
                        total += storage.nbytes()
    return total
