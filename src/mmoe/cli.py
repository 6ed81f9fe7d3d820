"""`mmoe ...`: a thin command-line layer over the Python API.

Bad input ends with one line on stderr (`mmoe: error: ...`) and exit status 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmoe.errors import MmoeError

MODEL_OPTIONS = {  # CLI flag -> model hyperparameter; None means "the model's own default"
    "num_experts": "num_experts", "expert_units": "expert_units", "tower_units": "tower_units",
    "hidden_units": "hidden_units", "l2_alpha": "l2_alpha", "ranks": "ranks", "stitch": "stitch",
}


def _units(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 16 or 64,32, got {text!r}")
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 1,0.5, got {text!r}")


def _pairs(values: Sequence[str] | None, option: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        name, sep, wanted = value.partition("=")
        if not sep or not name:
            raise MmoeError(f"{option} expects COLUMN=VALUE, got {value!r}")
        pairs[name] = wanted
    return pairs


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=36)


# -- options shared by commands ----------------------------------------------------------------
def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("data (one of --dataset or --data)")
    source.add_argument("--dataset", choices=["census", "synthetic"], help="a built-in data set")
    source.add_argument("--data", type=Path, help="your own table: a CSV or Parquet file")
    census = parser.add_argument_group("census")
    census.add_argument("--group", type=int, choices=[1, 2], default=1,
                        help="task group: 1 = income + marital status, 2 = education + marital status")
    census.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the census files (default: $MMOE_DATA_DIR, then the user cache)")
    synthetic = parser.add_argument_group("synthetic (the paper's generator, Section 3.2)")
    add_synthetic_options(synthetic, seed_flag="--data-seed")
    table = parser.add_argument_group("your own table (--data)")
    table.add_argument("--tasks", help="NAME:binary|regression,...; the first is the main task")
    table.add_argument("--features", help="comma-separated feature columns (default: every other column)")
    table.add_argument("--categorical", help="comma-separated columns to treat as categorical")
    table.add_argument("--numeric", help="comma-separated columns to treat as numeric")
    table.add_argument("--positive", action="append", metavar="TASK=VALUE",
                       help="the positive value of a binary task whose values are not 0/1 or true/false")
    table.add_argument("--validation-data", type=Path, help="a table to use as the validation split")
    table.add_argument("--test-data", type=Path, help="a table to use as the test split")
    table.add_argument("--validation-fraction", type=float, default=0.1, help="share of rows for validation")
    table.add_argument("--test-fraction", type=float, default=0.1, help="share of rows for test")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation/test split")


def add_synthetic_options(group: Any, seed_flag: str) -> None:
    from mmoe.data.synthetic import SyntheticConfig

    defaults = SyntheticConfig(correlation=0.5)
    group.add_argument("--correlation", type=float, default=defaults.correlation,
                       help="p: cosine similarity of the two tasks' weight vectors, in [-1, 1]")
    group.add_argument("--dim", type=int, default=defaults.dim, help="input dimension d")
    group.add_argument("--scale", type=float, default=defaults.scale, help="c: norm of the weight vectors")
    group.add_argument("--sines", type=int, default=defaults.sines, help="m: number of sine terms")
    group.add_argument("--alpha-scale", type=float, default=defaults.alpha_scale,
                       help="scale of the sine frequencies alpha_i ~ N(0, 1) * alpha-scale")
    group.add_argument("--noise", type=float, default=defaults.noise, help="standard deviation of the label noise")
    group.add_argument("--rows", type=int, default=defaults.rows, help="number of rows")
    group.add_argument(seed_flag, dest="data_seed", type=int, default=defaults.seed,
                       help="seed of the generator (weights, sines, rows)")


def synthetic_config(args: argparse.Namespace) -> Any:
    from mmoe.data.synthetic import SyntheticConfig

    return SyntheticConfig(correlation=args.correlation, dim=args.dim, scale=args.scale, sines=args.sines,
                           alpha_scale=args.alpha_scale, noise=args.noise, rows=args.rows, seed=args.data_seed)


def dataset_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON description of the chosen data set (saved in the run's config)."""
    from dataclasses import asdict

    if (args.dataset is None) == (args.data is None):
        raise MmoeError("choose the data: --dataset census, --dataset synthetic, or --data FILE")
    if args.dataset == "census":
        return {"kind": "census", "group": args.group,
                "data_dir": str(args.data_dir) if args.data_dir else None, "split_seed": args.split_seed}
    if args.dataset == "synthetic":
        return {"kind": "synthetic", "config": asdict(synthetic_config(args)), "split_seed": args.split_seed}
    if not args.tasks:
        raise MmoeError("--data needs --tasks, e.g. --tasks clicked:binary,watch_time:regression")
    column_types = {c: "categorical" for c in _columns(args.categorical)}
    column_types.update({c: "numeric" for c in _columns(args.numeric)})
    return {"kind": "table", "path": str(args.data), "tasks": args.tasks,
            "features": _columns(args.features) or None, "column_types": column_types or None,
            "positive": _pairs(args.positive, "--positive") or None,
            "validation_fraction": args.validation_fraction, "test_fraction": args.test_fraction,
            "split_seed": args.split_seed,
            "validation_path": str(args.validation_data) if args.validation_data else None,
            "test_path": str(args.test_data) if args.test_data else None}


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def add_model_options(parser: argparse.ArgumentParser) -> None:
    from mmoe.models import MODELS

    group = parser.add_argument_group("model (options a model does not take are an error; "
                                      "unset options take the model's default, see `mmoe models`)")
    group.add_argument("--model", default="mmoe", help=f"the model: {', '.join(MODELS)}")
    group.add_argument("--num-experts", type=int, help="MoE: number of experts (default 8)")
    group.add_argument("--expert-units", type=_units, help="MoE: units per expert layer, e.g. 16 or 32,16 (default 16)")
    group.add_argument("--tower-units", type=_units, help="units per tower layer (default 8)")
    group.add_argument("--hidden-units", type=_units,
                       help="bottom layer widths: shared bottom (default 128) or each task's network (default 64)")
    group.add_argument("--l2-alpha", type=float, help="L2-Constrained: weight alpha of the penalty (default 1e-3)")
    group.add_argument("--ranks", type=_units, help="Tensor-Factorization: Tucker ranks r1,r2,r3 (default 16,16,2)")
    group.add_argument("--stitch", choices=["layer", "unit"], help="Cross-Stitch: one matrix per layer or per unit")


