"""Molecular data sources: fingerprints, cleaning, splits, caching and malformed files."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from metasched.cli import main
from metasched.data import assays as assays_module
from metasched.data import fsmol
from metasched.data.assay_csv import CsvColumns, load_assay_csv
from metasched.data.fingerprints import FingerprintSpec, morgan_fingerprints
from metasched.data.fsmol import load_fsmol
from metasched.data.moleculeace import load_moleculeace
from metasched.data.pqsar import PqsarOptions, load_pqsar
from metasched.errors import MetaschedError

from .conftest import SHARED_DATA
from .molecules import (
    SMILES,
    UNPARSABLE,
    measurements,
    write_csv,
    write_fsmol_folders,
    write_pqsar,
)

Chem = pytest.importorskip("rdkit.Chem", reason="molecules need RDKit: metasched[chem]")
fingerprint_generators = pytest.importorskip("rdkit.Chem.rdFingerprintGenerator")


def _generic(tmp_path: Path) -> Path:
    rows = [[a, s, v] for a, s, v in measurements(assays=10, rows=8)]
    return write_csv(tmp_path / "assays.csv", ["assay", "smiles", "value"], rows)


def test_fingerprints_match_rdkit_for_radius_and_bits() -> None:
    for radius, bits in ((2, 1024), (3, 2048)):
        prints = morgan_fingerprints(list(SMILES[:5]), FingerprintSpec(radius, bits))
        for i, text in enumerate(SMILES[:5]):
            generator = fingerprint_generators.GetMorganGenerator(radius=radius, fpSize=bits)
            direct = generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(text))
            assert np.array_equal(np.unpackbits(prints.packed[i]), direct.astype(np.uint8))


def test_generic_csv_counts_drops_and_averages_repeats(tmp_path: Path) -> None:
    extra = [
        ["A0", UNPARSABLE[0], 5.0],  # unparsable: dropped, counted
        ["A1", "CCO", ""],  # no value: dropped, counted
        ["A2", "OCC", 7.0],  # a second spelling of ethanol
        ["A2", "CCO", 5.0],
    ]
    rows = [[a, s, v] for a, s, v in measurements(assays=10, rows=8) if s != "CCO"]
    path = write_csv(tmp_path / "assays.csv", ["assay", "smiles", "value"], rows + extra)
    splits = load_assay_csv(path, CsvColumns(), FingerprintSpec())
    notes = " ".join(splits.notes)
    assert "1 of" in notes and "could not be parsed" in notes and "'C1CC'" in notes
    assert "1 of" in notes and "have no value" in notes
    assert "1 repeated measurements" in notes
    pools = [splits.train, splits.val, splits.test]
    assert sum(p.num_assays for p in pools) == 10
    assert [p.num_assays for p in pools] == [8, 1, 1]
    for pool in pools:
        if "A2" in pool.assay_ids:
            rows_a2 = pool.rows(pool.assay_ids.index("A2"))
            values = sorted(pool.targets[rows_a2])
            assert 6.0 in values  # ethanol's two spellings, averaged into one row
            assert len(rows_a2) == len([r for r in rows if r[0] == "A2"]) + 1
        x = pool.inputs(pool.rows(0))
        assert x.shape == (pool.counts()[0], 1024) and set(np.unique(x)) <= {0.0, 1.0}


def test_second_load_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _generic(tmp_path)
    first = load_assay_csv(path, CsvColumns(), FingerprintSpec())

    def fail(*args: object) -> None:
        raise AssertionError("featurised again")

    monkeypatch.setattr(assays_module, "morgan_fingerprints", fail)
    again = load_assay_csv(path, CsvColumns(), FingerprintSpec())
    assert np.array_equal(first.train.targets, again.train.targets)
    assert first.notes == again.notes
    with pytest.raises(AssertionError):  # other fingerprint settings are not that cache entry
        load_assay_csv(path, CsvColumns(), FingerprintSpec(bits=2048))


def test_split_column_per_assay_or_per_compound(tmp_path: Path) -> None:
    table = measurements(assays=6, rows=8)
    by_assay = [[a, s, v, ["train", "val", "test"][int(a[1:]) % 3]] for a, s, v in table]
    path = write_csv(tmp_path / "a.csv", ["id", "smi", "y", "set"], by_assay)
    columns = CsvColumns("id", "smi", "y", split="set")
    splits = load_assay_csv(path, columns, FingerprintSpec())
    assert splits.val.assay_ids == ("A1", "A4") and splits.test.assay_ids == ("A2", "A5")
    assert (splits.train.roles == -1).all()
    by_row = [[a, s, v, "train" if i % 2 else "test"] for i, (a, s, v) in enumerate(table)]
    path = write_csv(tmp_path / "b.csv", ["id", "smi", "y", "set"], by_row)
    splits = load_assay_csv(path, columns, FingerprintSpec())
    roles = np.concatenate([splits[s].roles for s in ("train", "val", "test")])
    assert set(roles) == {0, 1} and (roles == 0).sum() == (roles == 1).sum()


def _three(value: object = 1.0, smiles: tuple[str, str] = ("CCO", "CCN")) -> list[list[object]]:
    """Two rows for each of three assays (the least a meta-split needs)."""
    return [[f"A{a}", s, value] for a in range(3) for s in smiles]


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (_three(), ["assay", "smiles", "activity"], "no column 'value'"),
        ([["A0", "CCO", "high"], *_three()], None, "line 2: value 'high' is not a number"),
        (_three(""), None, "none of the 6 rows has a value"),
        ([["A9", "CCO", 1.0], *_three()], None, "'A9' has one compound"),
        (_three(1.0, UNPARSABLE), None, "none of the 2 SMILES could be parsed"),
        ([], None, "no rows"),
    ],
)
def test_malformed_csv_is_one_line_error_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rows: list[list[object]],
    header: list[str] | None,
    message: str,
) -> None:
    path = write_csv(tmp_path / "bad.csv", header or ["assay", "smiles", "value"], rows)
    with pytest.raises(MetaschedError, match=message):
        load_assay_csv(path, CsvColumns(), FingerprintSpec())
    assert main(["data", "prepare", "csv", "--root", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(path) in error and "Traceback" not in error


def test_truncated_gzip_is_one_line_error(tmp_path: Path) -> None:
    rows = [[a, s, v] for a, s, v in measurements(assays=10, rows=8)]
    path = write_csv(tmp_path / "a.csv.gz", ["assay", "smiles", "value"], rows * 20, gz=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MetaschedError, match="truncated or corrupt"):
        load_assay_csv(path, CsvColumns(), FingerprintSpec())


def test_fsmol_folders_keep_fsmol_splits(tmp_path: Path) -> None:
    root = write_fsmol_folders(tmp_path / "fsmol", {"train": 4, "valid": 2, "test": 2})
    splits = load_fsmol(root, FingerprintSpec())
    assert [splits[s].num_assays for s in ("train", "val", "test")] == [4, 2, 2]
    assert splits.test.assay_ids == ("CHEMBLTE0", "CHEMBLTE1")
    assert set(splits.train.assay_types) == {"B"} and splits.train.counts().tolist() == [12] * 4


def test_fsmol_compact_csv_holds_out_train_assays_as_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsmol, "HELD_OUT_MIN_COMPOUNDS", 10)
    monkeypatch.setattr(fsmol, "HELD_OUT_ASSAYS", 2)
    header = ["split", "assay_id", "assay_type", "smiles", "label", "log_regression", "relation"]
    rows = []
    for split, assays, size in (("train", 6, 12), ("train", 2, 8), ("valid", 2, 12)):
        for a, s, v in measurements(assays, size, seed=len(rows)):
            rows.append([split, f"{split}-{size}-{a}", "B", s, 1.0, v, "="])
    path = write_csv(tmp_path / "fsmol.csv.gz", header, rows, gz=True)
    splits = load_fsmol(path, FingerprintSpec())
    assert splits.val.assay_ids == ("valid-12-A0", "valid-12-A1")
    assert splits.test.num_assays == 2
    assert all(a.startswith("train-12") for a in splits.test.assay_ids)
    assert splits.train.num_assays == 6 and not set(splits.train.assay_ids) & set(
        splits.test.assay_ids
    )
    assert any("held out" in note for note in splits.notes)


def test_fsmol_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    root = write_fsmol_folders(tmp_path / "fsmol", {"train": 2, "valid": 1, "test": 1})
    victim = next((root / "train").glob("*.jsonl.gz"))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(MetaschedError, match="truncated or not gzip"):
        load_fsmol(root, FingerprintSpec())
    with gzip.open(victim, "wt") as handle:
        handle.write('{"SMILES": "CCO", "LogRegressionProperty": "5.1"}\n{"SMILES": "CC", \n')
    with pytest.raises(MetaschedError, match="line 2: not JSON"):
        load_fsmol(root, FingerprintSpec())
    with pytest.raises(MetaschedError, match="does not exist"):
        load_fsmol(tmp_path / "nowhere", FingerprintSpec())


@pytest.mark.slow
def test_embedded_moleculeace() -> None:
    splits = load_moleculeace(FingerprintSpec())
    pools = [splits[s] for s in ("train", "val", "test")]
    assert [p.num_assays for p in pools] == [17, 6, 7]
    assert sum(len(p.targets) for p in pools) == 48714  # every measurement kept
    assert not set(pools[0].assay_ids) & set(pools[2].assay_ids)
    assert 2.0 < float(np.median(pools[0].targets)) < 12.0  # pKi/pEC50, molar units


def test_real_fsmol_slice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = SHARED_DATA / "fsmol" / "fsmol_train_valid.csv.gz"
    if not source.is_file():
        pytest.skip(f"FS-Mol CSV not found at {source} (../shared/data is absent)")
    monkeypatch.setattr(fsmol, "HELD_OUT_MIN_COMPOUNDS", 32)
    with gzip.open(source, "rt", newline="") as handle:
        header, *lines = handle.read().splitlines()
    train = [line for line in lines if line.startswith("train,")][:3000]
    valid = [line for line in lines if line.startswith("valid,")][:1000]
    path = tmp_path / "slice.csv"
    path.write_text("\n".join([header, *train, *valid]) + "\n")
    splits = load_fsmol(path, FingerprintSpec())
    assert splits.val.num_assays >= 2 and splits.test.num_assays >= 1
    total = sum(len(splits[s].targets) for s in ("train", "val", "test"))
    assert 3500 < total <= 4000  # a few rows lack log_regression; their count is in the notes


def test_pqsar_files_flags_and_seeded_split(tmp_path: Path) -> None:
    root = write_pqsar(tmp_path / "pqsar")
    splits = load_pqsar(root, PqsarOptions(), False, FingerprintSpec())
    pools = [splits[s] for s in ("train", "val", "test")]
    assert [p.num_assays for p in pools] == [4, 1, 1] and sum(len(p.targets) for p in pools) == 60
    assert pools[0].assay_types[0] == "Kinase"
    roles = np.concatenate([p.roles for p in pools])
    assert (roles == 0).sum() == (roles == 1).sum() == 30  # TRN and TST
    assert np.isclose(np.concatenate([p.targets for p in pools]), -1.25).sum() == 1  # U+2212
    assert not any(
        "SMILES" in note and "parsed" in note for note in splits.notes
    )  # wrapped one joined


def test_pqsar_split_pickle_needs_trust_and_admits_only_data(tmp_path: Path) -> None:
    root = write_pqsar(tmp_path / "pqsar")
    ids = [str(700 + a) for a in range(6)]
    with open(root / "drug_split_id_group17.pickle", "wb") as handle:
        pickle.dump({"train": ids[:3], "val": np.array(ids[3:5]), "test": [ids[5]]}, handle)
    options = PqsarOptions(split_group=17)
    with pytest.raises(MetaschedError, match=r"data\.trust_pickles=true"):
        load_pqsar(root, options, False, FingerprintSpec())
    splits = load_pqsar(root, options, True, FingerprintSpec())
    assert splits.val.assay_ids == ("703", "704") and splits.test.assay_ids == ("705",)
    with pytest.raises(MetaschedError, match=r"data\.trust_pickles=true"):  # cached: still asked
        load_pqsar(root, options, False, FingerprintSpec())

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with open(root / "drug_split_id_group9.pickle", "wb") as handle:
        pickle.dump({"train": Exploit(), "val": [], "test": []}, handle)
    with pytest.raises(MetaschedError, match=r"refers to (posix|nt)\.system"):
        load_pqsar(root, PqsarOptions(split_group=9), True, FingerprintSpec())
    assert not (tmp_path / "pwned").exists()


def test_malformed_pqsar_and_fsmol_files_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_pqsar(tmp_path / "pqsar")
    measurements_file = root / "ci9b00375_si_002.txt"
    lines = measurements_file.read_text().splitlines()
    measurements_file.write_text("\n".join([*lines[:3], "CHEMBL1001 700 5.2 TRN", *lines[3:]]))
    with pytest.raises(MetaschedError, match="line 4: 4 fields"):
        load_pqsar(root, PqsarOptions(), False, FingerprintSpec())
    measurements_file.write_text("\n".join([*lines[:3], lines[3].replace(" 5", " high", 1)]))
    (root / "ci9b00375_si_003.txt").write_text("Table S3\n")
    with pytest.raises(MetaschedError, match="no 'CHEMBLid,SMILES' lines"):
        load_pqsar(root, PqsarOptions(), False, FingerprintSpec())
    assert main(["data", "prepare", "pqsar", "--root", str(tmp_path / "nowhere")]) == 2
    assert "no ci9b00375_si_002.txt" in capsys.readouterr().err
    header = ["split", "assay_id", "assay_type", "smiles", "label", "relation"]  # no log_regression
    compact = write_csv(tmp_path / "fsmol.csv", header, [["train", "A", "B", "CCO", 1, "="]])
    assert main(["data", "prepare", "fsmol", "--root", str(compact)]) == 2
    error = capsys.readouterr().err
    assert "no column 'log_regression'" in error and error.count("\n") == 1


def test_a_table_with_a_byte_order_mark_or_behind_a_pipe_reads_as_any_other(tmp_path) -> None:
    """Excel writes a UTF-8 byte order mark before the first column name; a shell's ``<(...)``
    is a pipe that can be opened only once. Both read like a plain file."""
    import os
    import threading

    from metasched.data.assays import read_rows

    text = "assay,smiles,value\nA0,CCO,1.5\nA0,CCN,2\n"
    marked = tmp_path / "excel.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
    rows = [row for _, row in read_rows(marked, ("assay", "smiles", "value"))]
    assert rows[0] == {"assay": "A0", "smiles": "CCO", "value": "1.5"}
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(text))
    writer.start()
    piped = [row for _, row in read_rows(fifo, ("assay", "smiles", "value"))]
    writer.join(timeout=10)
    assert piped == rows
