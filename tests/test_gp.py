"""Gaussian-process learners: the posterior against an independent computation, the
meta-gradient against finite differences, learning, the per-task GP baseline, calibrated
intervals in ``metasched predict``, and the benchmark protocol."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from metasched.benchmark import (
    benchmark_draws,
    benchmark_episodes,
    run_benchmark,
    trained_learner,
)
from metasched.cli import main
from metasched.config import load_config
from metasched.data.fingerprints import morgan_fingerprints
from metasched.data.registry import load_dataset
from metasched.learners import Adaptation, DeepKernelGP, Regression, TanimotoGP
from metasched.learners.gp import Rows, marginal_nll, posterior
from metasched.models import FingerprintMLP
from metasched.tasks import Episode
from metasched.training.trainer import Trainer

from .conftest import directional_derivatives
from .molecules import write_csv
from .test_regression import learnable_csv, overrides


def _bits(n: int, d: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.3).double()


def _numpy_gp(train: np.ndarray, targets: np.ndarray, test: np.ndarray, scale: float,
              noise: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The textbook formulas with an explicit inverse: mean k*ᵀ(K + σ²I)⁻¹y, variance
    k** - k*ᵀ(K + σ²I)⁻¹k* + σ², on a Tanimoto kernel written out element by element."""

    def tanimoto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros((len(a), len(b)))
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                shared = np.minimum(x, y).sum()
                out[i, j] = shared / (x.sum() + y.sum() - shared)
        return scale * out

    inverse = np.linalg.inv(tanimoto(train, train) + (noise + 1e-6) * np.eye(len(train)))
    cross = tanimoto(train, test)
    mean = cross.T @ inverse @ targets
    variance = np.diag(tanimoto(test, test)) - np.einsum("ij,ik,kj->j", cross, inverse, cross)
    return mean, variance + noise


