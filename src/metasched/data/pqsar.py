"""pQSAR "All-Assay-Max2" (Martin et al., J. Chem. Inf. Model. 2019, 10.1021/acs.jcim.9b00375):
the ChEMBL assays of the ATS paper's drug experiments, from the article's supporting files.

``data.root`` holds:

* ``ci9b00375_si_002.txt``: the measurements, whitespace-separated lines with ``CHEMBL``:
  compound id, assay id, pIC50 measured, pIC50 predicted (unused), flag. ``TRN`` marks the
  assay's training (support) compounds, anything else its test (query) compounds: Martin's
  realistic split, used with ``task.assays.source_split=flags``. A minus sign may be Unicode.
* ``ci9b00375_si_001.txt``: assay metadata, tab-separated with a header naming ``assay_id``;
  column 4 is the family (kept as the assay type).
* ``ci9b00375_si_003.txt``: ``CHEMBLid,SMILES`` lines extracted from a PDF; a long SMILES
  continues on the next lines, and page furniture (``Page``, ``Table``, ``SMILE`` lines) is
  skipped.
* optionally the ATS code's ``drug_split_id_group{N}.pickle`` (train/val/test assay ids), read
  only with ``data.trust_pickles=true`` and ``data.pqsar.split_group=N``, through an unpickler
  that admits built-in containers and numpy arrays and nothing else. Without it, assays are
  split 4100/76/100 (in proportion for other counts) by a seeded permutation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metasched.data.assays import (
    QUERY_ROLE,
    SUPPORT_ROLE,
    AssayTable,
    build_assay_splits,
    cached_assays,
    file_identity,
    parse_value,
    seeded_assay_splits,
)
from metasched.data.fingerprints import FingerprintSpec
from metasched.data.pool import AssayPool, DataSplits
from metasched.data.safe_pickle import read_data_pickle
from metasched.errors import MetaschedError

MEASUREMENTS, ASSAYS, COMPOUNDS = (f"ci9b00375_si_00{i}.txt" for i in (2, 1, 3))
REFERENCE_SPLIT = (4100, 76, 100)  # train, val, test assays of the ATS code's split files
REFERENCE_NAMES = ("train", "val", "test")
SPLIT_SEED = 0


@dataclass(frozen=True)
class PqsarOptions:
    """``data.pqsar.*``: ``split_group`` N reads ``drug_split_id_group{N}.pickle`` (the ATS
    code's default is 17); it needs ``data.trust_pickles=true``."""

    split_group: int | None = None


def read_split_pickle(path: Path, trust: bool) -> dict[str, set[str]]:
    """The train/val/test assay ids of a ``drug_split_id_group{N}.pickle``."""
    content = read_data_pickle(path, trust, "a readable split pickle")
    if not isinstance(content, dict) or not {"train", "val", "test"} <= set(content):
        raise MetaschedError(f"{path}: expected a dict with train, val and test assay ids")
    return {k: {str(a) for a in np.asarray(list(content[k])).ravel()} for k in REFERENCE_NAMES}


def read_smiles(path: Path) -> dict[str, str]:
    """Compound id to SMILES from the PDF-extracted list (continuation lines joined)."""
    smiles: dict[str, str] = {}
    current = None
    for line in _lines(path):
        text = line.strip()
        if not text or any(word in text for word in ("Page", "Table", "SMILE")):
            continue
        if text.startswith("CHEMBL") and "," in text:
            current, _, value = text.partition(",")
            smiles[current] = value.strip()
        elif current is not None:
            smiles[current] += text
    if not smiles:
        raise MetaschedError(f"{path}: no 'CHEMBLid,SMILES' lines")
    return smiles


def read_families(path: Path) -> dict[str, str]:
    """Assay id to family, from the metadata file (an absent file gives no families)."""
    if not path.is_file():
        return {}
    families = {}
    for line in _lines(path):
        fields = line.rstrip("\n").split("\t")
        if fields[0].strip() == "assay_id" or len(fields) < 4:
            continue
        families[fields[0].strip()] = fields[3].strip()
    return families


def read_pqsar(root: Path, options: PqsarOptions, trust: bool) -> AssayTable:
    """The measurements as a table, with Martin's TRN/TST flags as roles."""
    path = root / MEASUREMENTS
    smiles_of = read_smiles(root / COMPOUNDS)
    families = read_families(root / ASSAYS)
    ids: list[str] = []
    smiles: list[str] = []
    values: list[float] = []
    roles: list[int] = []
    missing = 0
    for number, line in enumerate(_lines(path), start=1):
        if "CHEMBL" not in line:
            continue
        fields = line.split()
        if len(fields) < 5:
            raise MetaschedError(
                f"{path}, line {number}: {len(fields)} fields; expected compound, assay, pIC50,"
                " predicted pIC50 and flag"
            )
        compound, assay, measured, _, flag = fields[:5]
        if compound not in smiles_of:
            missing += 1
            continue
        ids.append(assay)
        smiles.append(smiles_of[compound])
        values.append(parse_value(measured, str(path), number, "pIC50"))
        roles.append(SUPPORT_ROLE if flag == "TRN" else QUERY_ROLE)
    if not ids:
        raise MetaschedError(f"{path}: no measurement of a compound listed in {COMPOUNDS}")
    splits = _splits(root, sorted(set(ids)), options, trust)
    notes = [f"meta-splits: {splits.pop('')}"]
    if missing:
        notes.append(
            f"{missing} measurements of compounds without a SMILES in {COMPOUNDS} left out"
        )
    return AssayTable(
        str(path),
        ids,
        smiles,
        np.asarray(values),
        [splits[a] for a in ids],
        np.asarray(roles, np.int8),
        [families.get(a, "") for a in ids],
        notes,
    )


def _splits(root: Path, assays: list[str], options: PqsarOptions, trust: bool) -> dict[str, str]:
    """Assay to meta-split (and, under the key ``""``, where the split came from)."""
    if options.split_group is not None:
        path = root / f"drug_split_id_group{options.split_group}.pickle"
        groups = read_split_pickle(path, trust)
        named = {a: s for s in REFERENCE_NAMES for a in groups[s]}
        unknown = [a for a in assays if a not in named]
        if unknown:
            raise MetaschedError(f"{path}: assay {unknown[0]} is in no split")
        return {**named, "": path.name}
    names = seeded_assay_splits(assays, REFERENCE_SPLIT, SPLIT_SEED)
    val, test = (sum(s == split for s in names.values()) for split in ("val", "test"))
    return {**names, "": f"a seeded permutation (seed {SPLIT_SEED}), {val} val and {test} test"}


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise MetaschedError(f"cannot read {path}: {error.strerror or error}") from error


def load_pqsar(
    root: Path, options: PqsarOptions, trust: bool, spec: FingerprintSpec
) -> DataSplits[AssayPool]:
    """pQSAR from its supporting files (featurised once, then cached)."""
    if not (root / MEASUREMENTS).is_file():
        raise MetaschedError(
            f"no {MEASUREMENTS} in {str(root)!r}; set data.root to the folder of the pQSAR"
            " supporting files"
        )
    files = [root / name for name in (MEASUREMENTS, ASSAYS, COMPOUNDS) if (root / name).is_file()]
    if options.split_group is not None:
        split_file = root / f"drug_split_id_group{options.split_group}.pickle"
        read_split_pickle(split_file, trust)  # checked on every load, cached or not
        files.append(split_file)
    identity = f"{file_identity(*[f for f in files if f.exists()])}|{options}"
    return cached_assays(
        "pqsar", identity, spec, lambda: build_assay_splits(read_pqsar(root, options, trust), spec)
    )
