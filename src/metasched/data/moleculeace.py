"""MoleculeACE (van Tilborg et al., J. Chem. Inf. Model. 2022, MIT licence): 30 ChEMBL target
data sets, embedded. One data set (a target and an activity type) is one assay.

The 30 CSV files of MoleculeACE 3.0.0 are merged unchanged into ``assets/moleculeace.csv.gz``
(columns ``target, smiles, y, cliff_mol, split``; its licence beside it). ``y`` is
-log10(activity in nM); the value used here is pX = 9 + y (pKi or pEC50, in molar units, the
scale of pIC50). Its per-compound ``split`` (train/test, activity-cliff aware) becomes the
rows' support/query role, used only with ``task.assays.source_split=flags``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from metasched.data.assays import (
    NO_ROLE,
    QUERY_ROLE,
    SUPPORT_ROLE,
    AssayTable,
    build_assay_splits,
    cached_assays,
    parse_value,
    read_rows,
)
from metasched.data.fingerprints import FingerprintSpec
from metasched.data.pool import AssayPool, DataSplits

# Split by protein (Ki and EC50 sets of one protein stay together), 17/6/6 of the 29 proteins,
# drawn once with numpy.random.default_rng(0) and written out so that it never moves.
VAL_TARGETS = (
    "CHEMBL214_Ki",
    "CHEMBL218_EC50",
    "CHEMBL235_EC50",
    "CHEMBL236_Ki",
    "CHEMBL239_EC50",
    "CHEMBL262_Ki",
)
TEST_TARGETS = (
    "CHEMBL1871_Ki",
    "CHEMBL228_Ki",
    "CHEMBL237_EC50",
    "CHEMBL237_Ki",
    "CHEMBL287_Ki",
    "CHEMBL3979_EC50",
    "CHEMBL4203_Ki",
)
NANOMOLAR_TO_MOLAR = 9.0  # pX = -log10(M) = 9 - log10(nM)


def asset_path() -> Path:
    """The embedded file."""
    return Path(str(resources.files("metasched") / "data" / "assets" / "moleculeace.csv.gz"))


def read_moleculeace(path: Path) -> AssayTable:
    """The merged MoleculeACE file as a table, with its meta-split by target."""
    ids: list[str] = []
    smiles: list[str] = []
    values: list[float] = []
    roles: list[int] = []
    for line, row in read_rows(path, ("target", "smiles", "y", "split")):
        ids.append(row["target"])
        smiles.append(row["smiles"])
        values.append(NANOMOLAR_TO_MOLAR + parse_value(row["y"], str(path), line, "y"))
        role = {"train": SUPPORT_ROLE, "test": QUERY_ROLE}.get(row["split"], NO_ROLE)
        roles.append(role)
    splits = ["val" if a in VAL_TARGETS else "test" if a in TEST_TARGETS else "train" for a in ids]
    types = [a.rsplit("_", 1)[-1] for a in ids]
    return AssayTable(
        str(path), ids, smiles, np.asarray(values), splits, np.asarray(roles, np.int8), types
    )


def load_moleculeace(spec: FingerprintSpec) -> DataSplits[AssayPool]:
    """The embedded MoleculeACE targets as assay pools (featurised once, then cached)."""
    path = asset_path()
    return cached_assays(
        "moleculeace",
        "moleculeace-3.0.0",
        spec,
        lambda: build_assay_splits(read_moleculeace(path), spec),
    )
