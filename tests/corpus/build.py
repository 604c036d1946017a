"""Writes the binary and generated files of the bad-input corpus (run from the repository root:
``python tests/corpus/build.py``). The text files beside it are written by hand; this script
makes those that must be exact bytes (checkpoints, pickles, gzip, images, arrays).

Every file is deterministic, so rerunning it changes nothing unless this script changed.
``cases.yaml`` lists what each input is fed to and what the one-line error must name.
"""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CORPUS = Path(__file__).resolve().parent
sys.path.insert(0, str(CORPUS.parents[1]))

from metasched.config import load_config  # noqa: E402
from metasched.data.miniimagenet import PICKLE, WNIDS, write_fake_miniimagenet  # noqa: E402
from metasched.training.checkpoint import RESUMABLE, save_checkpoint  # noqa: E402
from metasched.training.components import build_components  # noqa: E402
from tests.molecules import write_csv, write_fsmol_folders, write_pqsar  # noqa: E402

TINY = ["model.filters=8", "train.device=cpu", "train.meta_batch_size=2"]


class Exploit:
    """A pickle that would create a file named ``pwned-by-corpus`` if it were ever run."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (Path("pwned-by-corpus"),))  # relative: the test's working folder


def checkpoints(folder: Path) -> bytes:
    """Malformed checkpoints; returns a valid one's bytes for the run folders."""
    folder.mkdir(parents=True, exist_ok=True)
    config = load_config("glyphs-5w1s", TINY)
    parts = build_components(config)
    optimizer = torch.optim.Adam(parts.model.parameters(), lr=0.001)
    torch.manual_seed(0)
    payload = {
        "config": config.to_dict(),
        "iteration": 10,
        "best_score": 0.5,
        "best_iteration": 10,
        "updates": 10,
        "seconds": 1.0,
        "model": parts.model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "rng": np.random.default_rng(0).bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }
    assert set(RESUMABLE) <= set(payload)
    good = folder / ".good.pt"
    save_checkpoint(good, payload)
    data = good.read_bytes()
    good.unlink()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "random.pt").write_bytes(np.random.default_rng(1).bytes(4096))
    corrupt = bytearray(data)
    corrupt[len(data) // 3] ^= 0xFF  # one flipped byte inside a tensor's storage
    (folder / "corrupt-checksum.pt").write_bytes(bytes(corrupt))
    without_model = {k: v for k, v in payload.items() if k != "model"}
    save_checkpoint(folder / "missing-model.pt", without_model)
    save_checkpoint(folder / "config-not-a-mapping.pt", {**payload, "config": "glyphs"})
    save_checkpoint(folder / "damaged-optimizer.pt", {**payload, "optimizer": {"state": 3}})
    save_checkpoint(folder / "damaged-rng.pt", {**payload, "rng": "PCG64", "iteration": -1})
    torch.save([1, 2, 3], folder / "not-a-dict.pt")
    with open(folder / "malicious.pt", "wb") as handle:
        pickle.dump({"format": 1, "model": Exploit()}, handle)
    return data


def runs(folder: Path, checkpoint: bytes) -> None:
    """Run directories: damaged checkpoints, metrics and summaries, odd run folders."""
    if folder.exists():
        shutil.rmtree(folder)
    config = (CORPUS / "configs" / "tiny.yaml").read_text()
    train = [{"kind": "train", "iteration": i, "loss": 1.0, "score": 0.5} for i in range(1, 11)]
    lines = [json.dumps(r) for r in train]
    for name in ("corrupt-only", "damaged-metrics", "bad-summary", "good"):
        run = folder / name
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(config)
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        (run / "last.pt").write_bytes(checkpoint)
    corrupt = bytearray(checkpoint)
    corrupt[len(checkpoint) // 3] ^= 0xFF
    (folder / "corrupt-only" / "last.pt").write_bytes(bytes(corrupt))
    damaged = [lines[0], '{"kind": "train", "iter', *lines[1:]]
    (folder / "damaged-metrics" / "metrics.jsonl").write_text("\n".join(damaged) + "\n")
    (folder / "bad-summary" / "summary.json").write_text('{"final": {"score": 0.5')
    (folder / "a-file").write_text("not a directory\n")
    (folder / "foreign").mkdir()
    (folder / "foreign" / "notes.txt").write_text("a user's own file, never to be deleted\n")
    (folder / "config-is-a-directory" / "config.yaml").mkdir(parents=True)
    (folder / "config-is-a-directory" / "config.yaml" / "keep").write_text("")


def bomb_png(width: int, height: int) -> bytes:
    """A grey PNG declaring width x height pixels, all zero: a few kilobytes that decode to
    width x height bytes (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + checksum

    rows = b"".join(b"\x00" + bytes(width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def images(folder: Path) -> None:
    """Image folders: too few classes, an unreadable image, a split thinner than n_way."""
    if folder.exists():
        shutil.rmtree(folder)
    rng = np.random.default_rng(2)

    def write(root: Path, classes: int, per_class: int) -> None:
        for c in range(classes):
            (root / f"class{c}").mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
                Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")

    write(folder / "too-few-classes", 2, 2)
    write(folder / "unreadable", 4, 2)
    (folder / "unreadable" / "class0" / "broken.png").write_bytes(b"not an image")
    for split, classes in (("train", 6), ("val", 3), ("test", 6)):
        write(folder / "thin-split" / split, classes, 3)
    write(folder / "bomb", 4, 2)
    (folder / "bomb" / "class0" / "bomb.png").write_bytes(bomb_png(12000, 5000))


def cache(folder: Path) -> None:
    """Prepared data directories with a damaged array file and a damaged index."""
    if folder.exists():
        shutil.rmtree(folder)
    from metasched.data.cache import save_splits
    from metasched.data.folder import load_image_folder

    splits = load_image_folder(CORPUS / "images" / "thin-split", image_size=8)
    save_splits(folder / "bad-array", splits)
    (folder / "bad-array" / "train_images.npy").write_bytes(b"\x93NUMPY garbage")
    save_splits(folder / "bad-index", splits)
    (folder / "bad-index" / "splits.json").write_text('{"format": ')


def molecules(folder: Path) -> None:
    """Assay files: a truncated gzip, FS-Mol and pQSAR files with damaged rows (the CSVs
    beside them are written by hand)."""
    for generated in ("fsmol-bad-line", "pqsar-bad-fields"):
        shutil.rmtree(folder / generated, ignore_errors=True)
    rows = [[f"A{a}", s, 5.0 + a] for a in range(3) for s in ("CCO", "CCN", "CCC")] * 30
    path = write_csv(folder / "truncated.csv.gz", ["assay", "smiles", "value"], rows, gz=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    latin = "assay,smiles,value\nA1,CCO,5.0\nH\u00e9patite,CCN,6.0\n".encode("latin-1")
    (folder / "latin-1.csv").write_bytes(latin)  # a spreadsheet's default export elsewhere
    with gzip.open(folder / "zeros.csv.gz", "wb", compresslevel=9) as handle:
        handle.write(bytes(18_000_000))  # 18 KB on disk: no newline for 18 MB
    fsmol = write_fsmol_folders(folder / "fsmol-bad-line", {"train": 3, "valid": 1, "test": 1})
    victim = sorted((fsmol / "train").iterdir())[0]
    with gzip.open(victim, "rt") as handle:
        text = handle.read().splitlines()
    with gzip.open(victim, "wt") as handle:
        handle.write("\n".join([*text[:2], '{"SMILES": "CCO", "Property"', *text[2:]]) + "\n")
    pqsar = write_pqsar(folder / "pqsar-bad-fields")
    measured = pqsar / "ci9b00375_si_002.txt"
    lines = measured.read_text().splitlines()
    measured.write_text("\n".join([*lines[:3], "CHEMBL1001 700 5.2 TRN", *lines[3:]]) + "\n")


def miniimagenet(folder: Path) -> None:
    """miniImageNet in the reference's and Ravi's layouts, damaged in the issue's ways."""
    if folder.exists():
        shutil.rmtree(folder)
    classes, per_class, size = (5, 5, 5), 4, 16
    for name, layout in (
        ("truncated-pickle", "pickles"),
        ("wrong-shape", "pickles"),
        ("malicious-pickle", "pickles"),
        ("missing-image", "csv"),
        ("unreadable-image", "folders"),
    ):
        write_fake_miniimagenet(folder / name, layout, classes, per_class, size, seed=3)
    path = folder / "truncated-pickle" / PICKLE.format(split="train")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with open(folder / "wrong-shape" / PICKLE.format(split="test"), "wb") as handle:
        pickle.dump(np.zeros((5, 4, size, size), np.uint8), handle)
    with open(folder / "malicious-pickle" / PICKLE.format(split="train"), "wb") as handle:
        pickle.dump(Exploit(), handle)
    sorted((folder / "missing-image" / "images").iterdir())[2].unlink()
    victim = sorted((folder / "unreadable-image" / "val" / WNIDS["val"][1]).iterdir())[0]
    victim.write_bytes(b"not a jpeg")


def main() -> None:
    checkpoint = checkpoints(CORPUS / "checkpoints")
    runs(CORPUS / "runs", checkpoint)
    images(CORPUS / "images")
    cache(CORPUS / "cache")
    molecules(CORPUS / "molecules")
    miniimagenet(CORPUS / "miniimagenet")


if __name__ == "__main__":
    main()
