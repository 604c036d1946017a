"""What the CPU settings do: glibc's default allocator and NCHW Conv4 against ours.

Each setting runs in a fresh process (the allocator setting is process-wide), one after the
other, timing uniform and ATS iterations interleaved in rounds (medians reported):

* ``glibc default, NCHW``: ``train.retain_memory=false`` and Conv4 in NCHW order;
* ``retained memory, NCHW``: freed memory kept for reuse (metasched.allocator);
* ``retained memory, channels-last``: the default (second-order MAML stays NCHW).

    python benchmarks/cpu_settings.py                  # ANIL and MAML at 84x84, ANIL on glyphs
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ats_speed import CONFIGS, VARIANTS, make_trainer

from metasched.models.layout import keep_nchw

SETTINGS = {
    "glibc default, NCHW": (False, False),
    "retained memory, NCHW": (True, False),
    "retained memory, channels-last": (True, True),
}
CASES = [("mini84", "anil"), ("mini84", "maml"), ("glyphs", "anil")]


def child(config_name: str, algorithm: str, retain: bool, channels_last: bool, rounds: int) -> None:
    """Prints the median seconds per uniform and ATS iteration as JSON."""
    VARIANTS["uniform"] = [*VARIANTS["uniform"], f"train.retain_memory={retain}"]
    VARIANTS["ats"] = [*VARIANTS["ats"], f"train.retain_memory={retain}"]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            v: make_trainer(config_name, algorithm, v, "cpu", Path(tmp) / v)
            for v in ("uniform", "ats")
        }
        samples: dict[str, list[float]] = {v: [] for v in trainers}
        with keep_nchw(not channels_last):
            for trainer in trainers.values():
                trainer.train_step()
            for _ in range(rounds):
                for name, trainer in trainers.items():
                    times = []
                    for _ in range(2):
                        start = time.perf_counter()
                        trainer.train_step()
                        times.append(time.perf_counter() - start)
                    samples[name].append(statistics.median(times))
    print(json.dumps({name: statistics.median(s) for name, s in samples.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("CONFIG", "ALGORITHM", "RETAIN", "LAYOUT"))
    args = parser.parse_args()
    if args.child:
        config_name, algorithm, retain, layout = args.child
        child(config_name, algorithm, retain == "1", layout == "1", args.rounds)
        return
    print("| configuration | learner | setting | uniform s/it | ATS s/it | ATS ÷ uniform |")
    print("|---|---|---|---|---|---|")
    for config_name, algorithm in CASES:
        for setting, (retain, channels_last) in SETTINGS.items():
            command = [sys.executable, __file__, "--rounds", str(args.rounds), "--child"]
            command += [config_name, algorithm, str(int(retain)), str(int(channels_last))]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            r = json.loads(output.strip().splitlines()[-1])
            cells = [CONFIGS[config_name], algorithm, setting]
            cells += [f"{r['uniform']:.3f}", f"{r['ats']:.3f}", f"{r['ats'] / r['uniform']:.2f}"]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
