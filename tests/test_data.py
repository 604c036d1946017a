"""Data sets: glyphs, image folders, Omniglot zips, the cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metasched.data.folder import load_image_folder
from metasched.data.hershey import FONT_SPLITS, HandStyle, _distinct, _font_glyphs, render_glyph
from metasched.data.omniglot import load_omniglot
from metasched.data.registry import DataSpec, load_dataset
from metasched.errors import MetaschedError

from .conftest import omniglot_dir


def test_glyphs_have_the_documented_size_and_split(glyphs) -> None:
    sizes = {s: glyphs[s].num_classes for s in ("train", "val", "test")}
    assert sizes == {"train": 785, "val": 111, "test": 269}
    for split in ("train", "val", "test"):
        pool = glyphs[split]
        assert pool.images.dtype == np.uint8
        assert pool.image_shape == (1, 28, 28)
        assert (pool.counts() == 20).all()
        assert set(pool.groups) <= set(FONT_SPLITS[split])
    assert (
        len(set(glyphs.train.class_names + glyphs.val.class_names + glyphs.test.class_names))
        == 1165
    )


def test_glyph_instances_vary_but_are_deterministic() -> None:
    *_, strokes = _font_glyphs()[40]
    a = render_glyph(strokes, 28, np.random.default_rng([0, 1, 2]))
    b = render_glyph(strokes, 28, np.random.default_rng([0, 1, 2]))
    c = render_glyph(strokes, 28, np.random.default_rng([0, 1, 3]))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.max() > 200 and a.mean() < 128  # bright ink on a dark background
    assert render_glyph(strokes, 84, np.random.default_rng(0), HandStyle()).shape == (84, 84)


def test_near_duplicates_are_removed() -> None:
    glyphs = _font_glyphs()[:30]
    shifted = [(f, c, [s * 0.999 for s in strokes]) for f, c, strokes in glyphs[:5]]
    kept = _distinct(glyphs + shifted)
    assert all(i < 30 for i in kept)  # the near-copies appended at the end are dropped
    assert len(kept) >= 25


def test_glyphs_are_cached_on_disk(glyphs, private_cache) -> None:
    files = list(private_cache.glob("glyphs-*"))
    assert len(files) == 1
    again = load_dataset(DataSpec(name="glyphs"))
    assert np.array_equal(again.test.images, glyphs.test.images)
    assert isinstance(again.train.images, np.memmap)  # read from disk as episodes need them


def _write_folder(root, classes: int, images: int, size: int = 12) -> None:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True)
        for i in range(images):
            pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c:02d}" / f"{i}.png")


def test_image_folder_becomes_split_class_pools(tmp_path) -> None:
    _write_folder(tmp_path / "data", classes=25, images=6)
    splits = load_image_folder(tmp_path / "data", image_size=16)
    counts = [splits[s].num_classes for s in ("train", "val", "test")]
    assert counts == [16, 4, 5]
    names = splits.train.class_names + splits.val.class_names + splits.test.class_names
    assert sorted(names) == [f"class{c:02d}" for c in range(25)]
    assert splits.train.image_shape == (1, 16, 16)


def test_image_folder_with_explicit_splits_and_rgb(tmp_path) -> None:
    for split, n in (("train", 5), ("val", 3), ("test", 4)):
        _write_folder(tmp_path / "data" / split, classes=n, images=3)
    splits = load_image_folder(tmp_path / "data", image_size=8, channels=3)
    assert [splits[s].num_classes for s in ("train", "val", "test")] == [5, 3, 4]
    assert splits.val.image_shape == (3, 8, 8)


def test_linked_class_folders_are_read_and_cycles_and_repeats_reported(tmp_path) -> None:
    """A class folder reached through a link is a class; a link back to an ancestor (a cycle)
    and a link to a class read anyway are skipped, each with a warning naming it."""
    _write_folder(tmp_path / "data", classes=4, images=2)
    _write_folder(tmp_path / "elsewhere", classes=1, images=2)
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere" / "class00")
    (tmp_path / "data" / "class01" / "loop").symlink_to(tmp_path / "data")
    (tmp_path / "data" / "again").symlink_to(tmp_path / "data" / "class02")
    (tmp_path / "data" / "class03" / "gone.png").symlink_to(tmp_path / "missing.png")
    with pytest.warns(RuntimeWarning) as caught:
        splits = load_image_folder(tmp_path / "data", image_size=8)
    names = splits.train.class_names + splits.val.class_names + splits.test.class_names
    assert sorted(names) == ["class00", "class01", "class02", "class03", "linked"]
    messages = {str(w.message) for w in caught}
    data = tmp_path / "data"
    assert f"{data / 'class01' / 'loop'} is a link to {data}, which is read anyway" in str(messages)
    assert f"{data / 'again'} is a link to {data / 'class02'}," in str(messages)
    assert any("gone.png is a broken link" in m for m in messages)


@pytest.mark.parametrize(
    "damage",
    [
        ("val_images", np.zeros((6, 1, 9, 9), np.uint8)),  # another image size than train's
        ("test_starts", np.array([0, 4, 2, 6])),  # boundaries that go backwards
        ("val_starts", np.array([0, 2, 4, 99])),  # past the last image
    ],
)
def test_every_split_of_a_prepared_directory_is_validated(tmp_path, damage) -> None:
    """A prepared directory damaged in any split's arrays is refused with the fix, not read."""
    from metasched.data.cache import load_splits, save_splits
    from metasched.data.pool import ClassPool, DataSplits

    def pool() -> ClassPool:
        arrays = [np.full((2, 1, 8, 8), c, np.uint8) for c in range(3)]
        return ClassPool.from_class_arrays(arrays, ["a", "b", "c"], ["g"] * 3)

    save_splits(tmp_path / "prepared", DataSplits(pool(), pool(), pool()))
    assert load_splits(tmp_path / "prepared").test.num_classes == 3
    name, array = damage
    np.save(tmp_path / "prepared" / f"{name}.npy", array)
    with pytest.raises(MetaschedError, match=r"not a readable prepared data set.*delete it"):
        load_splits(tmp_path / "prepared")


