"""Meta-gradients of MAML, first-order MAML and ANIL against independent computations."""

from __future__ import annotations

import copy

import higher
import pytest
import torch
import torch.nn.functional as F

from metasched.config import load_config
from metasched.errors import MetaschedError
from metasched.learners import ANIL, MAML, Adaptation, Classification, Regression, RidgeANIL
from metasched.models import Conv4, FingerprintMLP
from metasched.tasks import Episode


def _tiny_task(seed: int = 0) -> tuple[Conv4, Episode]:
    torch.manual_seed(seed)
    model = Conv4(3, in_channels=1, filters=4, image_size=16).double()
    episode = Episode(
        support_x=torch.rand(6, 1, 16, 16, dtype=torch.float64),
        support_y=torch.tensor([0, 0, 1, 1, 2, 2]),
        query_x=torch.rand(9, 1, 16, 16, dtype=torch.float64),
        query_y=torch.tensor([0, 1, 2] * 3),
    )
    return model, episode


def _query_loss(learner, params, episode: Episode) -> torch.Tensor:
    """The adapted query loss of one task, differentiable w.r.t. ``params``."""
    graphs = learner.outcomes(params, [episode]).graphs
    return graphs[0]


def _meta_gradient(learner, episode: Episode) -> list[torch.Tensor]:
    params = learner.parameters()
    loss = _query_loss(learner, params, episode)
    return list(torch.autograd.grad(loss, list(params.values())))


def _higher_gradient(model, episode: Episode, inner_params, lr: float, steps: int):
    """The same meta-gradient through ``higher``'s differentiable SGD."""
    optimiser = torch.optim.SGD(inner_params, lr=lr)
    with higher.innerloop_ctx(model, optimiser, copy_initial_weights=False) as (fmodel, diffopt):
        for _ in range(steps):
            diffopt.step(F.cross_entropy(fmodel(episode.support_x), episode.support_y))
        loss = F.cross_entropy(fmodel(episode.query_x), episode.query_y)
        return list(torch.autograd.grad(loss, list(model.parameters())))


def test_maml_second_order_gradient_matches_higher() -> None:
    model, episode = _tiny_task()
    learner = MAML(model, Classification(), Adaptation(0.3, 3), Adaptation(0.3, 3))
    ours = _meta_gradient(learner, episode)
    theirs = _higher_gradient(model, episode, model.parameters(), 0.3, 3)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


def test_anil_gradient_matches_higher_with_a_head_only_inner_loop() -> None:
    model, episode = _tiny_task(1)
    learner = ANIL(model, Classification(), Adaptation(0.5, 4), Adaptation(0.5, 4))
    ours = _meta_gradient(learner, episode)
    theirs = _higher_gradient(model, episode, model.head.parameters(), 0.5, 4)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("kind", [MAML, ANIL])
def test_second_order_gradient_matches_finite_differences(kind) -> None:
    model, episode = _tiny_task(2)
    learner = kind(model, Classification(), Adaptation(0.4, 2), Adaptation(0.4, 2))
    params = learner.parameters()
    gradient = _meta_gradient(learner, episode)
    direction = [torch.randn_like(p) for p in params.values()]
    eps = 1e-6

    def loss_at(sign: float) -> float:
        shifted = {n: (p + sign * eps * d).detach() for (n, p), d in zip(params.items(), direction)}
        shifted = {n: p.requires_grad_() for n, p in shifted.items()}
        return _query_loss(learner, shifted, episode).item()

    numeric = (loss_at(1.0) - loss_at(-1.0)) / (2 * eps)
    analytic = sum(float((g * d).sum()) for g, d in zip(gradient, direction))
    assert numeric == pytest.approx(analytic, rel=1e-5)


def test_first_order_maml_is_the_query_gradient_at_the_adapted_weights() -> None:
    model, episode = _tiny_task(3)
    learner = MAML(
        model, Classification(), Adaptation(0.3, 2), Adaptation(0.3, 2), first_order=True
    )
    ours = _meta_gradient(learner, episode)
    adapted = copy.deepcopy(model)
    optimiser = torch.optim.SGD(adapted.parameters(), lr=0.3)
    for _ in range(2):
        optimiser.zero_grad()
        F.cross_entropy(adapted(episode.support_x), episode.support_y).backward()
        optimiser.step()
    optimiser.zero_grad()
    F.cross_entropy(adapted(episode.query_x), episode.query_y).backward()
    for a, p in zip(ours, adapted.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-7, atol=1e-10)
    second = _meta_gradient(
        MAML(model, Classification(), Adaptation(0.3, 2), Adaptation(0.3, 2)), episode
    )
    assert any(not torch.allclose(a, b) for a, b in zip(ours, second))


def test_evaluation_adapts_without_a_meta_graph() -> None:
    model, episode = _tiny_task(4)
    learner = MAML(model, Classification(), Adaptation(0.3, 1), Adaptation(0.5, 5))
    before = learner.evaluate(learner.parameters(), [episode])
    assert before.graphs is None and not before.losses.requires_grad
    assert all(p.grad is None for p in model.parameters())
    # More inner steps on the support lower the support loss: evaluation really adapts.
    no_steps = MAML(model, Classification(), Adaptation(0.3, 1), Adaptation(0.5, 0))
    support_only = Episode(
        episode.support_x, episode.support_y, episode.support_x, episode.support_y
    )
    assert (
        learner.evaluate(learner.parameters(), [support_only]).losses
        < no_steps.evaluate(no_steps.parameters(), [support_only]).losses
    )


