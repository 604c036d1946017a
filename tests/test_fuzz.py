"""Fuzzing with hypothesis: whatever a config, an override, a data file, a metrics file or a
checkpoint holds, metasched answers with a result or a MetaschedError, never another
exception. ``METASCHED_FUZZ=long`` runs 20 times as many examples (docs/reliability.md)."""

from __future__ import annotations

import os
import string
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metasched.config import Config, load_config
from metasched.data.assay_csv import CsvColumns, read_assay_csv
from metasched.data.folder import load_image_folder
from metasched.errors import MetaschedError
from metasched.training.checkpoint import load_checkpoint
from metasched.training.metrics import read_metrics

SCALE = 20 if os.environ.get("METASCHED_FUZZ") == "long" else 1
FUZZ = settings(
    max_examples=60 * SCALE,
    deadline=None,
    derandomize=SCALE == 1,  # the same examples on every CI run; the long run explores
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _keys(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        keys += _keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
    return keys


KEYS = _keys(Config().to_dict())
SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["1e-3", "5e-4", ".inf", "-.nan", "cuda:7", "cpu:abc", "auto", "[1, 2]"]),
)


def _answers(action) -> None:
    """Runs ``action``; only a MetaschedError may come out (warnings are allowed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            action()
        except MetaschedError as error:
            assert "\n" not in str(error), str(error)


@FUZZ
@given(
    st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=20)), SCALARS), max_size=4)
)
def test_any_override_gives_a_config_or_a_one_line_error(pairs) -> None:
    overrides = [f"{key}={value}" for key, value in pairs]
    _answers(lambda: load_config("glyphs-5w1s", overrides))


@FUZZ
@given(
    st.recursive(
        SCALARS,
        lambda inner: (
            st.dictionaries(st.text(max_size=10), inner, max_size=4) | st.lists(inner, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_any_yaml_config_file_gives_a_config_or_a_one_line_error(tmp_path, document) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_text(yaml.safe_dump(document))
    _answers(lambda: load_config(str(path)))


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_as_a_config_file(tmp_path, data) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(data)
    _answers(lambda: load_config(str(path)))


CELLS = st.one_of(
    st.text(alphabet=string.printable, max_size=10),
    st.sampled_from(["CCO", "c1ccccc1", "C1CC", "nan", "", "7.5", "-1e400", "A0", "A1"]),
)


@FUZZ
@given(st.lists(st.lists(CELLS, min_size=0, max_size=4), max_size=12), st.booleans())
def test_any_assay_csv_gives_rows_or_a_one_line_error(tmp_path, rows, header) -> None:
    lines = [",".join(["assay", "smiles", "value"])] if header else []
    lines += [",".join(cell.replace("\n", " ") for cell in row) for row in rows]
    path = tmp_path / "fuzzed.csv"
    path.write_text("\n".join(lines))
    _answers(lambda: read_assay_csv(path, CsvColumns()))


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_as_an_assay_csv(tmp_path, data) -> None:
    path = tmp_path / "fuzzed.csv.gz"
    path.write_bytes(data)
    _answers(lambda: read_assay_csv(path, CsvColumns()))


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.text(max_size=60),
            st.sampled_from(['{"kind": "train", "iteration": 1}', "{}", "[]", "NaN"]),
        ),
        max_size=6,
    )
)
def test_any_metrics_file_gives_records_or_a_one_line_error(tmp_path, lines) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines))
    _answers(lambda: read_metrics(path, quiet=True))


@FUZZ
@given(st.binary(max_size=600))
def test_any_bytes_as_a_checkpoint(tmp_path, data) -> None:
    path = tmp_path / "fuzzed.pt"
    path.write_bytes(data)
    with pytest.raises(MetaschedError):
        load_checkpoint(path)


@FUZZ
@given(st.lists(st.binary(max_size=80), min_size=3, max_size=6))
def test_any_bytes_as_images(tmp_path, blobs) -> None:
    root = tmp_path / f"images{abs(hash(tuple(blobs)))}"
    for c, blob in enumerate(blobs):
        (root / f"class{c}").mkdir(parents=True)
        (root / f"class{c}" / "0.png").write_bytes(blob)
    _answers(lambda: load_image_folder(root, image_size=8))
    assert isinstance(root, Path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, glyphs) -> Path:
    """A tiny ATS run whose checkpoint holds every kind of state (optimiser, policy, RNGs)."""
    from metasched.training.trainer import Trainer

    from .conftest import tiny_overrides

    extras = {"train.iterations": 4, "scheduler.name": "ats", "scheduler.ats.warmup": 2}
    config = load_config("glyphs-5w1s", tiny_overrides(**extras, **{"scheduler.pool_size": 4}))
    run = tmp_path_factory.mktemp("fuzz") / "run"
    Trainer.create(config, run).fit(progress=False)
    return run


ODD_VALUES = st.one_of(
    SCALARS,
    st.sampled_from([[], {}, {"state": 3}, {"state": {}, "param_groups": "a"}, {"state": {}}]),
    st.builds(torch.zeros, st.integers(0, 4)),
    st.builds(lambda n: torch.zeros(n, dtype=torch.uint8), st.integers(0, 4)),
    st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
)
PARTS = ["config", "iteration", "model", "optimizer", "scheduler", "rng", "torch_rng",
         "best_score", "best_iteration", "updates", "seconds", "inputs"]  # fmt: skip


@settings(FUZZ, max_examples=25 * SCALE)
@given(st.sampled_from(PARTS), st.one_of(st.none(), ODD_VALUES), st.booleans())
def test_a_checkpoint_with_any_part_replaced_resumes_or_stops_in_one_line(
    tmp_path, finished_run, part, value, remove
) -> None:
    """The checkpoint loader with a well-formed file (a valid checksum) whose parts were
    replaced or removed: ``--resume`` trains on or answers in one line, never a traceback."""
    import shutil

    from metasched.training.checkpoint import save_checkpoint
    from metasched.training.trainer import Trainer

    run = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
    shutil.copytree(finished_run, run)
    payload = load_checkpoint(run / "last.pt")
    if remove:
        payload.pop(part)
    else:
        payload[part] = value
    save_checkpoint(run / "last.pt", payload)
    _answers(lambda: Trainer.resume(run, ["train.iterations=6"]).fit(progress=False))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.lists(
                st.text(min_size=1, max_size=6).filter(lambda s: s not in {".", ".."}),
                min_size=1,
                max_size=3,
            ),
            st.sampled_from(["png", "garbage", "empty", "link", "loop"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_folder_tree_gives_class_pools_or_a_one_line_error(tmp_path, glyphs, tree) -> None:
    """The image-folder scanner over trees of any names and depth, holding images, garbage,
    empty files, links to folders and links back to an ancestor."""
    from PIL import Image

    root = Path(tempfile.mkdtemp(dir=tmp_path))
    for parts, kind in tree:
        safe = [p.replace("/", "_").replace("\0", "_") for p in parts]
        try:
            path = root.joinpath(*safe)
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "png":
                Image.fromarray(glyphs.train.class_images(0)[0, 0]).save(path.with_suffix(".png"))
            elif kind == "garbage":
                path.with_suffix(".png").write_bytes(b"\x89PNG not really")
            elif kind == "empty":
                path.with_suffix(".jpg").write_bytes(b"")
            elif kind == "link":
                path.symlink_to(tmp_path)
            else:
                path.symlink_to(root)
        except (OSError, ValueError):  # a name the file system refuses, or one taken
            continue
    _answers(lambda: load_image_folder(root, image_size=8))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=0, max_size=4)), max_size=6))
def test_a_valid_assay_csv_with_any_bytes_changed(tmp_path, edits) -> None:
    """The CSV reader on a valid table with bytes replaced, inserted or cut anywhere (quotes,
    commas, NULs, a byte order mark, invalid UTF-8)."""
    rows = [["A1", "CCO", "5.1"], ["A1", "c1ccccc1", "6.2"], ["A2", "CCN", "4.0"]] * 3
    data = bytearray("\n".join(",".join(r) for r in [["assay", "smiles", "value"], *rows]), "ascii")
    for position, replacement in edits:
        at = position % (len(data) + 1)
        data[at : at + len(replacement) % 3] = replacement
    path = tmp_path / "edited.csv"
    path.write_bytes(bytes(data))
    _answers(lambda: read_assay_csv(path, CsvColumns()))
