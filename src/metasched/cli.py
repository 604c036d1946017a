"""The ``metasched`` command: train, evaluate, predict, demo, compare, benchmark, baseline,
report, data."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metasched.errors import (
    ComparisonInterrupted,
    MetaschedError,
    TrainingAborted,
    TrainingInterrupted,
)
from metasched.files import os_error


def _run_dir(preset: str, given: str | None) -> Path:
    if given:
        return Path(given)
    return Path("runs") / f"{Path(preset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _print_summary(summary: dict) -> None:
    from metasched.intervals import format_score
    from metasched.learners.objectives import score_label

    name, percent = summary.get("score_name", "accuracy"), summary.get("score_percent", True)
    for checkpoint in ("best", "final"):
        entry = summary[checkpoint]
        label = "best on validation" if checkpoint == "best" else "final"
        print(
            f"test {score_label(name)} ({label}, iteration {entry['iteration']}):"
            f" {format_score(entry['score'], entry['ci95'], percent)}"
            f" (95% CI over {summary['test_tasks']} tasks)"
        )
        if "metrics" in entry:
            print(f"  {_metrics_line(entry['metrics'])}")
    print(f"run directory: {summary['run_dir']}")


def _metrics_line(metrics: dict) -> str:
    """Regression metrics in one line: medians, the R² > 0.3 counts, out-of-sample R², RMSE."""

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    parts = []
    r2 = metrics.get("pearson_r2")
    if r2:
        parts.append(
            f"pearson R² median {number(r2['median'])}, > 0.3 in {r2['tasks_above_0.3']} tasks"
            f" ({r2['assays_above_0.3']} of {r2['assays']} assays by their mean)"
        )
    for key, label in (("oos_r2", "out-of-sample R²"), ("rmse", "RMSE")):
        if key in metrics:
            entry = metrics[key]
            parts.append(f"{label} {number(entry['mean'])} (median {number(entry['median'])})")
    return "; ".join(parts)


def cmd_train(args: argparse.Namespace) -> None:
    from metasched.config import load_config
    from metasched.training.ranks import join_process_group
    from metasched.training.trainer import Trainer

    overrides = list(args.set)
    if args.nproc is not None:
        if args.config:  # bad settings: one line here, not one per process
            load_config(args.config, overrides)
            if args.run_dir is None:
                raise MetaschedError("--nproc needs --run-dir (one directory for every process)")
        elif not Path(args.resume).is_dir():
            raise MetaschedError(f"{args.resume!r} is not a run directory; check the path")
        _launch(args.nproc, args.argv)
        return
    if args.init_from:
        overrides.append(f"train.init_from={args.init_from}")
    if args.resume:
        if args.init_from or args.run_dir:
            raise MetaschedError(
                f"--resume continues {args.resume} from its own checkpoint and directory; drop"
                f" {'--init-from' if args.init_from else '--run-dir'} (or start a new run)"
            )
        ranks = join_process_group("auto")
        trainer = Trainer.resume(Path(args.resume), args.set)
        assert trainer.resumed_from is not None
        if ranks.is_main:
            print(
                f"resuming from {trainer.resumed_from} (iteration {trainer.state.iteration})",
                file=sys.stderr,
            )
    else:
        config = load_config(args.config, overrides)
        ranks = join_process_group(config.train.device)
        run_dir = _run_dir(args.config, args.run_dir)
        if ranks.size > 1 and args.run_dir is None:
            raise MetaschedError("training on several processes needs --run-dir (one for all)")
        trainer = Trainer.create(config, run_dir)
    summary = trainer.fit(progress=not args.quiet)
    if ranks.is_main:
        _print_summary(summary)


def _launch(nproc: int, argv: list[str]) -> None:
    """Runs this same command in ``nproc`` local processes (ranks of one gloo or NCCL group,
    each in a session of its own), and ends them cleanly: a Ctrl-C, SIGTERM or SIGHUP of the
    launcher is passed on once as SIGTERM (each rank saves after its iteration and stops; a
    second signal kills them), a rank that fails stops the others, and a launcher killed
    outright takes the ranks with it (they get SIGTERM from the kernel and save)."""
    from metasched.training.ranks import free_port

    if nproc < 1:
        raise MetaschedError(f"--nproc {nproc}: give at least 1 process")
    port = free_port()
    command = [sys.executable, "-m", "metasched.cli", *_without_nproc(argv)]
    children = []
    for rank in range(nproc):
        env = {
            **os.environ,
            "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "METASCHED_LAUNCHER": str(os.getpid()),
        }  # fmt: skip
        children.append(subprocess.Popen(command, env=env, start_new_session=True))
    asked: list[int] = []

    def pass_on(signum: int, frame: object) -> None:
        asked.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM if len(asked) == 1 else signal.SIGKILL)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, pass_on) for number in handled}
    try:
        codes = _wait_all(children)
    finally:
        for number, action in previous.items():
            signal.signal(number, action)
    if asked:  # the first rank has said where it stopped
        raise SystemExit(130 if asked[0] == signal.SIGINT else 128 + asked[0])
    worst = max(codes, default=0)
    if worst:
        raise SystemExit(worst)


def _wait_all(children: list[subprocess.Popen[bytes]]) -> list[int]:
    """Waits for every rank; the first that fails gets the others SIGTERM."""
    failed = False
    while any(child.poll() is None for child in children):
        if not failed and any((child.poll() or 0) not in (0,) for child in children):
            failed = True
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
        time.sleep(0.2)
    return [child.returncode if child.returncode >= 0 else 128 - child.returncode
            for child in children]  # fmt: skip


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line without ``--nproc N`` (or ``--nproc=N``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _load_run(target: str, overrides: list[str]) -> tuple[Path, dict, Any]:
    """A run's checkpoint (``best.pt`` of a run directory, or a file): path, payload, config."""
    from metasched.config import config_from_dict
    from metasched.training.checkpoint import load_checkpoint

    path = Path(target) / "best.pt" if Path(target).is_dir() else Path(target)
    payload = load_checkpoint(path)  # its fields checked, the config a mapping among them
    return path, payload, config_from_dict(payload["config"], overrides)


