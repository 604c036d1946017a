"""miniImageNet loaders on tiny generated fixtures in each exact layout, and malformed input."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from metasched.cli import main
from metasched.data.cache import is_prepared
from metasched.data.miniimagenet import (
    PICKLE,
    WNIDS,
    load_miniimagenet,
    prepare_miniimagenet,
    write_fake_miniimagenet,
)
from metasched.data.registry import DataSpec, convert_dataset, load_dataset
from metasched.errors import MetaschedError
from metasched.tasks.sampler import FewShotSampler, budget_classes

SHARED_PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper"
SIZE = 16


def _generate(tmp_path: Path, layout: str, classes=(6, 5, 5), images=20) -> Path:
    root = tmp_path / layout
    write_fake_miniimagenet(root, layout, classes, images, SIZE, seed=1)
    return root


def _spec(root: Path, trust: bool = False) -> DataSpec:
    return DataSpec(
        name="miniimagenet", root=str(root), image_size=SIZE, channels=3, trust_pickles=trust
    )


@pytest.mark.parametrize("layout", ["csv", "folders"])
def test_image_layouts_load_as_memory_mapped_uint8_named_by_wnid(tmp_path, layout) -> None:
    splits = load_dataset(_spec(_generate(tmp_path, layout)))
    for split, count in zip(("train", "val", "test"), (6, 5, 5), strict=True):
        pool = splits[split]
        assert pool.class_names == tuple(WNIDS[split][:count])
        assert isinstance(pool.images, np.memmap) and pool.images.dtype == np.uint8
        assert pool.images.shape == (count * 20, 3, SIZE, SIZE)
        assert list(pool.counts()) == [20] * count
    assert splits.train.images.std() > 50  # the random pixels survived decoding


def test_pickles_need_trust_and_keep_the_pixels_exactly(tmp_path) -> None:
    root = _generate(tmp_path, "pickles")
    with pytest.raises(MetaschedError, match="can run code when read"):
        load_dataset(_spec(root))
    splits = load_dataset(_spec(root, trust=True))
    with open(root / PICKLE.format(split="val"), "rb") as handle:
        original = pickle.load(handle)  # the test's own fixture
    assert original.shape == (5, 20, SIZE, SIZE, 3)
    expected = original.reshape(100, SIZE, SIZE, 3).transpose(0, 3, 1, 2)
    assert np.array_equal(splits.val.images, expected)
    assert splits.val.class_names[0] == "val-000"  # 5 classes are not miniImageNet's 16
    assert any("named by index" in note for note in splits.notes)


def test_full_class_counts_name_pickled_classes_by_sorted_wnid(tmp_path) -> None:
    root = tmp_path / "full"
    write_fake_miniimagenet(root, "pickles", (64, 16, 20), images=1, size=8)
    splits = load_miniimagenet(root, 8, trust_pickles=True)
    assert splits.train.class_names == tuple(WNIDS["train"])
    assert splits.test.class_names == tuple(WNIDS["test"])
    assert not splits.notes


def test_embedded_wnids_match_the_papers_budget_lists() -> None:
    """Supplement D.1 gives the budgets both as indices into the sorted training classes (the
    reference code) and as wnids: the embedded order must map one onto the other."""
    path = next(SHARED_PAPER.glob("*.txt"), None) if SHARED_PAPER.is_dir() else None
    if path is None:
        pytest.skip(f"the paper's supplement is not at {SHARED_PAPER} (../shared is absent)")
    text = path.read_text()
    section = text[text.index("### D.1") :][:3000]
    listed = [re.findall(r"n\d{8}", group) for group in re.findall(r"\{([^}]*)\}", section)]
    indices = [
        [24, 63, 43, 34, 23, 50, 42, 19, 30, 29, 54, 35, 0, 21, 26, 45],
        [
            *(36, 62, 54, 5, 9, 41, 1, 6, 2, 0, 27, 55, 12, 22, 15, 3, 34, 49, 59, 11, 16, 35),
            *(32, 18, 17, 43, 21, 42, 28, 60, 61, 37),
        ],
    ]
    assert [len(w) for w in listed] == [16, 32, 48]
    for wnids, index in zip(listed, indices, strict=False):
        assert [WNIDS["train"][i] for i in index] == wnids
    assert len(set(WNIDS["train"]) | set(WNIDS["val"]) | set(WNIDS["test"])) == 100


def test_convert_writes_a_prepared_directory_that_needs_no_trust(tmp_path) -> None:
    root = _generate(tmp_path, "pickles")
    out = tmp_path / "converted"
    converted = convert_dataset(_spec(root, trust=True), out)
    assert is_prepared(out)
    again = load_dataset(_spec(out))  # no trust flag: nothing is unpickled any more
    assert np.array_equal(again.train.images, converted.train.images)
    with pytest.raises(MetaschedError, match="exists"):
        convert_dataset(_spec(root, trust=True), out)


def test_image_files_are_resized_but_a_prepared_size_is_checked(tmp_path) -> None:
    root = _generate(tmp_path, "csv")
    resized = load_dataset(DataSpec(name="miniimagenet", root=str(root), image_size=8, channels=3))
    assert resized.train.image_shape == (3, 8, 8)
    convert_dataset(_spec(root), tmp_path / "converted")
    with pytest.raises(MetaschedError, match=r"data\.image_size=16"):
        load_dataset(
            DataSpec(
                name="miniimagenet", root=str(tmp_path / "converted"), image_size=28, channels=3
            )
        )


def test_budgets_by_wnid_and_from_a_file(tmp_path) -> None:
    splits = load_dataset(_spec(_generate(tmp_path, "folders")))
    names = splits.train.class_names
    assert budget_classes(names, [WNIDS["train"][3], WNIDS["train"][1]]) == [3, 1]
    listing = tmp_path / "budget.txt"
    listing.write_text(f"# two classes\n{WNIDS['train'][2]}\n\n{WNIDS['train'][5]}  # last\n")
    assert budget_classes(names, str(listing)) == [2, 5]
    sampler = FewShotSampler(splits.train, 2, 1, 3, classes=str(listing))
    episode = sampler.sample(np.random.default_rng(0))
    assert episode.support_x.shape == (2, 3, SIZE, SIZE)
    with pytest.raises(MetaschedError, match="names 'n99999999', which is not one of the 6"):
        budget_classes(names, ["n99999999"])
    with pytest.raises(MetaschedError, match="lists a class twice"):
        budget_classes(names, [1, 1])
    with pytest.raises(MetaschedError, match="cannot read it"):
        budget_classes(names, str(tmp_path / "missing.txt"))


# Malformed input: one line naming the file and the fix, exit code 2, no traceback.


def _cli_error(capsys, root: Path, *extra: str) -> str:
    argv = ["data", "prepare", "miniimagenet", "--root", str(root), "--image-size", str(SIZE)]
    assert main([*argv, "--channels", "3", *extra]) == 2
    err = capsys.readouterr().err.rsplit("\r", 1)[-1].strip()  # after cleared progress bars
    assert err.startswith("metasched: error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_a_truncated_pickle_is_reported(tmp_path, capsys) -> None:
    root = _generate(tmp_path, "pickles")
    path = root / PICKLE.format(split="train")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = _cli_error(capsys, root, "--trust-pickles")
    assert str(path) in err and "truncated" in err


def test_a_pickle_of_the_wrong_shape_is_reported(tmp_path, capsys) -> None:
    root = _generate(tmp_path, "pickles")
    path = root / PICKLE.format(split="test")
    with open(path, "wb") as handle:
        pickle.dump(np.zeros((5, 20, SIZE, SIZE), np.uint8), handle)
    err = _cli_error(capsys, root, "--trust-pickles")
    assert str(path) in err and "shape (5, 20, 16, 16)" in err and "expected uint8" in err


def test_a_csv_naming_a_missing_image_is_reported(tmp_path, capsys) -> None:
    root = _generate(tmp_path, "csv")
    victim = sorted((root / "images").iterdir())[7]
    victim.unlink()
    err = _cli_error(capsys, root)
    assert "train.csv, line" in err and victim.name in err and "remove the line" in err


def test_an_unreadable_image_is_reported(tmp_path, capsys) -> None:
    root = _generate(tmp_path, "folders")
    victim = sorted((root / "val" / WNIDS["val"][1]).iterdir())[0]
    victim.write_bytes(b"not a jpeg")
    err = _cli_error(capsys, root)
    assert victim.name in err and "remove or replace the file" in err


def test_a_class_with_too_few_images_is_reported(tmp_path, capsys) -> None:
    root = _generate(tmp_path, "folders")
    thin = root / "train" / WNIDS["train"][4]
    for path in sorted(thin.iterdir())[3:]:
        path.unlink()
    argv = ["train", "--config", "glyphs-5w1s", "--run-dir", str(tmp_path / "run")]
    argv += [f"--set=data.{k}" for k in ("name=miniimagenet", f"root={root}", "channels=3")]
    argv += [f"--set=data.image_size={SIZE}", "--set=task.n_way=2", "--set=train.iterations=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"class {WNIDS['train'][4]!r} of the train split" in err and "has 3 images" in err
    assert "more images" in err


def test_a_malicious_pickle_is_never_executed(tmp_path, capsys) -> None:
    root = _generate(tmp_path, "pickles")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(root / PICKLE.format(split="train"), "wb") as handle:
        pickle.dump(Exploit(), handle)
    err = _cli_error(capsys, root)  # refused without opening the file
    assert "can run code" in err and not marker.exists()
    err = _cli_error(capsys, root, "--trust-pickles")  # trusted, the class is still refused
    assert "pathlib" in err and "refusing" in err and not marker.exists()


def test_generated_layouts_reject_an_unknown_layout(tmp_path) -> None:
    with pytest.raises(MetaschedError, match="unknown layout"):
        write_fake_miniimagenet(tmp_path, "zip", (2, 2, 2), 2, 8)
    with pytest.raises(MetaschedError, match="no miniImageNet layout"):
        prepare_miniimagenet(tmp_path, tmp_path / "out")


def test_the_paper_preset_trains_on_a_generated_miniimagenet(tmp_path) -> None:
    """paper/noisy-1shot-0.6 runs by name once data.root is set (84x84 RGB, ATS, briefly)."""
    root = tmp_path / "mini"
    write_fake_miniimagenet(root, "pickles", (8, 16, 6), images=16, size=84)
    run = tmp_path / "run"
    argv = ["train", "--config", "paper/noisy-1shot-0.6", "--run-dir", str(run), "--quiet"]
    settings = {
        "data.root": root,
        "data.trust_pickles": "true",
        "train.iterations": 1,
        "train.val_every": 1,
        "train.val_tasks": 2,
        "train.test_tasks": 2,
        "train.checkpoint_every": 1,
        "scheduler.pool_size": 4,
        "scheduler.ats.warmup": 1,
    }
    assert main([*argv, *(f"--set={k}={v}" for k, v in settings.items())]) == 0
    rows = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(rows) == 2  # one scheduler warm-up iteration, then the meta-update
    assert '"phase": "warmup"' in rows[0] and '"phase": "warmup"' not in rows[1]
