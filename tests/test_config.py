"""Configs and the command line: presets, overrides, one-line errors with exit code 2."""

from __future__ import annotations

import pytest

from metasched.cli import main
from metasched.config import Config, load_config, parse_override, preset_names
from metasched.errors import MetaschedError


def test_presets_load_and_are_checked() -> None:
    assert {"demo", "glyphs-5w1s", "glyphs-5w5s"} <= set(preset_names())
    for name in preset_names():
        assert isinstance(load_config(name), Config)
    assert load_config("glyphs-5w5s").task.k_shot == 5


def test_overrides_are_typed() -> None:
    config = load_config(
        "glyphs-5w1s", ["train.iterations=7", "learner.inner_lr=1", "task.train_classes=[1, 2, 3]"]
    )
    assert config.train.iterations == 7
    assert config.learner.inner_lr == 1.0 and isinstance(config.learner.inner_lr, float)
    assert config.task.train_classes == [1, 2, 3]
    assert parse_override("data.root=/tmp/x") == (["data", "root"], "/tmp/x")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.iteratons=5"], "did you mean train.iterations"),
        (["train.iterations=many"], "train.iterations='many' is not a valid int"),
        (["learner.inner_lr=-0.1"], "learner.inner_lr must be positive"),
        (["train.meta_lr=0"], "train.meta_lr must be positive"),
        (["learner.algorithm=reptile"], "use maml, anil, ridge or gp"),
        (["task.noise_ratio=1.5"], "task.noise_ratio must lie in"),
        (["scheduler.pool_size=1"], "smaller than train.meta_batch_size"),
        (["scheduler.name=ats"], "set scheduler.pool_size above train.meta_batch_size=4"),
        (["scheduler.name=greedy"], "set scheduler.pool_size above train.meta_batch_size=4"),
        (["scheduler.name=sgd"], "unknown scheduler.name='sgd'; use one of uniform, oracle"),
        (
            ["scheduler.temperature=0.5"],
            "a setting of the ats, agreement scheduler.*scheduler.ats.temperature",
        ),
        (["scheduler.ats.temperatur=0.5"], "did you mean scheduler.ats.temperature"),
        (["scheduler.ats.inputs=[loss, nope]"], "scheduler.ats.inputs=.*list distinct ones"),
        (["scheduler.spl.start=0"], "scheduler.spl needs 0 < start"),
        (["scheduler.bass.selection=best"], "scheduler.bass.selection must be top-k or sample"),
        (["task.noise=shuffle"], "task.noise='shuffle'; use one of redraw, flip, permute"),
        (["task.reward_split=test"], "task.reward_split='test'; use one of val-reward"),
        (["iterations"], "is not key=value"),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(MetaschedError, match=message):
        load_config("glyphs-5w1s", overrides)


def test_each_scheduler_has_its_own_typed_section_and_only_the_named_one_counts() -> None:
    config = load_config(
        "glyphs-noisy", ["scheduler.name=spl", "scheduler.spl.start=0.4", "scheduler.ats.warmup=7"]
    )
    assert config.scheduler.settings.start == 0.4
    assert config.scheduler.options["ats"].warmup == 7  # kept, for a later switch back
    values = config.to_dict()["scheduler"]
    assert values["spl"]["start"] == 0.4 and values["ats"]["warmup"] == 7
    assert load_config("glyphs-5w1s").to_dict()["scheduler"] == {
        "name": "uniform",
        "pool_size": None,
        "gradient_layers": "all",
        "pool_precision": "fp32",
        "reuse_graphs": True,
        "graph_memory_gb": 0.5,
        "uniform": {},
    }


