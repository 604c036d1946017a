"""Fuzzing with hypothesis: whatever a config, an override, a data file, a metrics file or a
checkpoint holds, metasched answers with a result or a MetaschedError, never another
exception. ``METASCHED_FUZZ=long`` runs 20 times as many examples (docs/reliability.md)."""

from __future__ import annotations

import os
import string
import warnings
from pathlib import Path

import pytest
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
