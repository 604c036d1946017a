"""From a table of (assay, SMILES, value) measurements to cached assay pools: the core that
every molecular data source shares (featurise, clean, de-duplicate, split, cache)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metasched.data.cache import cache_dir, cached_splits
from metasched.data.fingerprints import FingerprintSpec, morgan_fingerprints
from metasched.data.pool import AssayPool, DataSplits
from metasched.errors import MetaschedError

# Bump when the way a table becomes pools changes, so old caches are not reused.
ASSAYS_VERSION = 1
META_SPLITS = ("train", "val", "test")
NO_ROLE, SUPPORT_ROLE, QUERY_ROLE = -1, 0, 1


@dataclass
class AssayTable:
    """What a molecular source reads: one row per measurement, before featurisation.

    Attributes:
        path: the file the rows came from, named in messages.
        assay_ids, smiles: per row.
        values: float64 per row; NaN where the file has no value (dropped and counted).
        splits: the meta-split of each row's assay: ``train``, ``val`` or ``test``.
        roles: the source's own support/query flag per row (:data:`SUPPORT_ROLE`,
            :data:`QUERY_ROLE`, or :data:`NO_ROLE`).
        assay_types: per row (``""`` when unknown).
        notes: what the reader itself left out, and why.
    """

    path: str
    assay_ids: list[str]
    smiles: list[str]
    values: np.ndarray
    splits: list[str]
    roles: np.ndarray
    assay_types: list[str]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.assay_ids)
        if not (
            len(self.smiles) == len(self.values) == len(self.splits) == len(self.roles) == n
            and len(self.assay_types) == n
        ):
            raise ValueError("AssayTable columns disagree in length")


def parse_value(text: str, path: str, line: int, column: str) -> float:
    """A measured value: NaN when empty (or spelled NaN), else a finite float; anything else
    means the wrong column or a broken file, so it is an error."""
    text = text.strip()
    if not text or text.lower() in ("nan", "na", "none", "null"):
        return math.nan
    try:
        value = float(text.replace("\u2212", "-"))  # some sources print a Unicode minus
    except ValueError:
        value = math.inf
    if not math.isfinite(value):
        raise MetaschedError(
            f"{path}, line {line}: {column} {text!r} is not a number; point the value column at"
            " numeric activities"
        )
    return value


@contextmanager
def open_text(path: Path) -> Iterator[io.TextIOBase]:
    """A text file, gzip-compressed or not (by its magic bytes), UTF-8 with or without a byte
    order mark (as Excel writes), opened once (so a pipe or ``<(...)`` works too)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 (closed below, after the wrappers)
    except OSError as error:
        raise MetaschedError(f"cannot read {path}: {error.strerror or error}") from error
    with raw:
        binary: Any = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == b"\x1f\x8b" else raw
        with binary, io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as text:
            yield text


#: A header longer than this is no table's (an 18 MB gzip of zeros reads as one line).
MAX_HEADER = 100_000