def cmd_evaluate(args: argparse.Namespace) -> None:
    import numpy as np

    from metasched.intervals import format_score
    from metasched.learners.objectives import score_label
    from metasched.training.checkpoint import load_model_weights
    from metasched.training.components import STREAMS, build_components
    from metasched.training.evaluation import evaluate

    if args.tasks is not None and args.tasks < 1:
        raise MetaschedError(f"--tasks {args.tasks}: give at least 1 (default: train.test_tasks)")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise MetaschedError(f"--seed {args.seed}: give a whole number from 0 to 2**63 - 1")
    path, payload, config = _load_run(args.target, args.set)
    parts = build_components(config)
    load_model_weights(parts.model, payload["model"], path)
    num_tasks = config.train.test_tasks if args.tasks is None else args.tasks
    rng = np.random.default_rng(
        [config.seed if args.seed is None else args.seed, STREAMS[args.split]]
    )
    result = evaluate(
        parts.learner,
        parts.learner.parameters(),
        parts.samplers[args.split],
        num_tasks,
        rng,
        parts.device,
        f"{args.split} tasks",
    )
    objective = parts.learner.objective
    print(
        f"{args.split} {score_label(objective.score_name)} of {path} (iteration"
        f" {payload['iteration']}): {format_score(result.mean, result.ci95, objective.percent)}"
        f" (95% CI over {num_tasks} tasks)"
    )
    if result.metrics:
        print(f"  {_metrics_line(result.metric_summary())}")


def cmd_predict(args: argparse.Namespace) -> None:
    import csv

    import torch

    from metasched.domains import domain_of
    from metasched.files import atomic_open, refuse_to_replace
    from metasched.training.checkpoint import load_model_weights
    from metasched.training.components import build_learner

    out = Path(args.out)  # checked before any work: it must not replace an input
    inputs = [Path(args.support), Path(args.query), *Path(args.run).glob("*.pt*")]
    refuse_to_replace(out, inputs, "--out", args.force)
    path, payload, config = _load_run(args.run, args.set)
    domain = domain_of(config)
    model = domain.model(config)
    learner = build_learner(config, model, model_device := next(model.parameters()).device)
    load_model_weights(model, payload["model"], path)  # after the learner added its own
    task = domain.new_task(config, Path(args.support), Path(args.query), payload.get("inputs"))
    predictions = learner.predict(learner.parameters(), task.episode.to(model_device))
    if not bool(torch.isfinite(predictions).all()):
        raise MetaschedError(
            f"the model of {path} predicts NaN or infinite values for this task; check the"
            " support values, or use an earlier checkpoint"
        )
    with atomic_open(out, "w", newline="") as handle:
        csv.writer(handle).writerows(domain.prediction_rows(predictions.cpu(), task))
    print(
        f"{len(task.query_names)} predictions from {path} (iteration {payload['iteration']}): {out}"
    )


