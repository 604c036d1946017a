"""miniImageNet (Vinyals et al. 2016; the Ravi & Larochelle 2017 split of 64/16/20 classes of
600 images each) in the layouts people hold it in. ``data.root`` is one of:

* **pickles** (the ATS reference code): ``mini_imagenet_{train,val,test}.pkl``, each a pickled
  uint8 array (classes, images, height, width, 3). Read only with ``data.trust_pickles=true``
  (pickles can run code), through an unpickler that admits numpy arrays and nothing else.
  The reference orders the classes by sorted wnid, which this loader assumes to name them
  (checked for the 64 training classes against the paper's budget lists, supplement D.1).
* **Ravi-Larochelle CSVs**: an ``images/`` folder and ``train.csv``, ``val.csv``, ``test.csv``
  of ``filename,label`` rows (label = wnid).
* **class folders per split**: ``{train,val,test}/<wnid>/<images>``.
* a **prepared directory** written by ``metasched data convert miniimagenet``.

Each is converted once into a prepared directory (:mod:`metasched.data.cache`): uint8 images,
memory-mapped when read, so nothing holds a split as float and a run's memory does not grow
with the data set. Classes keep their wnids as names, so budgets can list wnids.
"""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from metasched.data.cache import SPLITS, SplitsWriter, cache_dir, is_prepared, load_splits
from metasched.data.folder import ClassFiles, Reader, prepare_image_splits, scan_directory
from metasched.data.pool import ClassPool, DataSplits
from metasched.data.safe_pickle import read_data_pickle, require_trust
from metasched.errors import MetaschedError

PICKLE = "mini_imagenet_{split}.pkl"
SIZE = 84
GROUP = "miniimagenet"
# The Ravi-Larochelle split, each list sorted (the order of the reference's pickles).
WNIDS: dict[str, list[str]] = {
    split: names
    for split, names in json.loads(
        (Path(__file__).parent / "assets" / "miniimagenet-split.json").read_text()
    ).items()
    if split in SPLITS
}
LAYOUTS = ("pickles", "csv", "folders")


def detect_layout(root: Path) -> str:
    """Which layout ``root`` holds: ``prepared``, ``pickles``, ``csv`` or ``folders``."""
    if is_prepared(root):
        return "prepared"
    if all((root / PICKLE.format(split=s)).is_file() for s in SPLITS):
        return "pickles"
    if (root / "images").is_dir() and all((root / f"{s}.csv").is_file() for s in SPLITS):
        return "csv"
    if all((root / s).is_dir() for s in SPLITS):
        return "folders"
    raise MetaschedError(
        f"{root} holds no miniImageNet layout; set data.root to a folder with"
        " mini_imagenet_{train,val,test}.pkl, or images/ with train.csv, val.csv and test.csv,"
        " or train/, val/ and test/ class folders"
    )


def load_miniimagenet(root: Path, image_size: int, trust_pickles: bool) -> DataSplits[ClassPool]:
    """miniImageNet from ``root`` (any layout), prepared into the cache on first use."""
    if not root.is_dir():
        raise MetaschedError(f"{root} is not a directory; set data.root to the miniImageNet folder")
    layout = detect_layout(root)
    if layout == "prepared":
        return load_splits(root)
    if layout == "pickles":  # refused on every load, as when it was first converted
        require_trust(root / PICKLE.format(split="train"), trust_pickles)
    path = cache_dir() / f"miniimagenet-{layout}-{_identity(root, layout)}-{image_size}px"
    if not is_prepared(path):
        prepare_miniimagenet(root, path, image_size, trust_pickles)
    return load_splits(path)


def prepare_miniimagenet(
    root: Path, out: Path, image_size: int = SIZE, trust_pickles: bool = False
) -> DataSplits[ClassPool]:
    """Converts the layout at ``root`` into a prepared directory ``out``."""
    layout = detect_layout(root)
    if layout == "pickles":
        return _prepare_pickles(root, out, image_size, trust_pickles)
    if layout == "csv":
        classes, reader = _scan_csv(root)
    elif layout == "folders":
        classes, reader = scan_directory(root)
        classes = {k: v for k, v in classes.items() if k.split("/", 1)[0] in SPLITS}
    else:
        raise MetaschedError(f"{root} is already a prepared data set; use it as data.root")
    keys = {s: sorted(k for k in classes if k.split("/", 1)[0] == s) for s in SPLITS}
    for split, names in keys.items():
        if not names:
            raise MetaschedError(f"{root}: the {split} split has no classes with images")
    return prepare_image_splits(
        out, classes, keys, reader, image_size, 3, False, lambda key: (key.split("/")[-1], GROUP)
    )