def test_image_folder_errors_are_clear(tmp_path) -> None:
    with pytest.raises(MetaschedError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    _write_folder(tmp_path / "few", classes=2, images=3)
    with pytest.raises(MetaschedError, match="at least 3 classes"):
        load_image_folder(tmp_path / "few")
    _write_folder(tmp_path / "bad", classes=4, images=2)
    (tmp_path / "bad" / "class00" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(MetaschedError, match=r"broken\.png"):
        load_image_folder(tmp_path / "bad")


def test_omniglot_zips_split_by_alphabet() -> None:
    splits = load_omniglot(omniglot_dir())
    assert [splits[s].num_classes for s in ("train", "val", "test")] == [175, 17, 50]
    assert set(splits.test.groups) == {"Greek", "Latin"}
    assert set(splits.val.groups) == {"Tagalog"}
    assert splits.train.images.mean() < 60  # inverted: ink bright, paper dark


def test_unknown_dataset_and_missing_root() -> None:
    with pytest.raises(MetaschedError, match="unknown data set"):
        load_dataset(DataSpec(name="imagenet"))
    with pytest.raises(MetaschedError, match=r"data\.root"):
        load_dataset(DataSpec(name="folder"))


def test_rows_of_a_mapped_file_are_read_without_the_mapping(tmp_path) -> None:
    from metasched.data.pool import read_rows

    array = np.random.default_rng(0).integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "a.npy", array)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    rows = np.array([7, 0, 39, 7, 3])
    for source in (mapped, array, mapped[10:]):  # pread, memory, a view (indexed as usual)
        taken = read_rows(source, rows)
        assert type(taken) is np.ndarray and np.array_equal(taken, np.asarray(source)[rows])
    assert read_rows(mapped, np.array([], np.int64)).shape == (0, 3, 4, 4)
    with pytest.raises(IndexError):
        read_rows(mapped, np.array([50]))
