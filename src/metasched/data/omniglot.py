"""Omniglot from its original zip files (``images_background*.zip``, ``images_evaluation*.zip``).

Split by alphabet: the alphabets of any ``images_evaluation`` zip and Greek and Latin are
meta-test, Tagalog is meta-validation, the rest meta-train. With the two small background
subsets (``images_background_small1/2.zip``) that gives 175 / 17 / 50 characters. Strokes are
dark on white in the files; they are inverted so that ink is bright, as in glyphs.
"""

from __future__ import annotations

import zipfile
from contextlib import ExitStack
from pathlib import Path, PurePosixPath

from metasched.data.cache import cache_dir, cached_splits
from metasched.data.folder import ClassFiles, Reader, read_pool, scan_zip
from metasched.data.pool import DataSplits
from metasched.errors import MetaschedError

VAL_ALPHABETS = ("Tagalog",)
TEST_ALPHABETS = ("Greek", "Latin")


def _split_of(alphabet: str, from_evaluation: bool) -> str:
    if from_evaluation or alphabet in TEST_ALPHABETS:
        return "test"
    return "val" if alphabet in VAL_ALPHABETS else "train"


def load_omniglot(root: str | Path, image_size: int = 28) -> DataSplits:
    """Reads every Omniglot zip in ``root`` (a character seen in two zips is read once)."""
    root = Path(root).expanduser()
    zips = sorted(root.glob("images_*.zip")) if root.is_dir() else []
    if not zips:
        raise MetaschedError(
            f"no Omniglot zips (images_background*.zip, images_evaluation*.zip) in {str(root)!r};"
            " set data.root to the folder that holds them"
        )
    names = "+".join(z.stem for z in zips)
    path = cache_dir() / f"omniglot-{names}-{image_size}px"
    return cached_splits(path, lambda: _read_zips(zips, image_size))


def _read_zips(zips: list[Path], image_size: int) -> DataSplits:
    keys: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    classes: ClassFiles = {}
    readers: dict[str, Reader] = {}
    with ExitStack() as stack:
        seen = set()
        for zip_path in zips:
            archive_classes, reader = scan_zip(stack.enter_context(zipfile.ZipFile(zip_path)))
            for key, files in archive_classes.items():
                alphabet, character = PurePosixPath(key).parts[-2:]
                if (alphabet, character) in seen:
                    continue
                seen.add((alphabet, character))
                classes[key], readers[key] = files, reader
                keys[_split_of(alphabet, "evaluation" in zip_path.name)].append(key)

        def read(name: str) -> bytes:
            return readers[str(PurePosixPath(name).parent)](name)

        pools = {
            s: read_pool(classes, keys[s], read, image_size, 1, True, f"reading Omniglot {s}")
            for s in keys
        }
        return DataSplits(pools["train"], pools["val"], pools["test"])