def _cli_error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("metasched: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_cli_errors_are_one_line_with_exit_code_2(capsys, tmp_path, glyphs) -> None:
    assert "no preset or file named 'nope'" in _cli_error(capsys, "train", "--config", "nope")
    assert "did you mean" in _cli_error(
        capsys, "train", "--config", "demo", "--set", "train.meta_batchsize=2"
    )
    assert "data.root" in _cli_error(
        capsys,
        "train",
        "--config",
        "demo",
        "--set",
        "data.name=folder",
        "--run-dir",
        str(tmp_path / "a"),
    )
    assert "does not exist" in _cli_error(
        capsys,
        "train",
        "--config",
        "demo",
        "--set",
        "data.name=folder",
        "--set",
        f"data.root={tmp_path / 'missing'}",
        "--run-dir",
        str(tmp_path / "b"),
    )
    assert "lower task.k_shot or task.q_query" in _cli_error(
        capsys,
        "train",
        "--config",
        "demo",
        "--set",
        "task.k_shot=10",
        "--set",
        "task.q_query=15",
        "--run-dir",
        str(tmp_path / "c"),
    )
    assert "does not exist" in _cli_error(capsys, "evaluate", str(tmp_path / "nothing.pt"))
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    assert "not valid YAML" in _cli_error(capsys, "train", "--config", str(tmp_path / "bad.yaml"))


def test_data_list(capsys) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "glyphs" in out and "omniglot" in out and "folder" in out


def test_exponent_floats_without_a_dot_are_floats() -> None:
    """YAML 1.1 reads ``1e-4`` as a string; a float setting accepts it all the same."""
    config = load_config("glyphs-5w1s", ["train.meta_lr=1e-4", "train.clip_grad_norm=2E1"])
    assert config.train.meta_lr == 1e-4 and config.train.clip_grad_norm == 20.0
    with pytest.raises(MetaschedError, match="not a valid float"):
        load_config("glyphs-5w1s", ["train.meta_lr=1e-4x"])


def test_presets_extend_others_section_by_section(tmp_path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("task: {n_way: 3, k_shot: 2}\ntrain: {iterations: 7}\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {base}\ntask: {{k_shot: 4}}\n")
    config = load_config(str(child))
    assert (config.task.n_way, config.task.k_shot, config.train.iterations) == (3, 4, 7)
    base.write_text(f"extends: {child}\n")
    with pytest.raises(MetaschedError, match="extends itself"):
        load_config(str(child))


def test_glyph_variant_of_the_paper_preset_is_the_results_protocol() -> None:
    """paper/glyphs-noisy-1shot-0.6 inherits every method setting from the miniImageNet preset
    and is exactly the protocol that docs/results.md ran as glyphs-noisy."""
    assert load_config("paper/glyphs-noisy-1shot-0.6") == load_config("glyphs-noisy")
    mini = load_config("paper/noisy-5shot-0.8")
    assert (mini.task.k_shot, mini.task.noise_ratio, mini.scheduler.pool_size) == (5, 0.8, 15)
    assert (mini.data.name, mini.data.image_size, mini.train.iterations) == (
        "miniimagenet",
        84,
        30000,
    )


def test_paper_budgets_are_the_reference_codes_class_indices() -> None:
    """The budget presets list wnids (supplement D.1); on miniImageNet's sorted training classes
    they must pick the reference code's indices (ats-method.md §3.3)."""
    from metasched.data.miniimagenet import WNIDS
    from metasched.tasks.sampler import budget_classes

    reference = {
        16: [24, 63, 43, 34, 23, 50, 42, 19, 30, 29, 54, 35, 0, 21, 26, 45],
        48: [
            *(7, 22, 61, 18, 14, 30, 46, 4, 32, 6, 15, 48, 5, 25, 41, 54, 42, 60, 58, 29, 53),
            *(27, 50, 55, 19, 45, 52, 9, 44, 13, 28, 63, 62, 57, 56, 33, 20, 47, 3, 12, 39, 17),
            *(51, 49, 31, 24, 34, 43),
        ],
    }
    for size, indices in reference.items():
        budget = load_config(f"paper/budget-{size}").task.train_classes
        assert budget_classes(WNIDS["train"], budget) == indices
    assert load_config("paper/budget-64").task.train_classes is None


def test_bf16_pool_scoring_is_flagged_on_cpus_without_bf16_instructions(monkeypatch) -> None:
    from metasched import cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    advice = cpu.bf16_advice("cpu", "bf16")
    assert advice is not None and "pool_precision=fp32" in advice
    assert cpu.bf16_advice("cpu", "fp32") is None and cpu.bf16_advice("cuda", "bf16") is None
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert cpu.native_bf16() and cpu.bf16_advice("cpu", "bf16") is None
    monkeypatch.setattr(cpu, "cpu_flags", frozenset)  # flags unknown: no guess, no warning
    assert cpu.native_bf16() is None and cpu.bf16_advice("cpu", "bf16") is None


def test_an_override_holding_bytes_that_are_not_utf8_names_them(capsys) -> None:
    """A path in another encoding reaches argv as surrogates: one line saying so, exit 2."""
    args = ["train", "--config", "glyphs-5w1s", "--set", "data.root=imgs\udcff", "--quiet"]
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "not UTF-8" in error[0] and "rename the file" in error[0]
