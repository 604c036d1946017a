"""Any CSV or TSV file (gzip or plain) of measurements: an assay id, a SMILES string and a value
per row, plus an optional split column. Column names are settings (``data.csv.*``).

The split column may say, per row, ``train``, ``val`` (``valid``, ``validation``) or
``test``. When it is constant within every assay it gives the assays' meta-splits. When it
varies within an assay it is read as the compounds' own support/query flags (``train`` =
support, ``test`` = query) and the assays are split as without the column: a seeded
permutation, :data:`SPLIT_FRACTIONS` of the assays for train/val/test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metasched.data.assays import (
    NO_ROLE,
    QUERY_ROLE,
    SUPPORT_ROLE,
    AssayTable,
    build_assay_splits,
    cached_assays,
    file_identity,
    parse_value,
    read_rows,
    seeded_assay_splits,
)
from metasched.data.fingerprints import FingerprintSpec
from metasched.data.pool import AssayPool, DataSplits
from metasched.errors import MetaschedError

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_SEED = 0
SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


@dataclass(frozen=True)
class CsvColumns:
    """The columns of a generic assay file (``data.csv.*``); ``split`` and ``type`` are
    optional (``null``: absent)."""

    assay: str = "assay"
    smiles: str = "smiles"
    value: str = "value"
    split: str | None = None
    type: str | None = None


def read_assay_csv(path: Path, columns: CsvColumns) -> AssayTable:
    """Reads the file; see the module for how the split column is read."""
    required = tuple(c for c in (columns.assay, columns.smiles, columns.value) if c)
    optional = tuple(c for c in (columns.split, columns.type) if c)
    ids: list[str] = []
    smiles: list[str] = []
    values: list[float] = []
    labels: list[str] = []
    types: list[str] = []
    for line, row in read_rows(path, required + optional):
        ids.append(row[columns.assay].strip())
        smiles.append(row[columns.smiles].strip())
        values.append(parse_value(row[columns.value], str(path), line, columns.value))
        if columns.split:
            label = row[columns.split].strip().lower()
            if label not in SPLIT_NAMES:
                raise MetaschedError(
                    f"{path}, line {line}: {columns.split} {label!r}; use train, val or test"
                )
            labels.append(SPLIT_NAMES[label])
        types.append(row[columns.type].strip() if columns.type else "")
    if not ids:
        raise MetaschedError(f"{path}: no rows; the file holds only a header")
    per_assay: dict[str, set[str]] = {}
    for assay, label in zip(ids, labels):
        per_assay.setdefault(assay, set()).add(label)
    assay_level = bool(labels) and all(len(s) == 1 for s in per_assay.values())
    roles = np.full(len(ids), NO_ROLE, np.int8)
    notes = []
    if assay_level:
        splits = labels
        notes.append(f"meta-splits from column {columns.split!r}")
    else:
        if labels:
            role_of = {"train": SUPPORT_ROLE, "test": QUERY_ROLE}
            roles = np.asarray([role_of.get(label, NO_ROLE) for label in labels], np.int8)
            notes.append(f"column {columns.split!r} varies within assays: read as support/query")
        meta = seeded_assay_splits(sorted(set(ids)), SPLIT_FRACTIONS, SPLIT_SEED)
        splits = [meta[a] for a in ids]
        notes.append(f"meta-splits: assays drawn {SPLIT_FRACTIONS} with seed {SPLIT_SEED}")
    return AssayTable(str(path), ids, smiles, np.asarray(values), splits, roles, types, notes)


def load_assay_csv(path: Path, columns: CsvColumns, spec: FingerprintSpec) -> DataSplits[AssayPool]:
    """A generic assay file as pools (featurised once, then cached)."""
    if not path.is_file():
        raise MetaschedError(f"data.root={str(path)!r} is not a file; point it at the CSV")
    identity = f"{file_identity(path)}|{columns}"
    return cached_assays(
        "csv", identity, spec, lambda: build_assay_splits(read_assay_csv(path, columns), spec)
    )