def model_hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, flag) for flag, name in MODEL_OPTIONS.items() if getattr(args, flag) is not None}


def add_training_options(parser: argparse.ArgumentParser) -> None:
    from mmoe.train.trainer import TrainConfig

    defaults = TrainConfig()
    group = parser.add_argument_group("training")
    group.add_argument("--learning-rate", "--lr", type=float, default=defaults.learning_rate, help="Adam learning rate")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size, help="rows per mini-batch")
    group.add_argument("--epochs", type=int, default=defaults.epochs, help="maximum number of epochs")
    group.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="Adam weight decay")
    group.add_argument("--patience", type=int, default=defaults.patience,
                       help="stop after this many epochs without a better main-task validation metric (0: never)")
    group.add_argument("--task-weights", type=_floats, help="loss weight per task, e.g. 1,0.5 (default: all 1)")
    group.add_argument("--seed", type=int, default=defaults.seed, help="seed of initialisation and shuffling")
    group.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def training_config(args: argparse.Namespace) -> Any:
    from mmoe.train.trainer import TrainConfig

    return TrainConfig(learning_rate=args.learning_rate, batch_size=args.batch_size, epochs=args.epochs,
                       weight_decay=args.weight_decay, patience=args.patience, task_weights=args.task_weights,
                       seed=args.seed, threads=args.threads)


# -- commands -------------------------------------------------------------------------------------
def command_models(args: argparse.Namespace) -> int:
    from mmoe.models import MODELS, model_hyperparameters as defaults_of, model_summary

    width = max(len(name) for name in MODELS)
    for name in MODELS:
        print(f"{name:<{width}}  {model_summary(name)}")
        if args.verbose:
            print(f"{'':<{width}}  defaults: " + ", ".join(f"{k}={v}" for k, v in defaults_of(name).items()))
    return 0


