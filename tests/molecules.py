"""Tiny molecular files in the exact formats the loaders read, written into a test's folder."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np

# Small real molecules, each parsable by RDKit and distinct after canonicalisation.
SMILES = (
    "CCO", "CCN", "CCC", "CCCl", "CCBr", "CC(=O)O", "CC(=O)N", "CC(C)O", "CC(C)N", "CCCC",
    "c1ccccc1", "c1ccccc1O", "c1ccccc1N", "c1ccccc1Cl", "c1ccccc1C", "c1ccncc1", "c1ccoc1",
    "c1ccsc1", "C1CCCCC1", "C1CCNCC1", "C1CCOCC1", "OC(=O)c1ccccc1", "Nc1ccc(O)cc1",
    "CC(=O)Oc1ccccc1C(=O)O", "CN1CCC[C@H]1c1cccnc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "O=C(O)CCC(=O)O", "NCCc1ccc(O)c(O)c1", "CCOC(=O)C", "COc1ccccc1", "Clc1ccc(Cl)cc1",
    "CC#N", "C=CC=C", "OCCO", "NC(=O)N", "CS(C)=O",
)  # fmt: skip
UNPARSABLE = ("C1CC", "xyz")


def measurements(assays: int, rows: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """(assay id, SMILES, value) rows: ``rows`` distinct compounds for each of ``assays``."""
    rng = np.random.default_rng(seed)
    table = []
    for a in range(assays):
        for i in rng.choice(len(SMILES), rows, replace=False):
            table.append((f"A{a}", SMILES[i], round(float(rng.normal(6.0, 1.0)), 3)))
    return table


def write_csv(path: Path, header: list[str], rows: list[list[object]], gz: bool = False) -> Path:
    """A CSV file (gzip-compressed if ``gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") if gz else open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_fsmol_folders(root: Path, per_split: dict[str, int], rows: int = 12) -> Path:
    """FS-Mol's own layout: ``root/{train,valid,test}/<assay>.jsonl.gz``, one JSON per line
    with FS-Mol's fields (values as strings, as FS-Mol writes them)."""
    rng = np.random.default_rng(1)
    for split, count in per_split.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for a in range(count):
            assay = f"CHEMBL{split[:2].upper()}{a}"
            with gzip.open(folder / f"{assay}.jsonl.gz", "wt") as handle:
                for i in rng.choice(len(SMILES), rows, replace=False):
                    value = float(rng.normal(6.0, 1.0))
                    record = {
                        "SMILES": SMILES[i],
                        "Property": "1.0" if value > 6 else "0.0",
                        "Assay_ID": assay,
                        "RegressionProperty": str(10 ** (9 - value)),
                        "LogRegressionProperty": str(value),
                        "Relation": "=",
                        "AssayType": "B",
                    }
                    handle.write(json.dumps(record) + "\n")
    return root


def write_pqsar(root: Path, assays: int = 6, rows: int = 10) -> Path:
    """The three pQSAR supporting files in their exact formats: measurements (one with a
    Unicode minus), assay metadata, and PDF-extracted SMILES with page furniture and a SMILES
    wrapped onto a second line."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    lines = ["Compound_ID Assay_ID pIC50_exp pIC50_pred Set"]
    for a in range(assays):
        for k, i in enumerate(rng.choice(len(SMILES), rows, replace=False)):
            value = f"{rng.normal(6, 1):.2f}"
            flag = "TRN" if k % 2 == 0 else "TST"
            lines.append(f"CHEMBL{1000 + i} {700 + a} {value} {rng.normal(6, 1):.2f} {flag}")
    lines[1] = lines[1].replace(lines[1].split()[2], "\u22121.25")  # a negative pIC50, PDF style
    (root / "ci9b00375_si_002.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = ["assay_id\tname\tsize\tfamily"] + [
        f"{700 + a}\tassay {a}\t{rows}\tKinase" for a in range(assays)
    ]
    (root / "ci9b00375_si_001.txt").write_text("\n".join(meta) + "\n")
    text = ["Table S3. Compound SMILES", "SMILES"]
    for i, smiles in enumerate(SMILES):
        if i == 23:  # CC(=O)Oc1ccccc1C(=O)O, wrapped as in the PDF
            text += [f"CHEMBL{1000 + i},{smiles[:8]}", smiles[8:]]
        else:
            text.append(f"CHEMBL{1000 + i},{smiles}")
        if i == 10:
            text.append("Page 3 of 120")
    (root / "ci9b00375_si_003.txt").write_text("\n".join(text) + "\n")
    return root
