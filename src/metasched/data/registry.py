"""Data sets by name: what ``data.name`` in a config may say, in which domain, and where each
one's files are expected."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metasched.data.assay_csv import CsvColumns, load_assay_csv
from metasched.data.cache import SPLITS, is_prepared, load_splits, save_splits
from metasched.data.fingerprints import FingerprintSpec
from metasched.data.folder import load_image_folder
from metasched.data.fsmol import load_fsmol
from metasched.data.hershey import load_glyphs
from metasched.data.miniimagenet import load_miniimagenet, prepare_miniimagenet
from metasched.data.moleculeace import load_moleculeace
from metasched.data.omniglot import load_omniglot
from metasched.data.pool import AssayPool, ClassPool, DataSplits
from metasched.data.pqsar import PqsarOptions, load_pqsar
from metasched.errors import MetaschedError

IMAGES, ASSAYS = "images", "assays"
#: The container each domain's data loads into.
POOLS: dict[str, type] = {IMAGES: ClassPool, ASSAYS: AssayPool}


@dataclass(frozen=True)
class DataSpec:
    """Which data set to load and how: the ``data`` section of a config.

    ``image_size``, ``channels`` and ``invert`` serve image data sets; ``fingerprint`` (Morgan
    radius and bits) serves molecular ones, ``csv`` names the columns of a generic assay file
    and ``pqsar`` picks pQSAR's split file. ``trust_pickles`` allows reading pickle files (which
    can run code): off unless you trust the file. ``root`` is where a data set's files are
    (default: its expected location, see :func:`data_home`).
    """

    name: str = "glyphs"
    root: str | None = None
    image_size: int = 28
    channels: int = 1
    invert: bool = False
    seed: int = 0
    fingerprint: FingerprintSpec = field(default_factory=FingerprintSpec)
    csv: CsvColumns = field(default_factory=CsvColumns)
    pqsar: PqsarOptions = field(default_factory=PqsarOptions)
    trust_pickles: bool = False


@dataclass(frozen=True)
class DatasetEntry:
    """A data set metasched can load.

    Attributes:
        description: one line.
        domain: ``images`` (classes of images) or ``assays`` (molecules' measured activities).
        load: builds the splits from a spec and the resolved root (``None`` when embedded).
        location: the expected file or folder under :func:`data_home` (``None``: embedded, or
            no default place such as a user's own folder).
        how_to_get: where the files come from, for users who lack them.
        needs_root: whether it has files a user must give (not embedded).
        convert: writes the prepared directory from (spec, root, out) without a cached copy
            first (default: load, then save).
    """

    description: str
    domain: str
    load: Callable[[DataSpec, Path | None], DataSplits[Any]]
    location: str | None = None
    how_to_get: str = ""
    needs_root: bool = False
    convert: Callable[[DataSpec, Path, Path], DataSplits[Any]] | None = None

    def expected(self) -> Path | None:
        """Where the files are looked for when ``data.root`` is not given."""
        return data_home() / self.location if self.location else None


def data_home() -> Path:
    """``$METASCHED_DATA``, else ``~/metasched-data``: where data sets are expected."""
    return Path(os.environ.get("METASCHED_DATA") or Path.home() / "metasched-data").expanduser()


DATASETS: dict[str, DatasetEntry] = {
    "glyphs": DatasetEntry(
        "handwritten characters drawn from Hershey stroke fonts (embedded, built on first use)",
        IMAGES,
        lambda spec, root: load_glyphs(spec.image_size, seed=spec.seed),
    ),
    "omniglot": DatasetEntry(
        "Omniglot from its zip files (images_background*.zip, images_evaluation*.zip)",
        IMAGES,
        lambda spec, root: load_omniglot(str(root), spec.image_size),
        location="omniglot",
        how_to_get="the zips of github.com/brendenlake/omniglot (python/*.zip)",
        needs_root=True,
    ),
    "folder": DatasetEntry(
        "any image folder data.root/<class>/<images> (or data.root/{train,val,test}/<class>/...)",
        IMAGES,
        lambda spec, root: load_image_folder(
            str(root), spec.image_size, spec.channels, spec.invert
        ),
        how_to_get="your own images, one sub-folder per class",
        needs_root=True,
    ),
    "miniimagenet": DatasetEntry(
        "miniImageNet, 64/16/20 classes by wnid: the reference's pickles, Ravi's images/ and"
        " CSVs, {train,val,test}/<wnid>/ folders, or a converted directory",
        IMAGES,
        lambda spec, root: load_miniimagenet(Path(str(root)), spec.image_size, spec.trust_pickles),
        location="miniimagenet",
        how_to_get="miniImageNet (Vinyals et al. 2016) with the Ravi & Larochelle split,"
        " e.g. the ATS code's mini_imagenet_*.pkl; set data.image_size=84 data.channels=3",
        needs_root=True,
        convert=lambda spec, root, out: prepare_miniimagenet(
            root, out, spec.image_size, spec.trust_pickles
        ),
    ),
    "moleculeace": DatasetEntry(
        "30 ChEMBL target sets of MoleculeACE, pKi/pEC50 (embedded; van Tilborg et al. 2022)",
        ASSAYS,
        lambda spec, root: load_moleculeace(spec.fingerprint),
    ),
    "fsmol": DatasetEntry(
        "FS-Mol ChEMBL assays, log activity: {train,valid,test}/<assay>.jsonl.gz or the"
        " compact fsmol_train_valid.csv.gz",
        ASSAYS,
        lambda spec, root: load_fsmol(Path(str(root)), spec.fingerprint),
        location="fsmol",
        how_to_get="FS-Mol's data release (github.com/microsoft/FS-Mol, fsmol.tar)",
        needs_root=True,
    ),
    "pqsar": DatasetEntry(
        "pQSAR All-Assay-Max2 ChEMBL assays, pIC50 with TRN/TST flags (the ATS paper's drug data)",
        ASSAYS,
        lambda spec, root: load_pqsar(
            Path(str(root)), spec.pqsar, spec.trust_pickles, spec.fingerprint
        ),
        location="pqsar",
        how_to_get="the supporting files ci9b00375_si_001/002/003.txt of Martin et al. 2019"
        " (J. Chem. Inf. Model., 10.1021/acs.jcim.9b00375)",
        needs_root=True,
    ),
    "csv": DatasetEntry(
        "any CSV/TSV of assay id, SMILES and value per row (columns: data.csv.*)",
        ASSAYS,
        lambda spec, root: load_assay_csv(Path(str(root)), spec.csv, spec.fingerprint),
        how_to_get="your own measurements; set data.root=FILE",
        needs_root=True,
    ),
}


def resolve_root(name: str, spec: DataSpec) -> Path | None:
    """The data set's files: ``data.root`` if given, else its expected location."""
    entry = DATASETS[name]
    if spec.root:
        return Path(spec.root).expanduser()
    if not entry.needs_root:
        return None
    expected = entry.expected()
    if expected is not None and expected.exists():
        return expected
    where = f" (looked in {expected})" if expected else ""
    raise MetaschedError(
        f"data set {name!r} needs its files{where}; set data.root=PATH. Get them: "
        f"{entry.how_to_get}"
    )


def load_dataset(spec: DataSpec) -> DataSplits[Any]:
    """Loads (building or reading the cache as needed) the data set a spec names."""
    entry = DATASETS.get(spec.name)
    if entry is None:
        raise MetaschedError(f"unknown data set {spec.name!r}; choose one of {', '.join(DATASETS)}")
    root = resolve_root(spec.name, spec)
    prepared = root is not None and is_prepared(root)  # converted once, read as it is
    splits = load_splits(root) if prepared and root is not None else entry.load(spec, root)
    kind = type(splits.train)
    if kind is not POOLS[entry.domain]:
        raise MetaschedError(
            f"{root} holds {kind.__name__} data, not the {entry.domain} of data set"
            f" {spec.name!r}; set data.name to a data set of its domain"
        )
    for split in SPLITS:  # a prepared directory holds each split's arrays in its own files
        splits[split].check_settings(spec.name, spec.channels, spec.image_size)
    return splits


def convert_dataset(spec: DataSpec, out: Path) -> DataSplits[Any]:
    """Writes the data set a spec names as a prepared directory ``out`` (memory-mapped when
    read; use it as data.root from then on)."""
    entry = DATASETS.get(spec.name)
    if entry is None:
        raise MetaschedError(f"unknown data set {spec.name!r}; choose one of {', '.join(DATASETS)}")
    if out.exists():
        raise MetaschedError(f"{out} exists; choose a new --out directory or delete it")
    root = resolve_root(spec.name, spec)
    if entry.convert is not None and root is not None and not is_prepared(root):
        return entry.convert(spec, root, out)
    save_splits(out, load_dataset(spec))
    return load_splits(out)
