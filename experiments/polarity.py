"""How much ``metasched predict`` loses on images of the opposite polarity, and whether its
detection wins it back (issue 26; docs/reliability.md, "Numbers that cannot be silently wrong").

A model meta-trained on the embedded glyphs (bright ink on black) predicts 5-way 1-shot tasks
of real handwriting, Omniglot's files as they come (dark ink on white), through the command
line: once from a checkpoint that declares no input profile (no detection: the images are
read as they are) and once from the same weights with the profile (the images are inverted,
with a note). Each task's support and query are written as image folders, as a user would.

    python experiments/polarity.py --zip ../shared/data/omniglot/images_background_small1.zip
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np

from metasched.cli import main
from metasched.training.checkpoint import load_checkpoint, save_checkpoint

WARM_START = Path(__file__).parent / "warm-starts" / "glyphs-pretrain-1shot.pt"


def characters(archive: zipfile.ZipFile) -> dict[str, list[str]]:
    """The PNG files of each character folder in an Omniglot zip."""
    found: dict[str, list[str]] = defaultdict(list)
    for name in archive.namelist():
        if name.endswith(".png"):
            found[str(PurePosixPath(name).parent)].append(name)
    return {k: sorted(v) for k, v in found.items() if len(v) >= 6}


def accuracy(run: Path, archive: zipfile.ZipFile, tasks: list, work: Path) -> float:
    """Share of query images whose predicted class is their character."""
    right = total = 0
    for number, task in enumerate(tasks):
        support, query = work / f"{run.name}-{number}-s", work / f"{run.name}-{number}-q"
        truth = {}
        for c, (_, files) in enumerate(task):
            (support / f"c{c}").mkdir(parents=True)
            query.mkdir(exist_ok=True)
            (support / f"c{c}" / "0.png").write_bytes(archive.read(files[0]))
            for q, name in enumerate(files[1:]):
                (query / f"c{c}-{q}.png").write_bytes(archive.read(name))
                truth[f"c{c}-{q}.png"] = f"c{c}"
        out = work / f"{number}-{run.name}.csv"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["predict", str(run), "--support", str(support), "--query", str(query),
                         "--out", str(out)])  # fmt: skip
        assert code == 0, f"predict failed on task {number}"
        for line in out.read_text().splitlines()[1:]:
            image, predicted, _ = line.split(",")
            right += predicted == truth[image]
            total += 1
    return right / total


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", required=True, help="an Omniglot images_background zip")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--queries", type=int, default=5, help="query images per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    archive = zipfile.ZipFile(args.zip)
    found = characters(archive)
    rng = random.Random(args.seed)
    tasks = []
    for _ in range(args.tasks):
        chosen = rng.sample(sorted(found), 5)
        tasks.append([(c, rng.sample(found[c], 1 + args.queries)) for c in chosen])
    payload = load_checkpoint(WARM_START)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        results = {}
        for name, inputs in (("as-read", {}), ("detected", {"background": "dark"})):
            run = work / name
            run.mkdir()
            save_checkpoint(run / "best.pt", {**payload, "inputs": inputs})
            results[name] = accuracy(run, archive, tasks, work)
    for name, value in results.items():
        errors = 1 - value
        half = 1.96 * np.sqrt(value * (1 - value) / (args.tasks * 5 * args.queries))
        print(f"{name:>9}: {100 * errors:.1f}% errors (± {100 * half:.1f}) over {args.tasks} tasks")


if __name__ == "__main__":
    main_()
