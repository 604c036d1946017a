"""Class pools from image files: a directory tree ``root/<class>/<images>``, or a zip of one.

A class is a directory that directly holds image files; its group is its parent directory (the
alphabet, for Omniglot's ``<alphabet>/<character>/<png>`` layout). If ``root`` holds ``train``,
``val`` and ``test`` directories, they are the splits; otherwise classes are split 64/16/20 by a
fixed seeded permutation, as miniImageNet's 64/16/20 classes.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from metasched.data.cache import SPLITS, SplitsWriter, cache_dir, is_prepared, load_splits
from metasched.data.pool import ClassPool, DataSplits
from metasched.errors import MetaschedError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SPLIT_FRACTIONS = (0.64, 0.16, 0.20)
SPLIT_SEED = 0

# A class is keyed by its path relative to the root; its files are opened by a reader.
ClassFiles = dict[str, list[str]]
Reader = Callable[[str], bytes]


def _is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def scan_directory(root: Path, files: Iterable[Path] | None = None) -> tuple[ClassFiles, Reader]:
    """Finds every directory under ``root`` that holds image files (named by full path, so
    that an error names the file) among ``files`` (default: :func:`walk_files`, which follows
    linked folders)."""
    classes: ClassFiles = defaultdict(list)
    for path in walk_files(root) if files is None else files:
        if _is_image(path.name):
            classes[path.parent.relative_to(root).as_posix()].append(str(path))
    return dict(classes), _read_file


def walk_files(root: Path) -> Iterable[Path]:
    """Every file under ``root`` in sorted order, following linked folders. A link to a folder
    that is read anyway (one inside ``root``, an ancestor: a cycle, or a folder another link
    reached first) is skipped with a warning naming it, so that nothing loops and no class is
    read twice."""
    key = _folder_key
    seen = {key(Path(folder)): Path(folder) for folder, _, _ in os.walk(root)}  # real folders

    def visit(folder: Path) -> Iterable[Path]:
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and entry.is_symlink():
                target = key(entry)
                if target in seen:
                    warnings.warn(
                        f"{entry} is a link to {seen[target]}, which is read anyway; skipped it",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    continue
                seen.update({key(Path(f)): Path(f) for f, _, _ in os.walk(entry)})
                yield from visit(entry)
            elif entry.is_dir():
                yield from visit(entry)
            elif entry.is_file():
                yield entry
            elif entry.is_symlink():
                warnings.warn(f"{entry} is a broken link; skipped it", RuntimeWarning, stacklevel=4)

    yield from visit(root)


def _folder_key(folder: Path) -> tuple[int, int]:
    info = folder.stat()
    return info.st_dev, info.st_ino


def _read_file(path: str) -> bytes:
    return Path(path).read_bytes()


def scan_zip(archive: zipfile.ZipFile) -> tuple[ClassFiles, Reader]:
    """Finds every directory inside a zip archive that holds image files."""
    classes: ClassFiles = defaultdict(list)
    for name in sorted(archive.namelist()):
        if not name.endswith("/") and _is_image(name):
            classes[PurePosixPath(name).parent.as_posix()].append(name)
    return dict(classes), archive.read


#: Images with more pixels are refused before they are decoded (a small PNG can declare
#: gigapixels: a decompression bomb). Few-shot images are at most a few megapixels.
MAX_PIXELS = 50_000_000


def decode_image(data: bytes, image_size: int, channels: int, invert: bool) -> np.ndarray:
    """Decodes, converts (grey or RGB) and resizes one image to a (C, H, W) uint8 array; an
    image over :data:`MAX_PIXELS` is an ``OSError`` (the callers' unreadable-image error)."""
    try:
        with warnings.catch_warnings():  # PIL warns, then refuses, above its own limits
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise OSError(f"a decompression bomb ({error})") from error
    width, height = opened.size
    if width * height > MAX_PIXELS:
        raise OSError(f"{width}x{height} pixels, over the limit of {MAX_PIXELS:,}")
    image = opened.convert("L" if channels == 1 else "RGB")
    image = image.resize((image_size, image_size), Image.Resampling.BOX)
    array = np.asarray(image, dtype=np.uint8)
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return 255 - array if invert else np.ascontiguousarray(array)


def read_pool(
    classes: ClassFiles,
    keys: Iterable[str],
    reader: Reader,
    image_size: int,
    channels: int,
    invert: bool,
    description: str,
    allocate: Callable[[tuple[int, int, int, int]], np.ndarray] | None = None,
    label_of: Callable[[str], tuple[str, str]] | None = None,
) -> ClassPool:
    """Decodes the images of the classes ``keys`` into one pool (group = parent directory).

    Args:
        allocate: gives the uint8 (N, C, H, W) array to decode into (e.g. a prepared file,
            so that only one image at a time is held); default: memory.
        label_of: a class's (name, group) from its key; default: its last two path parts and
            its parent directory.
    """
    keys = list(keys)
    counts = [len(classes[key]) for key in keys]
    shape = (sum(counts), channels, image_size, image_size)
    images = allocate(shape) if allocate else np.empty(shape, np.uint8)
    row = 0
    for key in tqdm(keys, desc=description, unit="class", leave=False):
        for name in classes[key]:
            try:
                images[row] = decode_image(reader(name), image_size, channels, invert)
            except (UnidentifiedImageError, OSError) as error:
                raise MetaschedError(
                    f"cannot read image {name!r} ({error}); remove or replace the file"
                ) from error
            row += 1
    labels = [label_of(key) if label_of else _folder_label(key) for key in keys]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ClassPool(images, starts, tuple(n for n, _ in labels), tuple(g for _, g in labels))


def _folder_label(key: str) -> tuple[str, str]:
    """A class folder's name (its last two path parts) and group (its parent directory)."""
    path = PurePosixPath(key)
    return "/".join(path.parts[-2:]), path.parent.name or "-"


def prepare_image_splits(
    path: Path,
    classes: ClassFiles,
    keys: dict[str, list[str]],
    reader: Reader,
    image_size: int,
    channels: int,
    invert: bool,
    label_of: Callable[[str], tuple[str, str]] | None = None,
) -> DataSplits:
    """Decodes each split's classes straight into a prepared directory at ``path`` (one image
    in memory at a time) and opens it memory-mapped."""
    writer = SplitsWriter(path)
    try:
        pools = {
            split: read_pool(
                classes,
                keys[split],
                reader,
                image_size,
                channels,
                invert,
                f"reading {split}",
                partial(writer.images, split),
                label_of,
            )
            for split in SPLITS
        }
        writer.commit(DataSplits(pools["train"], pools["val"], pools["test"]))
    except BaseException:
        writer.abort()
        raise
    return load_splits(path)


def split_classes(keys: list[str]) -> dict[str, list[str]]:
    """Splits sorted class keys 64/16/20 by a fixed seeded permutation."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(keys))
    n_train = round(SPLIT_FRACTIONS[0] * len(keys))
    n_val = round(SPLIT_FRACTIONS[1] * len(keys))
    shuffled = [sorted(keys)[i] for i in order]
    return {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }


def _fingerprint(root: Path, files: list[Path], *settings: object) -> str:
    """A short hash of the files' names, sizes and times, and the loading settings."""
    digest = hashlib.sha256(repr(settings).encode())
    for path in files:
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_image_folder(
    root: str | Path, image_size: int = 28, channels: int = 1, invert: bool = False
) -> DataSplits:
    """Reads ``root/<class>/<images>`` (or ``root/{train,val,test}/<class>/<images>``), cached."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MetaschedError(
            f"data directory {str(root)!r} does not exist; set data.root to a folder laid out"
            " as <root>/<class>/<image files>"
        )
    files = list(walk_files(root))  # one walk serves the cache key and the scan
    path = cache_dir() / f"folder-{_fingerprint(root, files, image_size, channels, invert)}"
    if is_prepared(path):
        return load_splits(path)
    classes, reader = scan_directory(root, files)
    if len(classes) < 3:
        raise MetaschedError(
            f"found {len(classes)} class folders with images under {str(root)!r}; lay it out"
            " as <root>/<class>/<image files> with at least 3 classes"
        )
    top = {key.split("/", 1)[0] for key in classes}
    if {"train", "val", "test"} <= top:
        keys = {
            s: [k for k in classes if k.split("/", 1)[0] == s] for s in ("train", "val", "test")
        }
    else:
        keys = split_classes(list(classes))
    return prepare_image_splits(path, classes, keys, reader, image_size, channels, invert)