def cmd_demo(args: argparse.Namespace) -> None:
    from metasched.demo import run_demo

    table, plots = run_demo(Path(args.out), progress=not args.quiet)
    print()
    print(table)
    for plot in plots:
        print(f"plot: {plot}")


def cmd_compare(args: argparse.Namespace) -> None:
    from metasched.compare import holds_runs, run_comparison
    from metasched.compare.budgets import parse_budgets
    from metasched.files import claim_directory

    methods = [m.strip() for m in args.schedulers.split(",") if m.strip()]
    if args.seeds < 1 or args.workers < 1 or args.threads < 1:
        raise MetaschedError("--seeds, --workers and --threads must be at least 1")
    if args.tables_only and not Path(args.out).is_dir():
        raise MetaschedError(
            f"--out {args.out!r} is not a directory; --tables-only reads the runs of an earlier"
            " comparison there"
        )
    claim_directory(Path(args.out), "--out", args.force, ours=holds_runs)
    table, files = run_comparison(
        args.config,
        methods,
        list(range(args.seeds)),
        Path(args.out),
        args.set,
        args.pretrain,
        args.workers,
        args.threads,
        budgets=parse_budgets(args.budget) if args.budget else None,
        tables_only=args.tables_only,
    )
    print()
    print(table)
    for path in files:
        print(f"wrote {path}")


def cmd_baseline(args: argparse.Namespace) -> None:
    from metasched.config import load_config
    from metasched.training.baselines import run_baseline

    config = load_config(args.config, args.set)
    run_dir = _run_dir(f"{args.kind}-{Path(args.config).stem}", args.run_dir)
    summary = run_baseline(args.kind, config, run_dir, progress=True, trees=args.trees)
    _print_summary(summary)


def cmd_report(args: argparse.Namespace) -> None:
    from metasched.files import claim_directory
    from metasched.report import write_report
    from metasched.training.run_dir import is_ours

    run_dirs = [Path(d) for d in args.run_dirs]
    out = Path(args.out) if args.out else run_dirs[0]
    claim_directory(out, "--out", args.force, ours=is_ours)
    table, plots = write_report(run_dirs, out)
    print(table)
    for plot in plots:
        print(f"plot: {plot}")


def cmd_benchmark(args: argparse.Namespace) -> None:
    from metasched.benchmark import check_protocol, run_benchmark
    from metasched.files import claim_directory

    sizes = _integers(args.sizes, "--sizes")
    check_protocol(sizes, args.draws, args.min_query)
    out = Path(args.out)
    claim_directory(out, "--out", args.force, ours=lambda p: (p / "benchmark.md").is_file())
    table, files = run_benchmark(
        [Path(r) for r in args.runs],
        [b.strip() for b in args.baselines.split(",") if b.strip()],
        sizes,
        args.draws,
        out,
        args.set,
        progress=not args.quiet,
        min_query=args.min_query,
    )
    print(table)
    for path in files:
        print(f"wrote {path}")


