"""Morgan (ECFP) fingerprints of SMILES strings, with RDKit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metasched.errors import MetaschedError

CHEM_HINT = "pip install 'metasched[chem]' (RDKit and scikit-learn)"


@dataclass(frozen=True)
class FingerprintSpec:
    """Morgan fingerprint settings: ``radius`` 2 is ECFP4; ``bits`` 1024 as the ATS reference
    code, 2048 as is common elsewhere."""

    radius: int = 2
    bits: int = 1024

    def __post_init__(self) -> None:
        if not 0 <= self.radius <= 6:
            raise MetaschedError(f"data.fingerprint.radius={self.radius}; use 0..6 (2 is ECFP4)")
        if self.bits < 8 or self.bits % 8:
            raise MetaschedError(
                f"data.fingerprint.bits={self.bits}; use a multiple of 8 such as 1024 or 2048"
            )


def rdkit() -> Any:
    """RDKit's ``Chem`` module, with its per-molecule parse warnings silenced (unparsable
    SMILES are counted and reported by the caller instead)."""
    try:
        from rdkit import Chem, rdBase
    except ImportError as error:
        raise MetaschedError(f"molecules need RDKit, not installed here: {CHEM_HINT}") from error
    rdBase.DisableLog("rdApp.*")
    return Chem


@dataclass(frozen=True)
class Fingerprints:
    """Fingerprints of a list of SMILES strings.

    Attributes:
        packed: uint8 (n, bits / 8), ``np.packbits`` of each molecule's bits (zeros where
            unparsable).
        parsed: bool (n,): whether RDKit could read the SMILES.
        canonical: RDKit's canonical SMILES of each molecule (``""`` where unparsable), so that
            two spellings of one compound are recognised as the same.
    """

    packed: np.ndarray
    parsed: np.ndarray
    canonical: list[str]


#: SMILES longer than this are not handed to RDKit (a 30,000-atom string crashes it): they count
#: as unparsable. Drug-like molecules' SMILES are under 200 characters.
MAX_SMILES = 2000


def morgan_fingerprints(smiles: Sequence[str], spec: FingerprintSpec) -> Fingerprints:
    """Morgan fingerprints of ``smiles`` (RDKit's ``rdFingerprintGenerator``); a SMILES that
    RDKit cannot parse, or longer than :data:`MAX_SMILES` characters, is marked unparsed."""
    chem = rdkit()
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=spec.radius, fpSize=spec.bits)
    packed = np.zeros((len(smiles), spec.bits // 8), np.uint8)
    parsed = np.zeros(len(smiles), bool)
    canonical = [""] * len(smiles)
    for i, text in enumerate(smiles):
        molecule = chem.MolFromSmiles(text) if text and len(text) <= MAX_SMILES else None
        if molecule is None:
            continue
        parsed[i] = True
        canonical[i] = chem.MolToSmiles(molecule)
        packed[i] = np.packbits(generator.GetFingerprintAsNumPy(molecule).astype(bool))
    return Fingerprints(packed, parsed, canonical)
