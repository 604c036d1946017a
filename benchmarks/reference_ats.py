"""The reference ATS code's algorithmic structure (ats-method.md section 7), for timing.

One iteration as github.com/huaxiuyao/ATS (Miniimagenet/main.py, sampling_method='ATS') does
it, on our model and tasks: a plain per-task loop; ANIL adaptation that reruns the backbone at
every inner step with ``create_graph=True``; support and query gradients of all tensors by
separate ``autograd.grad`` calls; the pool scored twice per iteration (before and after the
scheduler update, with an unchanged θ0); the proposal's losses recomputed; a look-ahead
gradient with ``create_graph=True``; the reward from 5 head steps on each validation task;
the meta-update's tasks recomputed once more. Only used to measure the speed-up, never to train.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metasched.schedulers.ats import ATSNetwork
from metasched.stats import PoolStats
from metasched.tasks import Episode


class ReferenceStructure:
    """Times the reference's per-iteration work on a Conv4 (or MLP) with a linear head."""

    def __init__(self, model: nn.Module, inner_lr: float, steps: int, num_layers: int) -> None:
        self.model = model
        self.inner_lr, self.steps = inner_lr, steps
        self.network = ATSNetwork(num_layers, faithful=True)
        self.scheduler_optimizer = torch.optim.Adam(self.network.parameters(), lr=1e-3)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.scored = [
            n for n, _ in model.named_parameters() if ".norm." not in n and ".norms." not in n
        ]

    def adapted_logits(self, params: dict[str, torch.Tensor], episode: Episode) -> torch.Tensor:
        """ANIL as the reference writes it: the whole network reruns at every inner step."""
        head = {n: params[n] for n in ("head.weight", "head.bias")}
        for _ in range(self.steps):
            logits = functional_call(self.model, {**params, **head}, (episode.support_x,))
            loss = F.cross_entropy(logits, episode.support_y)
            grads = torch.autograd.grad(loss, list(head.values()), create_graph=True)
            head = {n: p - self.inner_lr * g for (n, p), g in zip(head.items(), grads)}
        return functional_call(self.model, {**params, **head}, (episode.query_x,))

    def anil_query_loss(self, params: dict[str, torch.Tensor], episode: Episode) -> torch.Tensor:
        return F.cross_entropy(self.adapted_logits(params, episode), episode.query_y)

    def pool_features(self, episodes: list[Episode]) -> PoolStats:
        """``Scheduler.get_weight``: one Python loop over the pool, graphs built and wasted."""
        params: dict[str, torch.Tensor] = dict(self.model.named_parameters())
        losses, norms, cosines = [], [], []
        for episode in episodes:
            losses.append(self.anil_query_loss(params, episode).detach())
            support = F.cross_entropy(self.model(episode.support_x), episode.support_y)
            query = F.cross_entropy(self.model(episode.query_x), episode.query_y)
            g_s = torch.autograd.grad(support, list(params.values()))
            g_q = torch.autograd.grad(query, list(params.values()))
            by_name_s, by_name_q = dict(zip(params, g_s)), dict(zip(params, g_q))
            cosines.append(
                torch.stack(
                    [
                        F.cosine_similarity(
                            by_name_s[n].flatten(), by_name_q[n].flatten(), dim=0, eps=1e-8
                        )
                        for n in self.scored
                    ]
                )
            )
            norms.append(torch.stack([by_name_q[n].norm() for n in self.scored]))
        query_norm = torch.stack(norms)
        ones = torch.ones_like(query_norm)
        stats = PoolStats(torch.stack(losses), ones, query_norm, torch.stack(cosines) * query_norm)
        return stats.to("cpu")  # the scheduler network lives on the CPU, as in the trainer

    def iteration(
        self, episodes: list[Episode], validation: list[Episode], rng: np.random.Generator
    ) -> None:
        """One post-warm-up iteration."""
        batch = len(validation)
        stats = self.pool_features(episodes)
        probabilities = F.softmax(self.network(stats, 0.5), dim=0)
        chosen = _draw(probabilities, batch, rng)
        params: dict[str, torch.Tensor] = dict(self.model.named_parameters())
        loss = torch.stack([self.anil_query_loss(params, episodes[i]) for i in chosen]).mean()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        lookahead = {n: p - 0.01 * g for (n, p), g in zip(params.items(), grads)}
        accuracies = [
            (self.adapted_logits(lookahead, e).argmax(-1) == e.query_y).float().mean().item()
            for e in validation
        ]
        reward = float(np.mean(accuracies))
        log_prob = torch.log(probabilities[torch.as_tensor(chosen)]).sum()
        self.scheduler_optimizer.zero_grad()
        (-log_prob * reward).backward()
        self.scheduler_optimizer.step()
        stats = self.pool_features(episodes)  # the second scoring, with the same θ0
        with torch.no_grad():
            probabilities = F.softmax(self.network(stats, 0.5) / 0.1, dim=0)
        chosen = _draw(probabilities, batch, rng)
        loss = torch.stack([self.anil_query_loss(params, episodes[i]) for i in chosen]).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def _draw(probabilities: torch.Tensor, count: int, rng: np.random.Generator) -> np.ndarray:
    p = probabilities.detach().double().numpy()
    return rng.choice(len(p), count, replace=False, p=p / p.sum())