def read_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV or TSV file (delimiter sniffed from the header),
    gzip or plain. A missing column, a truncated gzip or bad bytes are one-line errors."""
    try:
        with open_text(path) as handle:
            header = handle.readline(MAX_HEADER + 1)
            if len(header) > MAX_HEADER:
                raise MetaschedError(
                    f"{path}: the first line is over {MAX_HEADER:,} characters long, which no"
                    " table header is; give a CSV or TSV file with a header line"
                )
            delimiter = "\t" if header.count("\t") > header.count(",") else ","
            columns = next(csv.reader([header], delimiter=delimiter), [])
            columns = [c.strip() for c in columns]
            repeated = sorted({c for c in columns if columns.count(c) > 1 and c})
            if repeated:
                raise MetaschedError(
                    f"{path}: the header names column {repeated[0]!r} twice; rename one"
                )
            missing = [c for c in required if c not in columns]
            if missing:
                raise MetaschedError(
                    f"{path}: no column {missing[0]!r} (columns: {', '.join(columns) or 'none'});"
                    " name the right column in the data settings"
                )
            reader = csv.reader(handle, delimiter=delimiter)
            for line, values in enumerate(reader, start=2):
                if not values:
                    continue
                if len(values) > len(columns):
                    raise MetaschedError(
                        f"{path}, line {line}: {len(values)} fields but the header has"
                        f" {len(columns)} (an unquoted comma, e.g. a decimal comma?); quote or"
                        " fix the line"
                    )
                row = dict(zip(columns, values))
                short = [c for c in required if c not in row]
                if short:
                    raise MetaschedError(
                        f"{path}, line {line}: {len(values)} fields, so no {short[0]!r} (the"
                        f" header has {len(columns)}); fix or remove the line"
                    )
                yield line, row
    except UnicodeDecodeError as error:
        raise MetaschedError(
            f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset"
            f" {error.start} of a block); save it as UTF-8 (Excel: CSV UTF-8)"
        ) from error
    except (EOFError, gzip.BadGzipFile, csv.Error) as error:
        raise MetaschedError(
            f"{path}: the file is truncated or corrupt ({type(error).__name__}: {error});"
            " download or copy it again"
        ) from error


def build_assay_splits(table: AssayTable, spec: FingerprintSpec) -> DataSplits[AssayPool]:
    """Featurises, cleans and splits a table into train/val/test assay pools.

    Rows without a value and rows whose SMILES RDKit cannot parse are dropped and counted in
    the notes; a table with no usable row is an error. Repeated measurements of one compound
    in one assay (the same canonical SMILES) are averaged, so a compound cannot sit in both
    the support and the query of a task.
    """
    path, n = table.path, len(table.assay_ids)
    notes = list(table.notes)
    sizes: dict[str, int] = {}
    for assay in table.assay_ids:
        sizes[assay] = sizes.get(assay, 0) + 1
    lonely = [a for a, count in sizes.items() if count < 2]
    if lonely:
        raise MetaschedError(
            f"{path}: assay {lonely[0]!r} has one compound; a task needs at least two (support"
            " and query), so remove it or fix its assay id"
        )
    has_value = np.isfinite(table.values)
    if not has_value.any():
        raise MetaschedError(f"{path}: none of the {n} rows has a value; check the value column")
    if not has_value.all():
        notes.append(f"{n - int(has_value.sum())} of {n} rows have no value, dropped")
    unique, inverse = np.unique(np.asarray(table.smiles, dtype=str), return_inverse=True)
    prints = morgan_fingerprints([str(s) for s in unique], spec)
    if not prints.parsed.any():
        raise MetaschedError(
            f"{path}: none of the {len(unique)} SMILES could be parsed (first: {unique[0]!r});"
            " check the SMILES column"
        )
    bad = np.flatnonzero(~prints.parsed)
    if len(bad):
        rows = int((~prints.parsed[inverse]).sum())
        notes.append(
            f"{len(bad)} of {len(unique)} SMILES could not be parsed by RDKit (first:"
            f" {str(unique[bad[0]])!r}); their {rows} rows dropped"
        )
    keep = has_value & prints.parsed[inverse]
    canonical, compound_of_unique = np.unique(
        np.asarray(prints.canonical, dtype=str), return_inverse=True
    )
    # One fingerprint row per canonical compound: the first spelling's.
    first_spelling = np.zeros(len(canonical), np.int64)
    first_spelling[compound_of_unique[::-1]] = np.arange(len(unique))[::-1]
    fingerprints = prints.packed[first_spelling]
    compound = compound_of_unique[inverse]
    pools, merged = {}, 0
    for split in META_SPLITS:
        pool, merged_here = _pool(table, keep, compound, fingerprints, spec.bits, split)
        pools[split] = pool
        merged += merged_here
    if merged:
        notes.append(
            f"{merged} repeated measurements of a compound in one assay averaged (one row each)"
        )
    empty = [s for s in META_SPLITS if pools[s].num_assays == 0]
    if empty:
        raise MetaschedError(
            f"{path}: the {empty[0]} split has no assay with usable rows; give it assays"
        )
    return DataSplits(pools["train"], pools["val"], pools["test"], tuple(notes))


def _pool(
    table: AssayTable,
    keep: np.ndarray,
    compound: np.ndarray,
    fingerprints: np.ndarray,
    bits: int,
    split: str,
) -> tuple[AssayPool, int]:
    """The assays of one meta-split, sorted by id, with repeated compounds averaged."""
    rows = np.flatnonzero(keep & (np.asarray(table.splits) == split))
    assay_names = np.asarray(table.assay_ids, dtype=str)[rows]
    order = np.lexsort((compound[rows], assay_names))  # by assay, then compound
    rows, assay_names = rows[order], assay_names[order]
    pairs = np.stack([np.unique(assay_names, return_inverse=True)[1], compound[rows]], axis=1)
    first = np.ones(len(rows), bool)
    first[1:] = (pairs[1:] != pairs[:-1]).any(axis=1)
    group = np.cumsum(first) - 1
    counts = np.bincount(group)
    targets = np.bincount(group, weights=table.values[rows]) / np.maximum(counts, 1)
    heads = rows[first]
    used, local = np.unique(compound[heads], return_inverse=True)
    ids, starts = np.unique(assay_names[first], return_index=True)
    types = [table.assay_types[r] for r in heads[starts]]
    pool = AssayPool(
        fingerprints=np.ascontiguousarray(fingerprints[used]).reshape(-1, bits // 8),
        compounds=local.astype(np.int64),
        targets=targets.astype(np.float32),
        roles=table.roles[heads].astype(np.int8),
        starts=np.append(starts, len(heads)).astype(np.int64),
        assay_ids=tuple(str(i) for i in ids),
        assay_types=tuple(types),
        bits=bits,
    )
    return pool, len(rows) - len(heads)


def seeded_assay_splits(
    assays: list[str], fractions: tuple[float, float, float], seed: int = 0
) -> dict[str, str]:
    """Assays to train/val/test in proportion to ``fractions`` by a seeded permutation, at
    least one assay in val and in test."""
    if len(assays) < 3:
        raise MetaschedError(
            f"{len(assays)} assays cannot make meta-train, -val and -test splits; give at least 3"
        )
    order = np.random.default_rng(seed).permutation(len(assays))
    total = sum(fractions)
    val = max(1, round(fractions[1] / total * len(assays)))
    test = max(1, round(fractions[2] / total * len(assays)))
    names = {}
    for rank, index in enumerate(order):
        names[assays[index]] = "val" if rank < val else "test" if rank < val + test else "train"
    return names


def file_identity(*paths: Path) -> str:
    """What identifies files' contents cheaply: resolved path, size and modification time."""
    parts = []
    for path in paths:
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def cached_assays(
    name: str, identity: str, spec: FingerprintSpec, build: Callable[[], DataSplits[Any]]
) -> DataSplits[AssayPool]:
    """The splits of a molecular source from the cache, built (read, featurised) on first use.

    Args:
        name: the source, in the cache file's name.
        identity: what the result depends on besides the fingerprints (files, options).
        spec: the fingerprint settings.
        build: reads and builds the splits when the cache has none.
    """
    key = f"{ASSAYS_VERSION}|{identity}|{spec.radius}|{spec.bits}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cached_splits(cache_dir() / f"assays-{name}-{digest}", build)