def _scan_csv(root: Path) -> tuple[ClassFiles, Reader]:
    """Classes ``split/wnid`` and their image files from the Ravi-Larochelle CSVs."""
    images = root / "images"
    present = {p.name for p in images.iterdir()}
    classes: ClassFiles = {}
    for split in SPLITS:
        path = root / f"{split}.csv"
        with open(path, newline="") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or (number == 1 and row[0].strip().lower() == "filename"):
                    continue
                if len(row) < 2:
                    raise MetaschedError(
                        f"{path}, line {number}: expected 'filename,label'; fix or remove the line"
                    )
                name, label = row[0].strip(), row[1].strip()
                if name not in present:
                    raise MetaschedError(
                        f"{path}, line {number} names {name}, which is not in {images}; restore"
                        " the image or remove the line"
                    )
                classes.setdefault(f"{split}/{label}", []).append(str(images / name))
    return classes, lambda path: Path(path).read_bytes()


def _prepare_pickles(root: Path, out: Path, image_size: int, trust: bool) -> DataSplits[ClassPool]:
    """Writes each pickled split into ``out``, one class at a time."""
    writer = SplitsWriter(out)
    notes = []
    try:
        pools = {}
        for split in SPLITS:
            path = root / PICKLE.format(split=split)
            array = read_data_pickle(path, trust, "a pickled uint8 array")
            if (
                not isinstance(array, np.ndarray)
                or array.dtype != np.uint8
                or array.ndim != 5
                or array.shape[-1] != 3
            ):
                found = (
                    f"a {array.dtype} array of shape {array.shape}"
                    if isinstance(array, np.ndarray)
                    else type(array).__name__
                )
                raise MetaschedError(
                    f"{path} holds {found}; expected uint8 (classes, images, height, width, 3)"
                    " as the reference code writes; use the reference's files or another layout"
                )
            classes, per_class = array.shape[:2]
            images = writer.images(split, (classes * per_class, 3, image_size, image_size))
            for c in tqdm(range(classes), desc=f"converting {split}", unit="class", leave=False):
                block = array[c]
                if block.shape[1:3] != (image_size, image_size):
                    block = np.stack([_resize(img, image_size) for img in block])
                images[c * per_class : (c + 1) * per_class] = block.transpose(0, 3, 1, 2)
            names = WNIDS[split] if classes == len(WNIDS[split]) else None
            if names is None:
                names = [f"{split}-{c:03d}" for c in range(classes)]
                notes.append(
                    f"{split}: {classes} classes, not miniImageNet's {len(WNIDS[split])}: named"
                    " by index"
                )
            starts = np.arange(classes + 1, dtype=np.int64) * per_class
            pools[split] = ClassPool(images, starts, tuple(names), (GROUP,) * classes)
            del array
        writer.commit(DataSplits(pools["train"], pools["val"], pools["test"], tuple(notes)))
    except BaseException:
        writer.abort()
        raise
    return load_splits(out)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.uint8)


def _identity(root: Path, layout: str) -> str:
    """A short hash of the source files' names, sizes and times."""
    if layout == "pickles":
        files = [root / PICKLE.format(split=s) for s in SPLITS]
    elif layout == "csv":
        files = [root / f"{s}.csv" for s in SPLITS] + [root / "images"]
    else:
        files = [root / s for s in SPLITS]
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def write_fake_miniimagenet(
    out: Path,
    layout: str,
    classes: tuple[int, int, int] = (64, 16, 20),
    images: int = 600,
    size: int = SIZE,
    seed: int = 0,
) -> None:
    """Writes a miniImageNet-shaped data set of random pixels in one layout (for tests and
    benchmarks). Classes take the real wnids of each split, in order."""
    if layout not in LAYOUTS:
        raise MetaschedError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for split, count in zip(SPLITS, classes, strict=True):
        if count > len(WNIDS[split]):
            raise MetaschedError(f"{split}: at most {len(WNIDS[split])} classes")
        wnids = WNIDS[split][:count]
        if layout == "pickles":
            array = rng.integers(0, 256, (count, images, size, size, 3), dtype=np.uint8)
            with open(out / PICKLE.format(split=split), "wb") as handle:
                pickle.dump(array, handle, protocol=4)
            continue
        rows = []
        for wnid in wnids:
            folder = out / "images" if layout == "csv" else out / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(images):
                name = f"{wnid}{i + 1:08d}.jpg"
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / name, quality=90)
                rows.append((name, wnid))
        if layout == "csv":
            with open(out / f"{split}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["filename", "label"])
                writer.writerows(rows)