def command_train(args: argparse.Namespace) -> int:
    from mmoe.data import load_dataset
    from mmoe.report.console import EpochProgress, print_summary
    from mmoe.runs import fit, save_run
    from mmoe.train.trainer import check_checkpoint_identity, load_checkpoint

    spec = dataset_spec(args)
    config = training_config(args)
    hyperparameters = model_hyperparameters(args)
    from mmoe.models import build_model, model_hyperparameters as accepted

    unexpected = sorted(set(hyperparameters) - set(accepted(args.model)))  # fail before reading any data
    if unexpected:
        flags = ", ".join("--" + name.replace("_", "-") for name in unexpected)
        raise MmoeError(f"model {args.model} does not take {flags}; see `mmoe models --verbose`")
    out = Path(args.out or f"runs/{args.model}-{spec['kind']}")
    checkpoint = out / "checkpoint.pt"
    if args.resume:
        if args.replicas != 1:
            raise MmoeError(f"--resume continues one model's training; it cannot be combined with --replicas "
                            f"{args.replicas}")
        # A missing, damaged or foreign checkpoint fails before the data is read; training checks
        # the rest (tasks, inputs, rows).
        saved = load_checkpoint(checkpoint)
        check_checkpoint_identity(checkpoint, saved["identity"], _checkpoint_identity(args.model, hyperparameters,
                                                                                      config, spec))
        resumed_after = int(saved["epoch"])
    started = time.perf_counter()
    data = load_dataset(spec)
    _log(f"data: {spec['kind']} — {len(data.train):,} train / {len(data.validation):,} validation / "
         f"{len(data.test):,} test rows, {data.input_spec.one_hot_dim} input columns, tasks "
         f"{', '.join(f'{t.name} ({t.kind})' for t in data.tasks)} [{time.perf_counter() - started:.1f}s]")
    build_model(args.model, data.input_spec, len(data.tasks), **hyperparameters)  # options checked before training
    if args.replicas < 1:
        raise MmoeError(f"--replicas must be at least 1, got {args.replicas}")
    if args.replicas > 1:
        return _train_replicas(args, spec, data, config, hyperparameters, out)
    resume_from = checkpoint if args.resume else None
    with EpochProgress(config.epochs, enabled=not args.quiet) as progress:
        if resume_from is not None:
            progress.bar.update(min(resumed_after, config.epochs))
            _log(f"resuming from {resume_from} after epoch {resumed_after}")
        result = fit(data, args.model, config, checkpoint_path=checkpoint, on_epoch=progress.update,
                     resume_from=resume_from, data_identity=spec, **hyperparameters)
    save_run(out, spec, data, result, config)
    print_summary(result, data.tasks, out)
    return 0