def test_the_posterior_and_marginal_likelihood_match_the_textbook() -> None:
    train, test = _bits(12, 40, 0), _bits(5, 40, 1)
    targets = torch.randn(12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    hyper = torch.tensor([[np.log(0.3), 0.0, np.log(1.5)]], dtype=torch.float64)
    parts = ("fingerprints",)
    mean, variance = posterior(
        parts, hyper, Rows(train[None], train[None]), targets[None], Rows(test[None], test[None])
    )
    expected_mean, expected_variance = _numpy_gp(
        train.numpy(), targets.numpy(), test.numpy(), 1.5**2, 0.3**2
    )
    np.testing.assert_allclose(mean[0].numpy(), expected_mean, rtol=1e-9)
    np.testing.assert_allclose(variance[0].numpy(), expected_variance, rtol=1e-9)
    k = (  # -log N(y; 0, K + σ²I) / n, by slogdet and solve
        np.array(
            [
                [
                    np.minimum(x, y).sum() / (x.sum() + y.sum() - np.minimum(x, y).sum())
                    for y in train.numpy()
                ]
                for x in train.numpy()
            ]
        )
        * 1.5**2
        + (0.09 + 1e-6) * np.eye(12)
    )
    y = targets.numpy()
    fit, log_det = y @ np.linalg.solve(k, y), np.linalg.slogdet(k)[1]
    expected_nll = 0.5 * (fit + log_det + 12 * np.log(2 * np.pi)) / 12
    nll = marginal_nll(parts, hyper, Rows(train[None], train[None]), targets[None])
    assert float(nll[0]) == pytest.approx(expected_nll, rel=1e-9)


def test_a_sum_of_kernel_parts_matches_the_textbook() -> None:
    """Tanimoto on the raw bits, RBF and linear on the features, each with its own scale:
    the posterior against an explicit inverse of the summed Gram matrix."""
    raw_train, raw_test = _bits(10, 30, 3), _bits(4, 30, 4)
    generator = torch.Generator().manual_seed(6)
    features = torch.randn(14, 6, generator=generator, dtype=torch.float64)
    targets = torch.randn(10, generator=generator, dtype=torch.float64)
    noise, length, scales = 0.4, 1.3, (0.7, 1.2, 0.9)
    hyper = torch.tensor([[np.log(noise), np.log(length), *np.log(scales)]], dtype=torch.float64)
    train = Rows(raw_train[None], features[None, :10])
    test = Rows(raw_test[None], features[None, 10:])
    mean, variance = posterior(("fingerprints", "rbf", "linear"), hyper, train, targets[None], test)

    def gram(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        raw, f = np.concatenate([raw_train, raw_test]).astype(float), features.numpy()
        out = np.zeros((len(i), len(j)))
        for a, p in enumerate(i):
            for b, q in enumerate(j):
                shared = np.minimum(raw[p], raw[q]).sum()
                tanimoto = shared / (raw[p].sum() + raw[q].sum() - shared)
                distance = np.sum((f[p] - f[q]) ** 2) / (length**2 * f.shape[1])
                linear = f[p] @ f[q] / f.shape[1]
                out[a, b] = (scales[0] ** 2 * tanimoto + scales[1] ** 2 * np.exp(-distance / 2)
                             + scales[2] ** 2 * linear)  # fmt: skip
        return out

    seen, new = np.arange(10), np.arange(10, 14)
    inverse = np.linalg.inv(gram(seen, seen) + (noise**2 + 1e-6) * np.eye(10))
    cross = gram(seen, new)
    expected_mean = cross.T @ inverse @ targets.numpy()
    expected_variance = np.diag(gram(new, new)) - np.einsum("ij,ik,kj->j", cross, inverse, cross)
    np.testing.assert_allclose(mean[0].numpy(), expected_mean, rtol=1e-9)
    np.testing.assert_allclose(variance[0].numpy(), expected_variance + noise**2, rtol=1e-9)


def _learner(kernel: str, steps: int) -> DeepKernelGP:
    torch.manual_seed(0)
    model = FingerprintMLP(40, 1, hidden=8).double()
    return DeepKernelGP(model, Regression(), Adaptation(0.1, steps), Adaptation(0.1, steps),
                        kind=kernel)  # fmt: skip


def _episodes(count: int) -> list[Episode]:
    rng = torch.Generator().manual_seed(5)
    episodes = []
    for t in range(count):
        x = _bits(14, 40, 10 + t)
        y = x[:, :10].sum(1) * 0.5 + torch.randn(14, generator=rng, dtype=torch.float64) * 0.1
        y = (y - y[:8].mean()) / y[:8].std()
        episodes.append(Episode(x[:8], y[:8], x[8:], y[8:]))
    return episodes


@pytest.mark.parametrize(
    ("kernel", "steps"), [("fingerprints+rbf", 0), ("rbf", 2), ("fingerprints+rbf+linear", 3)]
)
def test_the_meta_gradient_matches_finite_differences(kernel: str, steps: int) -> None:
    """Deep kernel transfer (no inner steps) and adaptive hyperparameter fitting (two steps,
    differentiated through): the meta-gradient along a random direction of the first layer and
    of the GP's noise equals a central finite difference."""
    learner = _learner(kernel, steps)
    episodes = _episodes(3)
    params = learner.parameters()

    def meta_loss() -> torch.Tensor:
        return torch.stack(learner.outcomes(learner.parameters(), episodes).graphs).mean()

    for name in ("backbone.layers.0.weight", "gp.log_noise"):
        direction = torch.randn_like(params[name])
        exact, numeric = directional_derivatives(meta_loss, params[name], direction, 1e-6)
        assert exact == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_the_per_task_gp_matches_the_textbook_at_its_fitted_hyperparameters() -> None:
    episode = _episodes(1)[0]
    baseline = TanimotoGP(Regression(), steps=60)
    as_float = [
        getattr(episode, n).float() for n in ("support_x", "support_y", "query_x", "query_y")
    ]
    predicted = baseline.predict(Episode(*as_float))
    raw = episode.support_x[None]
    targets = episode.support_y - episode.support_y.mean()
    hyper = torch.tensor([[-1.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([hyper], lr=0.05)
    for _ in range(60):  # the fit, redone: the baseline must use its fitted hyperparameters
        optimiser.zero_grad()
        marginal_nll(("fingerprints",), hyper, Rows(raw, raw), targets[None]).sum().backward()
        optimiser.step()
    fitted = hyper.detach()[0]
    start = torch.tensor([[-1.0, 0.0, 0.0]], dtype=torch.float64)
    nll = [float(marginal_nll(("fingerprints",), h, Rows(raw, raw), targets[None]).sum())
           for h in (start, fitted[None])]  # fmt: skip
    assert nll[1] < nll[0]  # the fit raised the support's likelihood
    noise, scale = float(fitted[0].exp() ** 2), float(fitted[2].exp() ** 2)
    mean, variance = _numpy_gp(episode.support_x.numpy(), targets.numpy(),
                               episode.query_x.numpy(), scale, noise)  # fmt: skip
    np.testing.assert_allclose(predicted[:, 0].numpy(), mean + episode.support_y.mean().item(),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(predicted[:, 1].numpy(), variance, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def gp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A deep-kernel GP meta-trained on learnable assays: (data file, run directory)."""
    tmp_path = tmp_path_factory.mktemp("gp")
    path = learnable_csv(tmp_path)
    settings = overrides(path, **{"learner.algorithm": "gp", "learner.kernel": "rbf",
                                  "learner.inner_steps": 0, "learner.eval_inner_steps": 0,
                                  "train.iterations": 60, "train.val_every": 10})  # fmt: skip
    config = load_config("drug-demo", settings)
    Trainer.create(config, tmp_path / "run").fit(progress=False)
    return path, tmp_path / "run"


def test_the_adaptive_deep_kernel_gp_learns(tmp_path: Path) -> None:
    """With its kernel fitted to each support (3 steps in training, 10 at evaluation), the
    meta-learned features still raise the validation pearson R² well above the start."""
    from metasched.training.metrics import read_metrics

    settings = overrides(learnable_csv(tmp_path), **{"learner.algorithm": "gp",
                         "learner.kernel": "rbf", "learner.inner_steps": 3,
                         "learner.eval_inner_steps": 10, "train.iterations": 60,
                         "train.val_every": 10})  # fmt: skip
    Trainer.create(load_config("drug-demo", settings), tmp_path / "run").fit(progress=False)
    val = [
        r["score"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "val"
    ]
    assert len(val) == 6 and max(val[-3:]) > val[0] + 0.1


def test_the_deep_kernel_gp_learns(gp_run: tuple[Path, Path]) -> None:
    """Its validation pearson R² after meta-training is well above the one at the start."""
    from metasched.training.metrics import read_metrics

    val = [r["score"] for r in read_metrics(gp_run[1] / "metrics.jsonl") if r["kind"] == "val"]
    assert len(val) == 6 and max(val[-3:]) > val[0] + 0.1


@pytest.mark.parametrize("standardise", [True, False])
def test_predict_gives_the_benchmark_paths_means_and_deviations(
    gp_run: tuple[Path, Path], tmp_path: Path, standardise: bool
) -> None:
    """``metasched predict``, given a held-out assay's benchmark support and query as CSV
    files, writes the means and standard deviations the benchmark's own path (its learner
    loading and its episodes) gives on the assay's scale, whether or not the run trained on
    standardised targets."""
    path, run = gp_run
    if not standardise:  # a short run on raw targets: the paths must agree, not learn
        settings = overrides(path, **{"learner.algorithm": "gp", "learner.kernel": "rbf",
                                      "task.assays.standardise": False,
                                      "train.iterations": 10, "train.val_every": 10})  # fmt: skip
        run = tmp_path / "raw"
        Trainer.create(load_config("drug-demo", settings), run).fit(progress=False)
    learner, config = trained_learner(run, [])
    assert config.task.assays.standardise is standardise
    pool = load_dataset(config.data).test
    draw = benchmark_draws(pool, [6], 1, 4)[0]
    episode = benchmark_episodes(pool, config).episode(draw.assay, draw.support, draw.query)
    predicted = learner.predict(learner.parameters(), episode)
    means = predicted[:, 0] * episode.target_scale + episode.target_shift
    deviations = predicted[:, 1].sqrt() * episode.target_scale

    # The SMILES of the pool's rows, found by their fingerprints among the assay's rows.
    with open(path) as handle:
        assay = [r for r in csv.DictReader(handle) if r["assay"] == pool.assay_ids[draw.assay]]
    prints = morgan_fingerprints([r["smiles"] for r in assay], config.data.fingerprint)
    bits = np.unpackbits(prints.packed, axis=1, count=pool.bits)
    by_print = {b.tobytes(): r["smiles"] for b, r in zip(bits, assay)}

    def smiles(rows: np.ndarray) -> list[str]:
        return [by_print[x.astype(np.uint8).tobytes()] for x in pool.inputs(rows)]

    support, query = tmp_path / "support.csv", tmp_path / "query.csv"
    measured = zip(smiles(draw.support), pool.targets[draw.support].tolist())
    write_csv(support, ["smiles", "value"], [list(row) for row in measured])
    write_csv(query, ["smiles"], [[name] for name in smiles(draw.query)])
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run), "--support", str(support), "--query", str(query),
                 "--out", str(out)]) == 0  # fmt: skip
    with open(out) as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(draw.query)
    np.testing.assert_allclose([float(r["prediction"]) for r in written], means, atol=2e-4)
    np.testing.assert_allclose([float(r["std"]) for r in written], deviations, atol=2e-4)


def test_the_benchmark_draws_are_seeded_by_assay_and_every_method_sees_them(
    gp_run: tuple[Path, Path], tmp_path: Path
) -> None:
    path, run = gp_run
    config = load_config("drug-demo", overrides(path))
    pool = load_dataset(config.data).test
    first = benchmark_draws(pool, [4, 8], 3, 4)
    # An assay in a pool of other assays, in another order, gets the same supports.
    train = load_dataset(config.data).train
    order = [*range(train.num_assays - 1, 1, -1), 0]  # assay 1 left out, assay 0 last
    rows = np.concatenate([train.rows(a) for a in order])
    other = dataclasses.replace(
        train,
        compounds=train.compounds[rows], targets=train.targets[rows], roles=train.roles[rows],
        starts=np.cumsum([0, *(len(train.rows(a)) for a in order)]),
        assay_ids=tuple(train.assay_ids[a] for a in order),
        assay_types=tuple(train.assay_types[a] for a in order),
    )  # fmt: skip
    assert other.assay_ids[-1] == train.assay_ids[0] and other.num_assays >= 3

    def supports(draws, of, assay):  # by position within the assay
        return [
            (d.size, (d.support - of.starts[assay]).tolist()) for d in draws if d.assay == assay
        ]

    moved = supports(benchmark_draws(other, [4, 8], 3, 4), other, other.num_assays - 1)
    assert supports(benchmark_draws(train, [4, 8], 3, 4), train, 0) == moved and len(moved) == 6
    assert all(len(d.support) == d.size and not set(d.support) & set(d.query) for d in first)
    assert len({tuple(d.support) for d in first if d.assay == 0 and d.size == 4}) == 3
    table, files = run_benchmark(
        [run], ["forest", "gp"], [4, 8], 2, tmp_path / "b", progress=False, min_query=4
    )
    assert "| run | 4 |" in table and "| forest | 8 |" in table and "| gp | 4 |" in table
    with open(files[1]) as handle:
        per_assay = list(csv.DictReader(handle))
    methods = {r["method"] for r in per_assay}
    assert methods == {"run", "forest", "gp"}
    assert all(r["draws"] == "2.0" for r in per_assay)


def test_the_prior_variance_stays_on_the_features_device() -> None:
    """k(x, x) is built where the features live (a CUDA run adds it to them); the "meta"
    device stands in for a GPU on machines without one."""
    from metasched.learners.gp import _self_covariance

    rows = Rows(torch.zeros(2, 3, 8, device="meta"), torch.zeros(2, 3, 4, device="meta"))
    hyper = torch.zeros(2, 5, device="meta")
    assert _self_covariance(("rbf", "linear", "tanimoto"), hyper, rows).device.type == "meta"