def _regression_task(seed: int = 3) -> tuple[FingerprintMLP, Episode]:
    torch.manual_seed(seed)
    model = FingerprintMLP(12, hidden=8).double()
    x = (torch.rand(14, 12, dtype=torch.float64) < 0.4).double()
    y = x[:, :4].sum(1) + 0.1 * torch.randn(14, dtype=torch.float64)
    return model, Episode(support_x=x[:5], support_y=y[:5], query_x=x[5:], query_y=y[5:])


@pytest.mark.parametrize(("kind", "first_order"), [(MAML, False), (MAML, True), (ANIL, False)])
def test_mse_meta_gradients_match_higher(kind, first_order: bool) -> None:
    """MAML, first-order MAML and ANIL with the regression objective: the meta-gradient of
    the query MSE equals higher's (first order: the query gradient at the adapted weights)."""
    model, episode = _regression_task()
    learner = kind(model, Regression(), Adaptation(0.05, 3), Adaptation(0.05, 3), first_order)
    ours = _meta_gradient(learner, episode)
    inner = model.head.parameters() if kind is ANIL else model.parameters()
    optimiser = torch.optim.SGD(inner, lr=0.05)
    mse = Regression().loss
    with higher.innerloop_ctx(
        model, optimiser, copy_initial_weights=False, track_higher_grads=not first_order
    ) as (fmodel, diffopt):
        for _ in range(3):
            diffopt.step(mse(fmodel(episode.support_x), episode.support_y))
        loss = mse(fmodel(episode.query_x), episode.query_y)
        if first_order:  # the gradient at the adapted weights, carried back unchanged
            adapted = list(fmodel.parameters())
            theirs = list(torch.autograd.grad(loss, adapted))
        else:
            theirs = list(torch.autograd.grad(loss, list(model.parameters())))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


def test_ridge_head_is_the_penalised_least_squares_solution_around_the_meta_head() -> None:
    """The ridge learner's adapted head minimises ‖y - f(x)‖² + λ‖Δ‖² over the change Δ of
    the head's weights and bias: the primal normal equations give the same head."""
    model, episode = _regression_task()
    learner = RidgeANIL(model, Regression(), Adaptation(0.05, 3), Adaptation(0.05, 3), penalty=0.7)
    params = {n: p.detach() for n, p in learner.parameters().items()}
    one = {n: p.unsqueeze(0) for n, p in params.items()}
    features = learner.features(one, episode.support_x.unsqueeze(0))[0]
    head = {"weight": params["head.weight"], "bias": params["head.bias"]}
    adapted = learner.adapt_head(
        {n: p.unsqueeze(0) for n, p in head.items()},
        features.unsqueeze(0),
        episode.support_y.unsqueeze(0),
        Adaptation(0.05, 3),
        False,
    )
    adapted = {n: p[0] for n, p in adapted.items()}
    design = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)
    residual = episode.support_y - (features @ head["weight"].T + head["bias"]).squeeze(1)
    normal = design.T @ design + 0.7 * torch.eye(design.shape[1], dtype=features.dtype)
    delta = torch.linalg.solve(normal, design.T @ residual)
    torch.testing.assert_close(adapted["weight"], head["weight"] + delta[:-1].unsqueeze(0))
    torch.testing.assert_close(adapted["bias"], head["bias"] + delta[-1:])
    # T tasks at once give each task the same head as one alone
    grouped = learner.adapt_head(
        {n: p.expand(2, *p.shape) for n, p in head.items()},
        features.expand(2, *features.shape),
        episode.support_y.expand(2, -1),
        Adaptation(0.05, 3),
        False,
    )
    torch.testing.assert_close(grouped["weight"][1], adapted["weight"])


def test_ridge_meta_gradient_matches_finite_differences() -> None:
    """The meta-gradient flows through the closed-form solve into the backbone."""
    model, episode = _regression_task()
    learner = RidgeANIL(model, Regression(), Adaptation(0.05, 3), Adaptation(0.05, 3))
    gradient = _meta_gradient(learner, episode)
    name, index = "backbone.layers.0.weight", (2, 5)
    position = list(learner.parameters()).index(name)
    params = learner.parameters()
    with torch.no_grad():
        losses = []
        for sign in (1, -1):
            params[name][index] += sign * 1e-6
            losses.append(float(_query_loss(learner, params, episode)))
            params[name][index] -= sign * 1e-6
    assert gradient[position][index] != 0
    torch.testing.assert_close(
        gradient[position][index].item(), (losses[0] - losses[1]) / 2e-6, rtol=1e-5, atol=1e-9
    )


def test_ridge_refuses_classification_configs() -> None:
    with pytest.raises(MetaschedError, match="ridge fits regression heads only"):
        load_config("glyphs-5w1s", ["learner.algorithm=ridge"])


def test_graph_bytes_counts_saved_activations_and_frees_the_graph() -> None:
    """graph_bytes sees what backward keeps (relu's 1000-float output, saved once) without
    keeping the graph alive afterwards: saved-tensor hooks that return the tensor leak it."""
    import weakref

    from metasched.learners.functional import graph_bytes

    x = torch.randn(1000, requires_grad=True)
    hidden = (x * 2).relu()
    loss = (hidden * hidden).sum()
    alive = weakref.ref(hidden)
    assert graph_bytes(loss) == 4000  # hidden, saved by relu and by the product, once
    del hidden, loss
    assert alive() is None