def _checkpoint_identity(model: str, hyperparameters: dict[str, Any], config: Any,
                         spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a checkpoint's identity known before the data is read (see trainer.run_identity)."""
    from mmoe.io import to_jsonable
    from mmoe.models import model_hyperparameters as defaults_of
    from mmoe.train.trainer import RESUMABLE_OPTIONS

    training = {key: value for key, value in config.to_dict().items() if key not in RESUMABLE_OPTIONS}
    return to_jsonable({"model": model, "hyperparameters": {**defaults_of(model), **hyperparameters},
                        "training": training, "data": spec})


def _train_replicas(args: argparse.Namespace, spec: dict[str, Any], data: Any, config: Any,
                    hyperparameters: dict[str, Any], out: Path) -> int:
    """--replicas N: N seeds trained at once; the run keeps the best replica (by the main task's
    validation metric) and replicas.json holds every replica's metrics with their spread."""
    from tqdm.auto import tqdm

    from mmoe.io import atomic_write_json
    from mmoe.report.console import print_summary
    from mmoe.runs import fit_replicas, save_run, summarize_replicas

    with tqdm(total=config.epochs, desc=f"{args.replicas} replicas", unit="epoch", disable=args.quiet,
              file=sys.stderr) as bar:
        def on_epoch(epoch: int, still_training: int) -> None:
            bar.set_postfix_str(f"{still_training} still training")
            bar.update(1)

        result, summary = fit_replicas(data, args.model, config, args.replicas, on_epoch=on_epoch, **hyperparameters)
    save_run(out, spec, data, result, config)
    spread = summarize_replicas(summary)
    atomic_write_json(out / "replicas.json", {"replicas": summary, "test_summary": spread})
    print_summary(result, data.tasks, out)
    print(f"{args.replicas} replicas (seeds {config.seed}..{config.seed + args.replicas - 1}), test metrics:")
    for task, metrics in spread.items():
        print(f"  {task}: " + ", ".join(f"{name} {v['mean']:.4f} ± {v['std']:.4f} (min {v['min']:.4f}, "
                                        f"max {v['max']:.4f})" for name, v in metrics.items()))
    kept = next(r["seed"] for r in summary if r["kept"])
    print(f"the run's model is the replica with the best main-task validation metric (seed {kept}); "
          f"every replica's metrics: {out / 'replicas.json'}")
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from mmoe.report.console import metrics_table
    from mmoe.runs import Run

    run = Run.load(args.run)
    if args.data is not None:
        from mmoe.data.tabular import read_table

        metrics = run.evaluate_frame(read_table(args.data), str(args.data))
        label = str(args.data)
    else:
        metrics = run.evaluate(args.split)
        label = f"{args.split} split"
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{run.config['model']} on {label}:")
        print(metrics_table({label: metrics}))
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from mmoe.data.tabular import read_table
    from mmoe.io import atomic_write
    from mmoe.runs import Run

    run = Run.load(args.run)
    frame = read_table(args.data)
    predictions = run.predict_frame(frame, str(args.data))
    keep = _columns(args.keep)
    missing = [c for c in keep if c not in frame.columns]
    if missing:
        raise MmoeError(f"{args.data}: --keep column(s) {', '.join(map(repr, missing))} not in the table")
    clash = [c for c in keep if c in predictions.columns]
    if clash:
        raise MmoeError(f"--keep column(s) {', '.join(map(repr, clash))} share a task's name; keep other columns")
    if keep:
        import pandas as pd

        predictions = pd.concat([frame[keep], predictions], axis=1)
    out = Path(args.out)
    if out.suffix.lower() in (".parquet", ".pq"):
        atomic_write(out, lambda temp: predictions.to_parquet(temp, index=False))
    else:
        atomic_write(out, lambda temp: predictions.to_csv(temp, index=False))
    _log(f"wrote {len(predictions):,} predictions ({', '.join(t.name for t in run.tasks)}) to {out}")
    return 0


def command_synthetic(args: argparse.Namespace) -> int:
    from mmoe.data.synthetic import label_correlation, synthetic_frame
    from mmoe.io import atomic_write

    config = synthetic_config(args)
    frame = synthetic_frame(config)
    out = Path(args.out)
    if out.suffix.lower() in (".parquet", ".pq"):
        atomic_write(out, lambda temp: frame.to_parquet(temp, index=False))
    else:
        atomic_write(out, lambda temp: frame.to_csv(temp, index=False))
    _log(f"wrote {len(frame):,} rows × {config.dim} features + labels y1, y2 to {out} "
         f"(label correlation {frame['y1'].corr(frame['y2']):.3f}, p = {config.correlation})")
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmoe", formatter_class=_formatter,
                                     description="Multi-task learning with Multi-gate Mixture-of-Experts "
                                                 "(Ma et al., KDD 2018) and the models it is compared with.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    from mmoe import __version__

    parser.add_argument("--version", action="version", version=f"mmoe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the models", formatter_class=_formatter)
    models.add_argument("--verbose", "-v", action="store_true", help="also show each model's defaults")
    models.set_defaults(handler=command_models)

    train = commands.add_parser("train", help="train a model and save the run", formatter_class=_formatter,
                                description="Train one model. Writes the weights, the fitted encoders, the "
                                            "config and metrics.json into --out.")
    add_dataset_options(train)
    add_model_options(train)
    add_training_options(train)
    train.add_argument("--out", type=Path, help="run directory (default: runs/MODEL-DATASET)")
    train.add_argument("--replicas", type=int, default=1,
                       help="train this many seeds at once (seed, seed+1, ...); keeps the best, reports the spread")
    train.add_argument("--resume", action="store_true",
                       help="continue from --out's checkpoint.pt (the last complete epoch) with the same options")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    train.set_defaults(handler=command_train)

    evaluate = commands.add_parser("evaluate", help="metrics of a saved run", formatter_class=_formatter)
    evaluate.add_argument("run", type=Path, help="run directory")
    evaluate.add_argument("--split", default="test", choices=["train", "validation", "test"],
                          help="which split of the run's data")
    evaluate.add_argument("--data", type=Path, help="a labelled table to evaluate on instead")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=command_evaluate)

    predict = commands.add_parser("predict", help="predict with a saved run", formatter_class=_formatter)
    predict.add_argument("run", type=Path, help="run directory")
    predict.add_argument("--data", type=Path, required=True, help="CSV or Parquet table of rows to predict")
    predict.add_argument("--out", type=Path, required=True, help="where to write predictions (.csv or .parquet)")
    predict.add_argument("--keep", help="comma-separated input columns to copy into the output (e.g. an id)")
    predict.set_defaults(handler=command_predict)

    synthetic = commands.add_parser("synthetic", help="write the paper's synthetic data to a table",
                                    formatter_class=_formatter)
    add_synthetic_options(synthetic, seed_flag="--seed")
    synthetic.add_argument("--out", type=Path, required=True, help="output file (.csv or .parquet)")
    synthetic.set_defaults(handler=command_synthetic)

    from mmoe.experiments.reproduce import add_arguments as add_reproduce_arguments, command_reproduce

    reproduce = commands.add_parser("reproduce", help="run the paper's studies and write a report",
                                    formatter_class=_formatter)
    add_reproduce_arguments(reproduce)
    reproduce.set_defaults(handler=command_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except MmoeError as error:
        if args.debug:
            traceback.print_exc()
        print(f"mmoe: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmoe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
