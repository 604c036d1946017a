"""FS-Mol (Stanley et al., NeurIPS 2021 Datasets and Benchmarks; ChEMBL assays, CC BY-SA 3.0).

Two layouts give the same table:

* FS-Mol's own: a folder with ``train/``, ``valid/`` and ``test/``, one ``<assay>.jsonl.gz``
  per assay, one JSON object per line with ``SMILES``, ``Assay_ID``, ``AssayType`` and
  ``LogRegressionProperty`` (FS-Mol's log-scaled activity). Meta-splits are FS-Mol's.
* The compact CSV (``split, assay_id, assay_type, smiles, ..., log_regression, ...``), which
  holds FS-Mol's train and valid splits only. Meta-test is then a held-out part of train:
  :data:`HELD_OUT_ASSAYS` train assays with at least :data:`HELD_OUT_MIN_COMPOUNDS` distinct
  SMILES that have a value (96 are needed for a support of 64 and a query of 32; the margin
  covers unparsable SMILES and two spellings of one compound), drawn with a fixed seed;
  FS-Mol's valid split is meta-validation.

The target is ``log_regression``; censored measurements (relation ``<``, ``>``) are kept as
FS-Mol's regression work does.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from metasched.data.assays import (
    NO_ROLE,
    AssayTable,
    build_assay_splits,
    cached_assays,
    file_identity,
    parse_value,
    read_rows,
)
from metasched.data.fingerprints import FingerprintSpec
from metasched.data.pool import AssayPool, DataSplits
from metasched.errors import MetaschedError

FOLDERS = {"train": "train", "valid": "val", "test": "test"}
HELD_OUT_ASSAYS = 200
HELD_OUT_MIN_COMPOUNDS = 100
HELD_OUT_SEED = 0
CSV_COLUMNS = ("split", "assay_id", "assay_type", "smiles", "log_regression")


def read_fsmol_csv(path: Path) -> AssayTable:
    """The compact CSV; train assays held out as meta-test as the module says."""
    ids: list[str] = []
    smiles: list[str] = []
    values: list[float] = []
    splits: list[str] = []
    types: list[str] = []
    for line, row in read_rows(path, CSV_COLUMNS):
        if row["split"] not in ("train", "valid"):
            raise MetaschedError(
                f"{path}, line {line}: split {row['split']!r}; the compact FS-Mol CSV holds"
                " train and valid rows"
            )
        ids.append(row["assay_id"])
        smiles.append(row["smiles"])
        values.append(parse_value(row["log_regression"], str(path), line, "log_regression"))
        splits.append("train" if row["split"] == "train" else "val")
        types.append(row["assay_type"])
    held_out = set(held_out_assays(ids, smiles, splits, values))
    splits = ["test" if a in held_out else s for a, s in zip(ids, splits)]
    note = (
        f"meta-test: {len(held_out)} FS-Mol train assays with >= {HELD_OUT_MIN_COMPOUNDS}"
        f" distinct SMILES with a value, held out (seed {HELD_OUT_SEED})"
    )
    roles = np.full(len(ids), NO_ROLE, np.int8)
    return AssayTable(str(path), ids, smiles, np.asarray(values), splits, roles, types, [note])


def held_out_assays(
    ids: list[str], smiles: list[str], splits: list[str], values: list[float]
) -> list[str]:
    """The train assays held out as meta-test: a seeded draw among the large enough ones."""
    distinct: dict[str, set[str]] = {}
    for assay, text, split, value in zip(ids, smiles, splits, values):
        if split == "train" and value == value:  # NaN: no value
            distinct.setdefault(assay, set()).add(text)
    large = sorted(a for a, s in distinct.items() if len(s) >= HELD_OUT_MIN_COMPOUNDS)
    if len(large) < 2:
        raise MetaschedError(
            f"only {len(large)} FS-Mol train assays have >= {HELD_OUT_MIN_COMPOUNDS} compounds;"
            " the compact CSV needs some to hold out as meta-test (or use FS-Mol's own folders)"
        )
    count = min(HELD_OUT_ASSAYS, len(large) // 2)
    order = np.random.default_rng(HELD_OUT_SEED).permutation(len(large))
    return sorted(large[i] for i in order[:count])


def read_fsmol_folders(root: Path) -> AssayTable:
    """FS-Mol's own layout: ``{train,valid,test}/<assay>.jsonl.gz``."""
    ids: list[str] = []
    smiles: list[str] = []
    values: list[float] = []
    splits: list[str] = []
    types: list[str] = []
    for folder, split in FOLDERS.items():
        files = sorted((root / folder).glob("*.jsonl.gz"))
        if not files:
            raise MetaschedError(
                f"{root / folder}: no <assay>.jsonl.gz files; FS-Mol's layout has train/,"
                " valid/ and test/ folders"
            )
        for path in files:
            for line, record in _records(path):
                text = record.get("SMILES")
                if not isinstance(text, str):
                    raise MetaschedError(f"{path}, line {line}: no SMILES field")
                ids.append(str(record.get("Assay_ID") or path.name.removesuffix(".jsonl.gz")))
                smiles.append(text)
                raw = record.get("LogRegressionProperty")
                values.append(
                    parse_value(
                        "" if raw is None else str(raw), str(path), line, "LogRegressionProperty"
                    )
                )
                splits.append(split)
                types.append(str(record.get("AssayType") or ""))
    roles = np.full(len(ids), NO_ROLE, np.int8)
    return AssayTable(str(root), ids, smiles, np.asarray(values), splits, roles, types)


def _records(path: Path) -> list[tuple[int, dict[str, object]]]:
    """(line number, object) of one jsonl.gz file; a truncated or bad file is one error."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise MetaschedError(
            f"{path}: the file is truncated or not gzip ({error}); copy it again"
        ) from error
    records = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise MetaschedError(f"{path}, line {number}: not JSON ({error.msg})") from error
        if not isinstance(record, dict):
            raise MetaschedError(f"{path}, line {number}: not a JSON object")
        records.append((number, record))
    return records


def load_fsmol(root: Path, spec: FingerprintSpec) -> DataSplits[AssayPool]:
    """FS-Mol from the compact CSV (a file) or FS-Mol's own folders (a directory), cached."""
    if root.is_file():
        held_out = f"{HELD_OUT_ASSAYS}|{HELD_OUT_MIN_COMPOUNDS}|{HELD_OUT_SEED}|with-values"
        return cached_assays(
            "fsmol",
            f"{file_identity(root)}|{held_out}",
            spec,
            lambda: build_assay_splits(read_fsmol_csv(root), spec),
        )
    if not root.is_dir():
        raise MetaschedError(
            f"data.root={str(root)!r} does not exist; point it at fsmol_train_valid.csv.gz or"
            " at the folder holding FS-Mol's train/, valid/ and test/"
        )
    files = sorted(root.glob("*/*.jsonl.gz"))
    return cached_assays(
        "fsmol",
        file_identity(root, *files),
        spec,
        lambda: build_assay_splits(read_fsmol_folders(root), spec),
    )