def _integers(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise MetaschedError(f"{flag} {text!r}: give whole numbers, e.g. 16,32,64,128") from None


def cmd_data(args: argparse.Namespace) -> None:
    from metasched.config import apply_overrides, build
    from metasched.data.registry import DATASETS, DataSpec, convert_dataset, load_dataset
    from metasched.domains import domain_of_data

    if args.action == "list":
        for name, entry in DATASETS.items():
            print(f"{name:12s} {entry.domain:7s} {entry.description}")
            expected = entry.expected()
            if not entry.needs_root:
                print(f"{'':20s} embedded: nothing to get")
            elif expected is None:
                print(f"{'':20s} set data.root; {entry.how_to_get}")
            else:
                state = "present" if expected.exists() else "absent"
                print(f"{'':20s} {state} at {expected} (or data.root); get: {entry.how_to_get}")
        return
    if args.action == "generate":
        from metasched.data.miniimagenet import write_fake_miniimagenet
        from metasched.files import claim_directory

        counts = tuple(int(c) for c in args.classes.split(",") if c.strip().isdigit())
        if len(counts) != 3 or min(counts) < 1:
            raise MetaschedError(
                f"--classes={args.classes}: give train,val,test counts, e.g. 64,16,20"
            )
        if args.images < 1 or not 8 <= args.image_size <= 512:
            raise MetaschedError(
                f"--images {args.images} --image-size {args.image_size}: give at least one"
                " image per class, of 8 to 512 pixels a side"
            )
        claim_directory(Path(args.out), "--out", args.force)
        write_fake_miniimagenet(
            Path(args.out),
            args.layout,
            counts,
            args.images,
            args.image_size,
            args.seed,
        )
        print(
            f"wrote random-pixel miniImageNet ({args.layout}, {args.classes} classes) to {args.out}"
        )
        return
    values = {"name": args.name, "root": args.root}
    if args.image_size is not None:
        values["image_size"] = args.image_size
    if args.channels is not None:
        values["channels"] = args.channels
    if args.trust_pickles:
        values["trust_pickles"] = True
    sections = apply_overrides({"data": values}, args.overrides)
    spec: DataSpec = build(DataSpec, sections["data"], "data.")
    if args.action == "convert":
        splits = convert_dataset(spec, Path(args.out))
        print(f"converted to {args.out} (use data.root={args.out}):")
    else:
        splits = load_dataset(spec)
    print(domain_of_data(spec.name).describe(spec))
    print(splits.describe())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metasched", description="Meta-learning with an adaptive task scheduler."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="meta-train a model (uniform or scheduled tasks)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="preset name (see configs/) or path to a YAML file")
    source.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set train.iterations=200 (repeatable)",
    )
    train.add_argument("--run-dir", help="output directory (default: runs/<preset>-<time>)")
    train.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start θ0 from a checkpoint or run directory (e.g. a clean pre-trained model)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="share each iteration's tasks among N local processes (torch.distributed: gloo on"
        " CPUs, NCCL on GPUs); for several machines use torchrun -m metasched train",
    )
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="test a checkpoint on fresh tasks")
    evaluate.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT")
    evaluate.add_argument("--split", choices=["train", "val", "test"], default="test")
    evaluate.add_argument("--tasks", type=int, help="number of tasks (default: train.test_tasks)")
    evaluate.add_argument("--seed", type=int, help="task seed (default: the run's seed)")
    evaluate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set learner.eval_inner_steps=20",
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser(
        "predict", help="adapt a trained run to your own task and predict its query"
    )
    predict.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    predict.add_argument(
        "--support",
        required=True,
        help="assays: CSV of measured compounds (smiles, value); images: a folder of class folders",
    )
    predict.add_argument(
        "--query", required=True, help="assays: CSV with a smiles column; images: image folder"
    )
    predict.add_argument("--out", required=True, help="the predictions CSV to write")
    predict.add_argument("--force", action="store_true", help="replace an existing --out file")
    predict.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. data.csv.value=pIC50"
    )
    predict.set_defaults(handler=cmd_predict)

    demo = commands.add_parser("demo", help="uniform vs ATS on noisy glyphs, in a few minutes")
    demo.add_argument("--out", default="runs/demo", help="output directory (replaced)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=cmd_demo)

    compare = commands.add_parser(
        "compare",
        help="several schedulers over several seeds from one warm start: a results table",
        description="Runs (or reuses) each scheduler for each seed and writes results.md,"
        " results.csv and results.png to --out. Methods: scheduler names, or the variants"
        " listed in metasched/compare.py (ats-loss, ats-gradients, ats-noprogress,"
        " ats-faithful, ats-lite, ats-bf16, bass-centred, bass-val, uniform-reward,"
        " uniform-x<k>), each optionally with a decayed learning rate (uniform+cosine).",
    )
    compare.add_argument("--config", required=True, help="preset name or YAML file")
    compare.add_argument(
        "--schedulers", required=True, help="comma-separated methods, e.g. uniform,greedy,ats"
    )
    compare.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    compare.add_argument("--out", required=True, help="directory of the runs and the table")
    compare.add_argument(
        "--force", action="store_true", help="write into an --out of other files anyway"
    )
    compare.add_argument(
        "--pretrain", metavar="PRESET", help="train this clean warm start first, start all from it"
    )
    compare.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run"
    )
    compare.add_argument(
        "--budget",
        metavar="KX,...",
        help="equal compute: stop every method at these multiples of the uniform run's cost,"
        " e.g. 1x,3x,10x (costs measured against uniform sampling in one process, kept in"
        " OUT/costs.json)",
    )
    compare.add_argument("--workers", type=int, default=1, help="runs in parallel (processes)")
    compare.add_argument("--threads", type=int, default=1, help="torch threads per run")
    compare.add_argument(
        "--tables-only",
        action="store_true",
        help="run nothing: write the tables from the runs that finished (e.g. of a study made"
        " by several comparisons, or still running)",
    )
    compare.set_defaults(handler=cmd_compare)

    bench = commands.add_parser(
        "benchmark",
        help="FS-Mol's few-shot regression protocol on held-out assays: runs and baselines",
        description="Every held-out assay, support sizes K, several seeded supports each, the"
        " rest of the assay as the query: out-of-sample R², pearson R², RMSE and interval"
        " coverage per method, paired with the per-assay random forest.",
    )
    bench.add_argument("runs", nargs="+", help="trained run directories (assay data)")
    bench.add_argument("--baselines", default="forest,gp", help="per-task baselines (forest,gp)")
    bench.add_argument("--sizes", default="16,32,64,128", help="support sizes (16,32,64,128)")
    bench.add_argument("--draws", type=int, default=10, help="supports per assay and size (10)")
    bench.add_argument(
        "--min-query", type=int, default=16, help="compounds an assay must keep for the query"
    )
    bench.add_argument("--out", required=True, help="directory of the table, CSV and plot")
    bench.add_argument(
        "--force", action="store_true", help="write into an --out of other files anyway"
    )
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(handler=cmd_benchmark)

    baseline = commands.add_parser(
        "baseline", help="a non-meta baseline on a config's test tasks (assays: random forest)"
    )
    baseline.add_argument(
        "kind",
        choices=["forest", "gp"],
        help="forest: a random forest per task; gp: a GP on fingerprints (Tanimoto) per task",
    )
    baseline.add_argument("--config", required=True, help="preset name or YAML file")
    baseline.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    baseline.add_argument(
        "--run-dir", help="output directory (default: runs/forest-<preset>-<time>)"
    )
    baseline.add_argument("--trees", type=int, default=100, help="trees per forest (100)")
    baseline.set_defaults(handler=cmd_baseline)

    report = commands.add_parser("report", help="plots and a results table from run directories")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", help="where to write the plots (default: the first run)")
    report.add_argument(
        "--force", action="store_true", help="write into an --out of other files anyway"
    )
    report.set_defaults(handler=cmd_report)

    data = commands.add_parser("data", help="list or prepare data sets")
    data_commands = data.add_subparsers(dest="action", required=True)
    data_commands.add_parser("list", help="the data sets metasched can load")
    prepare = data_commands.add_parser("prepare", help="build or read a data set into the cache")
    convert = data_commands.add_parser(
        "convert", help="write a data set once as a memory-mapped directory to use as data.root"
    )
    for command in (prepare, convert):
        command.add_argument("name")
        command.add_argument("--root", help="where the data set's files are (default: data list)")
        command.add_argument("--image-size", type=int, help="images: side in pixels (28)")
        command.add_argument("--channels", type=int, choices=[1, 3], help="images: 1 or 3")
        command.add_argument(
            "--trust-pickles",
            action="store_true",
            help="allow reading the data set's pickle files (they can run code)",
        )
        command.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a data setting, e.g. data.fingerprint.bits=2048 or data.csv.value=pIC50",
        )
    convert.add_argument("--out", required=True, help="the directory to write (must not exist)")
    generate = data_commands.add_parser(
        "generate", help="write a miniImageNet-shaped data set of random pixels (tests, benchmarks)"
    )
    generate.add_argument("--layout", required=True, choices=["pickles", "csv", "folders"])
    generate.add_argument("--out", required=True)
    generate.add_argument("--classes", default="64,16,20", help="train,val,test (64,16,20)")
    generate.add_argument("--images", type=int, default=600, help="per class (600)")
    generate.add_argument("--image-size", type=int, default=84)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--force", action="store_true", help="write into an --out of other files anyway"
    )
    data.set_defaults(handler=cmd_data)
    return parser


def _one_line_warning(message: Warning | str, *_: object, **__: object) -> str:
    return f"metasched: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --nproc runs again
    warnings.formatwarning = _one_line_warning
    finished = False
    try:
        args.handler(args)
        finished = True
    except MetaschedError as error:
        print(f"metasched: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.filename is None:
            raise  # not about a path the user gave: a bug, shown in full
        print(f"metasched: error: {os_error(error)}", file=sys.stderr)
        return 2
    except (TrainingInterrupted, TrainingAborted, ComparisonInterrupted) as error:
        if _speaks():
            print(f"metasched: {error}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if _speaks():
            print("metasched: aborted", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # a rank of several: leave the group first
            from metasched.training.ranks import leave_process_group

            leave_process_group(finished)
    return 0


def _speaks() -> bool:
    """Whether this process reports a stop: all but the ranks after the first of --nproc,
    which stop with the first (one line for the whole run)."""
    return "METASCHED_LAUNCHER" not in os.environ or os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":
    sys.exit(main())
