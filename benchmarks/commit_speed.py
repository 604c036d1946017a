"""Seconds per training iteration on this checkout against another commit, same machine.

Builds a worktree of ``--base`` (the commit before a refactor, say), then alternates fresh
subprocesses of each checkout, each timing trainer iterations of a few settings (median of
``--iterations`` after two warm-up ones), so slow drifts of the machine hit both alike. The
table gives the medians over rounds and the ratio new ÷ base.

    python benchmarks/commit_speed.py --base 75e0caf
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = [
    (config, algorithm, variant)
    for config in ("glyphs", "drug")
    for algorithm in ("anil", "maml")
    for variant in ("uniform", "ats")
]
CHILD = """
import json, statistics, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from ats_speed import make_trainer
out = {}
for config, algorithm, variant in json.loads(sys.argv[3]):
    if config == "drug" and algorithm == "maml":
        continue  # the drug setting builds ANIL whatever the algorithm
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(config, algorithm, variant, "cpu", Path(tmp), "loop")
        times = []
        for k in range(2 + int(sys.argv[2])):
            start = time.perf_counter()
            trainer.train_step()
            trainer.state.iteration += 1
            if k >= 2:
                times.append(time.perf_counter() - start)
        out[f"{config} {algorithm} {variant}"] = statistics.median(times)
print(json.dumps(out))
"""


def timings(root: Path, iterations: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    command = [sys.executable, "-c", CHILD, str(root / "benchmarks"), str(iterations)]
    result = subprocess.run(
        [*command, json.dumps(SETTINGS)], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "-q", str(base), args.base], check=True)
        try:
            # the base's benchmark helper may predate fixes: use this checkout's
            (base / "benchmarks" / "ats_speed.py").write_text((HERE / "ats_speed.py").read_text())
            samples: dict[str, dict[str, list[float]]] = {"base": {}, "new": {}}
            for _ in range(args.rounds):
                for name, root in (("base", base), ("new", HERE.parent)):
                    for key, value in timings(root, args.iterations).items():
                        samples[name].setdefault(key, []).append(value)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], check=True)
    print(f"| setting | {args.base} s/it | this checkout s/it | new ÷ base |")
    print("|---|---|---|---|")
    for key in samples["base"]:
        old = statistics.median(samples["base"][key])
        new = statistics.median(samples["new"][key])
        print(f"| {key} | {old:.4f} | {new:.4f} | {new / old:.3f} |")


if __name__ == "__main__":
    main()
