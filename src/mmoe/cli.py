"""`mmoe ...`: a thin command-line layer over the Python API.

Bad input ends with one line on stderr (`mmoe: error: ...`) and exit status 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmoe.errors import MmoeError
from mmoe.spec import DEFAULT_NUMERIC_EMBEDDING, NUMERIC_EMBEDDINGS


def _units(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers like 16 or 64,32, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 1,0.5, got {text!r}") from None


class _NamedNumbers(argparse.Action):
    """NAME=NUMBER, repeatable, collected into one {name: number} dict (None when never given)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any, option: Any = None):
        name, sep, number = str(value).partition("=")
        try:
            parsed = float(number) if sep and name else None
        except ValueError:
            parsed = None
        if parsed is None:
            parser.error(f"{option} expects NAME=NUMBER, e.g. alpha=1.5; got {value!r}")
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest, None) or {}), name: parsed})


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
    source.add_argument(
        "--dataset",
        choices=["census", "synthetic", "clicklog"],
        help="a built-in data set (clicklog: generated impressions with user and item ids, click and purchase)",
    )
    source.add_argument("--data", type=Path, help="your own table: a CSV or Parquet file, or a folder of Parquet files")
    source.add_argument(
        "--streaming",
        action="store_true",
        help="read the --data Parquet table in batches instead of loading it whole (tables larger "
        "than memory; the split is drawn row by row, see docs/tables.md)",
    )
    census = parser.add_argument_group("census")
    census.add_argument(
        "--group",
        type=int,
        choices=[1, 2],
        default=1,
        help="task group: 1 = income + marital status, 2 = education + marital status",
    )
    census.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the census files (default: $MMOE_DATA_DIR, then the user cache)",
    )
    synthetic = parser.add_argument_group("synthetic (the paper's generator, Section 3.2)")
    add_synthetic_options(synthetic, seed_flag="--data-seed")
    clicklog = parser.add_argument_group(
        "clicklog (impressions drawn from a known model, mmoe.data.clicklog; its seed is --data-seed)"
    )
    clicklog.add_argument("--impressions", type=int, default=1_000_000, help="rows of the log (train + test)")
    clicklog.add_argument("--users", type=int, default=100_000, help="distinct user ids (power-law popularity)")
    clicklog.add_argument("--items", type=int, default=10_000, help="distinct item ids (power-law popularity)")
    clicklog.add_argument(
        "--purchase-relatedness",
        type=float,
        default=0.5,
        help="0: purchase has drivers of its own; 1: the same drivers as click",
    )
    table = parser.add_argument_group("your own table (--data)")
    table.add_argument(
        "--tasks",
        help="NAME:binary|regression,...; the first is the main task; NAME:binary:given=OTHER for a task that "
        "follows an earlier one (purchase:binary:given=click)",
    )
    table.add_argument("--features", help="comma-separated feature columns (default: every other column)")
    table.add_argument("--categorical", help="comma-separated columns to treat as categorical")
    table.add_argument("--numeric", help="comma-separated columns to treat as numeric")
    table.add_argument(
        "--positive",
        action="append",
        metavar="TASK=VALUE",
        help="the positive value of a binary task whose values are not 0/1 or true/false",
    )
    vocabulary = parser.add_argument_group(
        "categorical columns of your table (docs/tables.md: vocabularies, embeddings and hashing)"
    )
    vocabulary.add_argument(
        "--embedding-dim",
        type=int,
        metavar="E",
        help="dimension of the embeddings of embedded columns (default 16); a column with more than "
        "100 slots is embedded, the others enter one-hot",
    )
    vocabulary.add_argument("--embed", metavar="COLS", help="comma-separated columns to embed whatever their size")
    vocabulary.add_argument(
        "--one-hot", metavar="COLS", help="comma-separated columns to enter one-hot whatever their size"
    )
    vocabulary.add_argument(
        "--min-frequency",
        type=int,
        metavar="N",
        help="values seen in fewer than N training rows share the slot of unseen values (default 1: keep all)",
    )
    vocabulary.add_argument(
        "--max-categories",
        type=int,
        metavar="N",
        help="keep at most the N most frequent values of a column; the rest share the slot of unseen values",
    )
    vocabulary.add_argument(
        "--hash-buckets",
        metavar="N|COL=N,...",
        help="hash every categorical column (N) or the columns named (COL=N,...) into N buckets instead "
        "of keeping a vocabulary (unbounded or unknown vocabularies, streams)",
    )
    vocabulary.add_argument(
        "--multi-value",
        action="append",
        metavar="COL[:max=L][:pooling=mean|sum][:shares=COL2]",
        help="a multi-valued column (a list of values per row, e.g. recently clicked items): its first L "
        "values (default 20) pooled (mean, the default, or sum) into one embedding; shares=COL2 uses "
        "COL2's vocabulary and embedding rows. Repeat it or separate columns with commas. A Parquet "
        "list column is multi-valued without it",
    )
    vocabulary.add_argument(
        "--multi-value-separator",
        metavar="SEP",
        help="the separator of a multi-valued column's values in a text cell (default '|')",
    )
    parser.add_argument(
        "--numeric-embedding",
        choices=NUMERIC_EMBEDDINGS,
        default=DEFAULT_NUMERIC_EMBEDDING,
        help="how numeric columns enter the network: periodic (each as a learned vector of periodic "
        "features, Gorishniy et al. 2022), none (as they are, the paper's input), or auto: periodic when "
        "the data also has categorical columns (census, click logs), none when every input is numeric",
    )
    table.add_argument("--validation-data", type=Path, help="a table to use as the validation split")
    table.add_argument("--test-data", type=Path, help="a table to use as the test split")
    table.add_argument("--validation-fraction", type=float, default=0.1, help="share of rows for validation")
    table.add_argument("--test-fraction", type=float, default=0.1, help="share of rows for test")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation/test split")


def add_synthetic_options(group: Any, seed_flag: str) -> None:
    from mmoe.data.synthetic import SyntheticConfig

    defaults = SyntheticConfig(correlation=0.5)
    group.add_argument(
        "--correlation",
        type=float,
        default=defaults.correlation,
        help="p: cosine similarity of the two tasks' weight vectors, in [-1, 1]",
    )
    group.add_argument("--dim", type=int, default=defaults.dim, help="input dimension d")
    group.add_argument("--scale", type=float, default=defaults.scale, help="c: norm of the weight vectors")
    group.add_argument("--sines", type=int, default=defaults.sines, help="m: number of sine terms")
    group.add_argument(
        "--alpha-scale",
        type=float,
        default=defaults.alpha_scale,
        help="scale of the sine frequencies alpha_i ~ N(0, 1) * alpha-scale",
    )
    group.add_argument("--noise", type=float, default=defaults.noise, help="standard deviation of the label noise")
    group.add_argument("--rows", type=int, default=defaults.rows, help="number of rows")
    group.add_argument(
        seed_flag,
        dest="data_seed",
        type=int,
        default=defaults.seed,
        help="seed of the generator (weights, sines, rows)",
    )


def synthetic_config(args: argparse.Namespace) -> Any:
    from mmoe.data.synthetic import SyntheticConfig

    return SyntheticConfig(
        correlation=args.correlation,
        dim=args.dim,
        scale=args.scale,
        sines=args.sines,
        alpha_scale=args.alpha_scale,
        noise=args.noise,
        rows=args.rows,
        seed=args.data_seed,
    )


def dataset_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON description of the chosen data set (saved in the run's config)."""
    from dataclasses import asdict

    if (args.dataset is None) == (args.data is None):
        raise MmoeError("choose the data: --dataset census, synthetic or clicklog, or --data FILE")
    if getattr(args, "streaming", False) and args.data is None:
        raise MmoeError(
            f"--streaming reads a Parquet table given with --data; --dataset {args.dataset} is loaded "
            f"in memory, so leave --streaming out"
        )
    # How the numeric columns enter the network, written out (a description without it reads as "none").
    embedding = {"numeric_embedding": args.numeric_embedding} if hasattr(args, "numeric_embedding") else {}
    if args.dataset == "census":
        return {
            "kind": "census",
            "group": args.group,
            "data_dir": str(args.data_dir) if args.data_dir else None,
            "split_seed": args.split_seed,
            **embedding,
        }
    if args.dataset == "synthetic":
        return {
            "kind": "synthetic",
            "config": asdict(synthetic_config(args)),
            "split_seed": args.split_seed,
            **embedding,
        }
    if args.dataset == "clicklog":
        from mmoe.data.clicklog import ClickLogConfig

        config = ClickLogConfig(
            rows=args.impressions,
            users=args.users,
            items=args.items,
            purchase_relatedness=args.purchase_relatedness,
            seed=args.data_seed,
        )
        return {
            "kind": "clicklog",
            "config": asdict(config),
            "split_seed": args.split_seed,
            "conditional": True,  # purchase follows click (`load_clicklog`)
            **_vocabulary_spec(args),
            **embedding,
        }
    if not args.tasks:
        raise MmoeError("--data needs --tasks, e.g. --tasks clicked:binary,watch_time:regression")
    column_types = dict.fromkeys(_columns(args.categorical), "categorical")
    column_types.update(dict.fromkeys(_columns(args.numeric), "numeric"))
    return {
        "kind": "table",
        "path": str(args.data),
        "tasks": args.tasks,
        "features": _columns(args.features) or None,
        "column_types": column_types or None,
        "positive": _pairs(args.positive, "--positive") or None,
        "validation_fraction": args.validation_fraction,
        "test_fraction": args.test_fraction,
        "split_seed": args.split_seed,
        "validation_path": str(args.validation_data) if args.validation_data else None,
        "test_path": str(args.test_data) if args.test_data else None,
        # Only when set, so that the specs (and checkpoints) of in-memory runs stay as they were.
        **({"streaming": True} if getattr(args, "streaming", False) else {}),
        **_vocabulary_spec(args),
        **embedding,
    }


def _vocabulary_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The vocabulary options given (--embedding-dim ... --hash-buckets), checked, as the data set
    description's keys; only those set, so that descriptions without them stay as they were."""
    from mmoe.data.vocabulary import VocabularyOptions

    return VocabularyOptions.of(
        embedding_dim=getattr(args, "embedding_dim", None),
        embed=_columns(getattr(args, "embed", None)) or None,
        one_hot=_columns(getattr(args, "one_hot", None)) or None,
        min_frequency=getattr(args, "min_frequency", None),
        max_categories=getattr(args, "max_categories", None),
        hash_buckets=_hash_buckets(getattr(args, "hash_buckets", None)),
        multi_value=[item for text in getattr(args, "multi_value", None) or [] for item in _columns(text)] or None,
        multi_value_separator=getattr(args, "multi_value_separator", None),
    ).spec()


def _hash_buckets(text: str | None) -> int | dict[str, int] | None:
    """--hash-buckets: N (every categorical column) or COL=N,COL=N (the columns named)."""
    if text is None:
        return None
    expected = "expected N or COL=N,... with N a whole number of buckets, e.g. --hash-buckets user_id=1000000"
    text = text.strip()
    if "=" not in text:
        try:
            return int(text)
        except ValueError:
            raise MmoeError(f"--hash-buckets {text!r}: {expected}") from None
    buckets = {}
    for item in _columns(text):
        column, sep, count = (part.strip() for part in item.rpartition("="))
        try:
            if not sep or not column:
                raise ValueError(item)
            buckets[column] = int(count)
        except ValueError:
            raise MmoeError(f"--hash-buckets {text!r}: {item!r} is not COL=N; {expected}") from None
    return buckets


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, and one flag per hyperparameter name of any model or baseline, generated from their
    constructor signatures (`mmoe.models.options`): --num-experts for num_experts. Unset, a flag is
    None, so that the model's own default applies."""
    from mmoe.baselines import hyperparameter_options, model_names
    from mmoe.models.options import CHOICE, FLOAT, INT, UNITS

    group = parser.add_argument_group(
        "model (options a model does not take are an error; unset options take the model's default, see `mmoe models`)"
    )
    group.add_argument(
        "--model",
        default="mmoe",
        help=f"the model: {', '.join(model_names())} (lightgbm: a baseline, see `mmoe models`)",
    )
    parse: dict[object, Callable[[str], Any]] = {INT: int, FLOAT: float, UNITS: _units, CHOICE: str}
    for option in hyperparameter_options().values():
        # The text names each model's default; the empty field "%(default).0s" keeps the help
        # formatter from adding "(default: None)".
        group.add_argument(
            option.flag,
            dest=option.name,
            type=parse[option.kind],
            choices=option.choices or None,
            help=option.help().replace("%", "%%") + "%(default).0s",
        )


def model_hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """The hyperparameter flags given (as the models' parameter names), the unset ones left out."""
    from mmoe.baselines import hyperparameter_options

    return {name: getattr(args, name) for name in hyperparameter_options() if getattr(args, name, None) is not None}


def add_training_options(
    parser: argparse.ArgumentParser,
    title: str = "training",
    learning_rate: bool = True,
    helps: dict[str, str] | None = None,
) -> None:
    """The training flags of `mmoe train`. `mmoe tune` shares them under its own title, without
    --learning-rate (it is tuned), and with help texts of its own for some flags (`helps`, by flag)."""
    from mmoe.train.optim import SPARSE_OPTIMIZERS
    from mmoe.train.trainer import TrainConfig

    defaults = TrainConfig()
    helps = helps or {}
    group = parser.add_argument_group(title)
    if learning_rate:
        group.add_argument(
            "--learning-rate", "--lr", type=float, default=defaults.learning_rate, help="Adam learning rate"
        )
    group.add_argument("--batch-size", type=int, default=defaults.batch_size, help="rows per mini-batch")
    group.add_argument(
        "--epochs", type=int, default=defaults.epochs, help=helps.get("--epochs", "maximum number of epochs")
    )
    group.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="Adam weight decay")
    # -- the learning-rate schedule and weight decay's kind (mmoe.train.schedule)
    from mmoe.train.schedule import LR_SCHEDULES, WEIGHT_DECAY_MODES

    group.add_argument(
        "--lr-schedule",
        choices=list(LR_SCHEDULES),
        default=defaults.lr_schedule,
        help="the learning rate over the steps: constant, or cosine / linear decay to 0 at the last epoch's end "
        f"(default {defaults.lr_schedule})",
    )
    group.add_argument(
        "--warmup-epochs",
        type=float,
        default=defaults.warmup_epochs,
        help="raise the learning rate linearly from 0 over this many epochs first (a fraction allowed; default 0)",
    )
    group.add_argument(
        "--weight-decay-mode",
        choices=list(WEIGHT_DECAY_MODES),
        default=defaults.weight_decay_mode,
        help="l2: Adam's weight decay, added to the gradient; decoupled: AdamW's (default l2)",
    )
    group.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help=helps.get(
            "--patience", "stop after this many epochs without a better main-task validation metric (0: never)"
        ),
    )
    group.add_argument("--task-weights", type=_floats, help="loss weight per task, e.g. 1,0.5 (default: all 1)")
    from mmoe.train.weighting import WEIGHTINGS

    group.add_argument(
        "--weighting",
        choices=list(WEIGHTINGS),
        default=defaults.weighting,
        metavar="NAME",
        help="how the task losses make one update (see `mmoe weightings`); --task-weights alone means fixed",
    )
    group.add_argument(
        "--weighting-option",
        dest="weighting_options",
        action=_NamedNumbers,
        metavar="NAME=NUMBER",
        help="an option of the --weighting method, e.g. alpha=1.5 (repeatable; `mmoe weightings -v` lists them)",
    )
    group.add_argument(
        "--seed", type=int, default=defaults.seed, help=helps.get("--seed", "seed of initialisation and shuffling")
    )
    group.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    group.add_argument(
        "--sparse-optimizer",
        choices=list(SPARSE_OPTIMIZERS),
        default=defaults.sparse_optimizer,
        help="how embedded columns' tables are trained: lazy-adam or row-adagrad update only the rows a batch "
        f"looks up; dense: Adam over every row (default {defaults.sparse_optimizer})",
    )
    group.add_argument(
        "--entire-space",
        action=argparse.BooleanOptionalAction,
        default=defaults.entire_space,
        help="train conditional tasks (NAME:binary:given=OTHER) ESMM's way, on their joint event over every row "
        "(default: on for --model esmm, off for the others)",
    )
    group.add_argument(
        "--counterfactual-weight",
        type=float,
        default=defaults.counterfactual_weight,
        metavar="WEIGHT",
        help="with entire-space training, add ESCM²'s inverse-propensity weighted loss of each conditional task "
        f"on the rows where its condition holds, with this weight (default {defaults.counterfactual_weight:g}: none)",
    )


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The training flags as `MultiTaskEstimator`/`TrainConfig` parameters (`mmoe tune` has no
    --learning-rate: TrainConfig's default applies)."""
    from dataclasses import fields

    from mmoe.train.trainer import TrainConfig

    # A flag's dest is the TrainConfig field's name; fields without a flag keep their defaults.
    return {field.name: getattr(args, field.name) for field in fields(TrainConfig) if hasattr(args, field.name)}


def training_config(args: argparse.Namespace) -> Any:
    """The TrainConfig of `add_training_options`' flags."""
    from mmoe.train.trainer import TrainConfig

    return TrainConfig(**training_options(args))


# -- commands -------------------------------------------------------------------------------------
def command_models(args: argparse.Namespace) -> int:
    from mmoe.baselines import hyperparameters_of as defaults_of
    from mmoe.baselines import model_names
    from mmoe.baselines import summary as model_summary

    names = model_names()  # the neural models, then the baselines (mmoe.baselines)
    width = max(len(name) for name in names)
    for name in names:
        print(f"{name:<{width}}  {model_summary(name)}")
        if args.verbose:
            print(f"{'':<{width}}  defaults: " + ", ".join(f"{k}={v}" for k, v in defaults_of(name).items()))
    return 0


def command_weightings(args: argparse.Namespace) -> int:
    from mmoe.train.weighting import describe_weightings

    print(describe_weightings(verbose=args.verbose))
    return 0


def command_train(args: argparse.Namespace) -> int:
    from mmoe.estimator import MultiTaskEstimator, train_run
    from mmoe.report.console import TrainProgress, print_summary
    from mmoe.train import distributed

    # --config FILE fills in every flag not given explicitly; its data set is used as is, unless flags change it.
    file_spec = apply_config_file(args) if args.config is not None else None
    spec = file_spec or dataset_spec(args)
    hyperparameters = model_hyperparameters(args)
    from mmoe.baselines import check_hyperparameters, is_baseline, neural_only

    check_hyperparameters(args.model, sorted(hyperparameters))  # before any data is read; main() names the flags
    baseline = is_baseline(args.model)  # --model lightgbm: no epochs to log, no processes to start
    if baseline:
        for flag, given in (
            ("--distributed", args.distributed),
            ("--log-dir", args.log_dir),
            ("--mlflow", args.mlflow),
        ):
            if given is not None:
                raise neural_only(args.model, flag)
    out = Path(args.out or f"runs/{args.model}-{spec['kind']}")
    training_config(args)  # bad training options fail before any process starts
    if args.distributed is not None or distributed.launched_by_torchrun():
        if args.replicas != 1:
            raise MmoeError(
                f"--replicas {args.replicas} trains seeds side by side in one process; it cannot be "
                f"combined with distributed training (torchrun or --distributed)"
            )
        if not distributed.launched_by_torchrun():  # this process only starts the ranks and waits for them
            return distributed.launch(args.distributed, args.argv)
    reports = os.environ.get("RANK", "0") == "0"  # under torchrun every rank trains; rank 0 reports
    with TrainProgress(args.epochs, args.replicas, enabled=reports and not args.quiet) as progress:
        estimator = MultiTaskEstimator(
            model=args.model,
            **training_options(args),
            replicas=args.replicas,
            ensemble=args.ensemble,
            verbose=1,
            callbacks=[] if baseline else [progress, *_loggers(args)],
            **hyperparameters,
        )
        train_run(estimator, spec, out, resume=args.resume, processes=args.distributed)
    if reports:
        print_summary(estimator.result_, estimator.tasks_, out)
        if estimator.replicas_ is not None:
            _print_replicas(estimator.replicas_, args.replicas, args.seed, out)
    return 0


def _loggers(args: argparse.Namespace) -> list[Any]:
    """--log-dir and --mlflow: the per-epoch metric loggers (`mmoe.train.callbacks`)."""
    from mmoe.train.callbacks import MLflowLogger, TensorBoardLogger

    loggers: list[Any] = []
    if args.log_dir is not None:
        loggers.append(TensorBoardLogger(args.log_dir))
    if args.mlflow is not None:
        loggers.append(MLflowLogger(tracking_uri=args.mlflow or None, run_name=Path(args.out or "run").name))
    return loggers


def _print_replicas(replicas: dict[str, Any], count: int, seed: int, out: Path) -> None:
    """--replicas N: the spread of the test metrics over the N seeds, and which one the run kept."""
    print(f"{count} replicas (seeds {seed}..{seed + count - 1}), test metrics:")
    for task, metrics in replicas["test_summary"].items():
        print(
            f"  {task}: "
            + ", ".join(
                f"{name} {v['mean']:.4f} ± {v['std']:.4f} (min {v['min']:.4f}, max {v['max']:.4f})"
                for name, v in metrics.items()
            )
        )
    if replicas.get("ensemble"):
        print(f"the run's model is the ensemble of all {count} replicas (the mean of their predictions)")
        return
    kept = next(r["seed"] for r in replicas["replicas"] if r["kept"])
    print(
        f"the run's model is the replica with the best main-task validation metric (seed {kept}); "
        f"every replica's metrics: {out / 'replicas.json'}"
    )


def command_evaluate(args: argparse.Namespace) -> int:
    from mmoe.predict import evaluate
    from mmoe.report.console import metrics_table
    from mmoe.runs import Run

    run = Run.load(args.run)
    metrics = evaluate(run, args.split, args.data, args.streaming)
    label = str(args.data) if args.data is not None else f"{args.split} split"
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{run.config['model']} on {label}:")
        print(metrics_table({label: metrics}))
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from mmoe.predict import write_predictions
    from mmoe.runs import Run

    run = Run.load(args.run)
    rows = write_predictions(run, args.data, args.out, _columns(args.keep), args.streaming)
    _log(f"wrote {rows:,} predictions ({', '.join(t.name for t in run.tasks)}) to {args.out}")
    return 0


def command_export(args: argparse.Namespace) -> int:
    from mmoe.export import export_run, load_signature, signature_path

    out = export_run(args.run, args.out, args.format)
    signature = load_signature(signature_path(out))
    inputs = ", ".join(f"{i['name']} [batch, {i['shape'][1]}] {i['dtype']}" for i in signature["inputs"])
    outputs = signature["outputs"][0]
    _log(
        f"wrote {out} ({args.format}, {signature['model']}; inputs {inputs}; output {outputs['name']} "
        f"[batch, {len(outputs['columns'])}]: {', '.join(outputs['columns'])}) and {signature_path(out)}"
    )
    return 0


def command_demo(args: argparse.Namespace) -> int:
    from mmoe.demo import DemoOptions, demo_table, run_demo

    options = DemoOptions(rows=args.rows, epochs=args.epochs, seed=args.seed, threads=args.threads)
    _log(
        f"training {' and '.join(options.models)} on {options.rows:,} synthetic rows (two regression tasks, y1 "
        f"and y2) at task correlations {' and '.join(map(str, options.correlations))}; no download needed"
    )
    rows = run_demo(options)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(demo_table(rows))
    for correlation in options.correlations:
        best = min((row for row in rows if row["correlation"] == correlation), key=lambda row: row["mean_mse"])
        print(f"p = {correlation}: lowest test MSE: {best['model']}")
    return 0


BENCHMARKS = {
    "census": "bench.py",  # MMoE on census against torch-rechub and DeepCTR-Torch; population training
    "clicklog": "clicklog.py",  # the click-log benchmark: ids at scale, against the peers and LightGBM
    "streaming": "streaming.py",  # a table larger than memory, streamed against loaded whole
    "weighting": "weighting.py",  # each loss-weighting method's per-step cost on census MMoE, against ew
}


def command_bench(args: argparse.Namespace) -> int:
    """`mmoe bench NAME [OPTIONS]`: runs benchmarks/NAME's script of a source checkout with this
    Python (the benchmarks, their peers and their results live in the repository, not the package):
    the checkout this mmoe was imported from, else the current directory or one above it."""
    import subprocess

    import mmoe

    if args.benchmark not in BENCHMARKS:
        raise MmoeError(f"unknown benchmark {args.benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    name = Path("benchmarks") / BENCHMARKS[args.benchmark]
    here = Path.cwd().resolve()
    roots = [Path(mmoe.__file__).resolve().parents[2], here, *here.parents]
    script = next((root / name for root in roots if (root / name).is_file()), None)
    if script is None:
        raise MmoeError(
            f"no {name} in {here} or above it: `mmoe bench` runs the benchmarks of a source checkout; run it "
            f"inside one (git clone, then pip install -c constraints.txt '.[bench]')"
        )
    return subprocess.run([sys.executable, str(script), *args.options], cwd=script.parents[1]).returncode


def command_synthetic(args: argparse.Namespace) -> int:
    from mmoe.data.synthetic import synthetic_frame
    from mmoe.io import atomic_write

    config = synthetic_config(args)
    frame = synthetic_frame(config)
    out = Path(args.out)
    if out.suffix.lower() in (".parquet", ".pq"):
        atomic_write(out, lambda temp: frame.to_parquet(temp, index=False))
    else:
        atomic_write(out, lambda temp: frame.to_csv(temp, index=False))
    _log(
        f"wrote {len(frame):,} rows × {config.dim} features + labels y1, y2 to {out} "
        f"(label correlation {frame['y1'].corr(frame['y2']):.3f}, p = {config.correlation})"
    )
    return 0


# -- tune, and train --config ---------------------------------------------------------------------------
CONFIG_HELP = (
    "a JSON file with a model, its hyperparameters, training options and a data set: the best.json of "
    "`mmoe tune`, or a run's config.json. Its values stand in for the flags you do not give. A flag given "
    "explicitly on this command line always wins over the file, even when it repeats the flag's default; "
    "--model naming another model than the file's also drops the file's hyperparameters; --dataset or --data "
    "replaces the file's data set, while other data flags (--split-seed, --rows, --data-dir, ...) change only "
    "that value of the file's data set. The defaults shown here apply only where neither sets a value"
)


def apply_config_file(args: argparse.Namespace) -> dict[str, Any] | None:
    """`train --config FILE`: sets every model, training and data option of `args` that the command
    line (args.argv) does not give explicitly to the file's value (the rules are CONFIG_HELP's).
    Returns the file's data set spec when it is used as is, else None: then dataset_spec(args)
    builds the data set from the file's values and the flags that change them."""
    from mmoe.config_file import read_train_config

    path = args.config
    document = read_train_config(path)
    explicit = _explicit_options(args)
    if "model" not in explicit:
        args.model = document["model"]
    if args.model == document["model"]:  # the hyperparameters belong to the file's model
        for name, value in document["hyperparameters"].items():
            if name not in explicit:
                setattr(args, name, value)
    for name, value in document["training"].items():
        if name not in explicit:
            setattr(args, name, value)
    dataset = document["dataset"]
    if dataset is None or explicit & {"dataset", "data"}:
        return None
    changed = explicit & _dataset_dests()
    if not changed:
        return dataset
    values = _dataset_flags(dataset, path)
    # Only data sets that flags describe completely can be changed flag by flag. A file written
    # before --numeric-embedding has no such key: its numeric columns entered as they are.
    values.setdefault("numeric_embedding", dataset.get("numeric_embedding", "none"))
    if dataset_spec(argparse.Namespace(**{**vars(args), **values})) != {"numeric_embedding": "none", **dataset}:
        raise MmoeError(
            f"--config {path}: its data set cannot be changed by "
            f"{', '.join('--' + d.replace('_', '-') for d in sorted(changed))}; give the whole data set "
            f"on the command line (--dataset or --data with its options)"
        )
    for name, value in values.items():
        if name not in explicit:
            setattr(args, name, value)
    return None


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The parser's COMMAND argument (argparse keeps no public handle on it)."""
    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))


def _explicit_options(args: argparse.Namespace) -> set[str]:
    """The options (as dests) of `args.command` written on its command line, args.argv: argparse
    fills in the defaults, so the namespace alone cannot tell `--epochs 20` from no --epochs. The
    same command line is parsed again with the command's defaults suppressed."""
    parser = build_parser()
    commands = _subparsers(parser)
    command = commands.choices[args.command]
    for action in command._actions:
        action.default = argparse.SUPPRESS
    given = parser.parse_args(getattr(args, "argv", None) or [args.command])
    return {action.dest for action in command._actions} & set(vars(given))


def _dataset_dests() -> set[str]:
    parser = argparse.ArgumentParser(add_help=False)
    add_dataset_options(parser)
    return {action.dest for action in parser._actions}


def _dataset_flags(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """The data flags' values (as dests) that describe `spec`, the inverse of dataset_spec."""
    try:
        if spec["kind"] == "census":
            return {
                "dataset": "census",
                "data": None,
                "group": spec["group"],
                "data_dir": Path(spec["data_dir"]) if spec.get("data_dir") else None,
                "split_seed": spec["split_seed"],
            }
        if spec["kind"] == "synthetic":
            config = dict(spec["config"])
            config["data_seed"] = config.pop("seed")
            return {"dataset": "synthetic", "data": None, **config, "split_seed": spec["split_seed"]}
        if spec["kind"] == "clicklog":
            config = spec["config"]
            return {
                "dataset": "clicklog",
                "data": None,
                "impressions": config["rows"],
                "users": config["users"],
                "items": config["items"],
                "purchase_relatedness": config["purchase_relatedness"],
                "data_seed": config["seed"],
                "split_seed": spec["split_seed"],
                **_vocabulary_flags(spec),
            }
        if spec["kind"] == "table":
            types = spec.get("column_types") or {}
            return {
                "dataset": None,
                "data": Path(spec["path"]),
                "tasks": spec["tasks"],
                "features": ",".join(spec["features"]) if spec.get("features") else None,
                "categorical": ",".join(c for c, t in types.items() if t == "categorical") or None,
                "numeric": ",".join(c for c, t in types.items() if t == "numeric") or None,
                "positive": [f"{task}={value}" for task, value in (spec.get("positive") or {}).items()] or None,
                "validation_fraction": spec["validation_fraction"],
                "test_fraction": spec["test_fraction"],
                "split_seed": spec["split_seed"],
                "validation_data": Path(spec["validation_path"]) if spec.get("validation_path") else None,
                "test_data": Path(spec["test_path"]) if spec.get("test_path") else None,
                **_vocabulary_flags(spec),
            }
    except (KeyError, TypeError, AttributeError):
        pass
    raise MmoeError(
        f"--config {path}: its data set ({spec.get('kind')}) cannot be changed flag by flag; give the "
        f"whole data set on the command line (--dataset or --data with its options)"
    )


def _vocabulary_flags(spec: dict[str, Any]) -> dict[str, Any]:
    """The vocabulary flags' values (as dests) of a table's description, the inverse of _vocabulary_spec."""
    buckets = spec.get("hash_buckets")
    return {
        "embedding_dim": spec.get("embedding_dim"),
        "embed": ",".join(spec["embed"]) if spec.get("embed") else None,
        "one_hot": ",".join(spec["one_hot"]) if spec.get("one_hot") else None,
        "min_frequency": spec.get("min_frequency"),
        "max_categories": spec.get("max_categories"),
        "hash_buckets": ",".join(f"{c}={n}" for c, n in buckets.items())
        if isinstance(buckets, dict)
        else (None if buckets is None else str(buckets)),
        "multi_value": [
            ":".join([column, *(f"{key}={value}" for key, value in settings.items())])
            for column, settings in spec["multi_value"].items()
        ]
        if spec.get("multi_value")
        else None,
        "multi_value_separator": spec.get("multi_value_separator"),
    }


def add_tune_options(parser: argparse.ArgumentParser) -> None:
    search = parser.add_argument_group("tuning")
    search.add_argument("--model", default="mmoe", help="the model to tune (see `mmoe models`)")
    search.add_argument(
        "--trials",
        type=int,
        default=100,
        help="finished (complete or pruned) trials the study should have in all, counted over every "
        "worker; a rerun with the same --storage and --study goes on until it has them",
    )
    search.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna RDB storage the workers share: sqlite:///tune.db (one machine) or "
        "postgresql://user:password@host/database (many); without it, the SQLite file "
        "OUT/study.db, so that a rerun continues an interrupted tuning",
    )
    search.add_argument("--study", metavar="NAME", help="the study's name in the storage (default: MODEL-DATASET)")
    # Not argparse choices: a bad value is then the usual one-line error, not a usage message.
    search.add_argument("--sampler", default="gp", help="gp (Gaussian process, the paper's choice) or tpe")
    search.add_argument(
        "--sampler-seed",
        type=int,
        help="seed of the sampler (default: fresh in every worker, so that workers sharing a study "
        "do not draw the same first trials)",
    )
    search.add_argument(
        "--no-prune",
        action="store_true",
        help="train every trial to its end; otherwise, with --sampler tpe, a trial whose validation metric "
        "at an epoch is below the median of earlier trials at that epoch stops there (after 5 trials). The gp "
        "sampler never prunes: it ignores pruned trials and would propose the same point again",
    )
    search.add_argument(
        "--max-units",
        type=int,
        default=2048,
        help="most hidden units per layer; MoE: experts × units per expert (the paper's cap: 2048)",
    )
    add_training_options(
        parser,
        title="training of every trial (the learning rate is tuned)",
        learning_rate=False,
        helps={
            "--epochs": "most epochs per trial; the best epoch becomes the tuned number of epochs",
            "--patience": "stop a trial after this many epochs without a better main-task validation metric",
            "--seed": "seed of initialisation and shuffling; trial n uses seed + n",
        },
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for best.json, the best configuration (and study.db without --storage) "
        "(default: runs/tune-MODEL-DATASET)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no line per trial")


def command_tune(args: argparse.Namespace) -> int:
    from mmoe.baselines import is_baseline, neural_only
    from mmoe.tune import TuneOptions, check_options, run_tune

    if is_baseline(args.model):  # --model lightgbm: its defaults are the baseline; nothing to tune here
        raise neural_only(args.model, "mmoe tune")
    check_options(args.model, args.trials, args.sampler, args.max_units)  # before the data options
    spec = dataset_spec(args)
    out = Path(args.out or f"runs/tune-{args.model}-{spec['kind']}")
    run_tune(
        TuneOptions(
            model=args.model,
            trials=args.trials,
            dataset=spec,
            training=training_config(args),
            out=out,
            storage=args.storage,
            study=args.study,
            sampler=args.sampler,
            sampler_seed=args.sampler_seed,
            prune=not args.no_prune,
            max_units=args.max_units,
            quiet=args.quiet,
        )
    )
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmoe",
        formatter_class=_formatter,
        description="Multi-task learning with Multi-gate Mixture-of-Experts "
        "(Ma et al., KDD 2018) and the models it is compared with.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    from mmoe import __version__

    parser.add_argument("--version", action="version", version=f"mmoe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the models", formatter_class=_formatter)
    models.add_argument("--verbose", "-v", action="store_true", help="also show each model's defaults")
    models.set_defaults(handler=command_models)

    weightings = commands.add_parser(
        "weightings", help="list the loss weightings (--weighting)", formatter_class=_formatter
    )
    weightings.add_argument("--verbose", "-v", action="store_true", help="also show each method's options")
    weightings.set_defaults(handler=command_weightings)

    train = commands.add_parser(
        "train",
        help="train a model and save the run",
        formatter_class=_formatter,
        description="Train one model. Writes the weights, the fitted encoders, the config and metrics.json into --out.",
    )
    add_dataset_options(train)
    add_model_options(train)
    add_training_options(train)
    train.add_argument("--out", type=Path, help="run directory (default: runs/MODEL-DATASET)")
    train.add_argument("--config", type=Path, metavar="FILE", help=CONFIG_HELP)
    train.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="train this many seeds at once (seed, seed+1, ...); keeps the best, reports the spread",
    )
    train.add_argument(
        "--ensemble",
        action="store_true",
        help="with --replicas N: keep all N as one model that averages their predictions (probabilities)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from --out's checkpoint.pt (the last complete epoch) with the same options",
    )
    train.add_argument(
        "--distributed",
        type=int,
        metavar="N",
        help="data-parallel training in N local processes (the same as `torchrun --standalone "
        "--nproc-per-node N -m mmoe train ...`); --batch-size is the global batch",
    )
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    train.add_argument(
        "--log-dir",
        type=Path,
        metavar="DIR",
        help="also write every epoch's losses and validation metrics to TensorBoard event files in "
        "DIR (pip install 'mmoe[tensorboard]')",
    )
    train.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        metavar="TRACKING_URI",
        help="also log every epoch's losses and validation metrics to MLflow: its local file store "
        "./mlruns, or TRACKING_URI when given (pip install 'mmoe[mlflow]')",
    )
    train.set_defaults(handler=command_train)

    tune = commands.add_parser(
        "tune",
        help="tune a model's hyperparameters; many workers can share one study",
        formatter_class=_formatter,
        description="Tune with Optuna (Gaussian process by default, as the paper) on the main "
        "task's validation metric (AUC; MSE for a regression main task), pruning "
        "hopeless trials. Workers started with the same --storage and --study, on "
        "one machine or many, share the work and finish exactly --trials trials "
        "together. Writes OUT/best.json, which `mmoe train --config` trains.",
    )
    add_dataset_options(tune)
    add_tune_options(tune)
    tune.set_defaults(handler=command_tune)

    evaluate = commands.add_parser("evaluate", help="metrics of a saved run", formatter_class=_formatter)
    evaluate.add_argument("run", type=Path, help="run directory")
    evaluate.add_argument(
        "--split", default="test", choices=["train", "validation", "test"], help="which split of the run's data"
    )
    evaluate.add_argument("--data", type=Path, help="a labelled table to evaluate on instead")
    evaluate.add_argument(
        "--streaming",
        action="store_true",
        help="read the --data Parquet table in batches (a run trained with --streaming always reads its own table so)",
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=command_evaluate)

    predict = commands.add_parser("predict", help="predict with a saved run", formatter_class=_formatter)
    predict.add_argument("run", type=Path, help="run directory")
    predict.add_argument("--data", type=Path, required=True, help="CSV or Parquet table of rows to predict")
    predict.add_argument("--out", type=Path, required=True, help="where to write predictions (.csv or .parquet)")
    predict.add_argument("--keep", help="comma-separated input columns to copy into the output (e.g. an id)")
    predict.add_argument(
        "--streaming",
        action="store_true",
        help="read the Parquet table and write the predictions in batches (tables larger than memory)",
    )
    predict.set_defaults(handler=command_predict)

    export = commands.add_parser(
        "export",
        help="write a run's model as ONNX or TorchScript for serving",
        formatter_class=_formatter,
        description="Write the run's model with its numeric standardisation and output "
        "transforms folded in (outputs as `mmoe predict` prints them), and "
        "OUT.signature.json beside it: the inputs, the category codes, the "
        "encoder. ONNX needs `pip install 'mmoe[export]'`.",
    )
    export.add_argument("run", type=Path, help="run directory")
    # Not argparse choices: a bad value is then the usual one-line error, not a usage message.
    export.add_argument("--format", default="onnx", help="onnx or torchscript")
    export.add_argument("--out", type=Path, required=True, help="the file to write, e.g. model.onnx")
    export.set_defaults(handler=command_export)

    from mmoe.demo import DemoOptions

    demo_defaults = DemoOptions()
    demo = commands.add_parser(
        "demo",
        help="MMoE beside Shared-Bottom on synthetic tasks, in about a minute",
        formatter_class=_formatter,
        description="Trains MMoE and Shared-Bottom (default sizes) on the paper's synthetic "
        "data with smooth sines (c = 1, alpha ~ N(0, 1)) at a low and a high task "
        "correlation, and prints their test metrics side by side.",
    )
    demo.add_argument("--rows", type=int, default=demo_defaults.rows, help="generated rows per correlation")
    demo.add_argument("--epochs", type=int, default=demo_defaults.epochs, help="most epochs per model")
    demo.add_argument("--seed", type=int, default=demo_defaults.seed, help="seed of the data and of every model")
    demo.add_argument("--threads", type=int, default=1, help="torch threads (these models are too small for more)")
    demo.add_argument("--json", action="store_true", help="print JSON")
    demo.set_defaults(handler=command_demo)

    bench = commands.add_parser(
        "bench",
        help="run a benchmark of this source checkout (census, clicklog, streaming, weighting)",
        formatter_class=_formatter,
        description="Runs benchmarks/bench.py (census), clicklog.py, streaming.py or weighting.py with this "
        "Python; they print their tables and write JSON under benchmarks/results/. Peers: pip install -e "
        "'.[bench]'. Options after the name go to the script (`mmoe bench clicklog --smoke`, "
        "`mmoe bench clicklog --help`).",
    )
    bench.add_argument("benchmark", help="census, clicklog, streaming or weighting")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the script's own options")
    bench.set_defaults(handler=command_bench)

    synthetic = commands.add_parser(
        "synthetic", help="write the paper's synthetic data to a table", formatter_class=_formatter
    )
    add_synthetic_options(synthetic, seed_flag="--seed")
    synthetic.add_argument("--out", type=Path, required=True, help="output file (.csv or .parquet)")
    synthetic.set_defaults(handler=command_synthetic)

    from mmoe.report.reproduce import add_arguments as add_reproduce_arguments
    from mmoe.report.reproduce import command_reproduce

    reproduce = commands.add_parser(
        "reproduce", help="run the paper's studies and write a report", formatter_class=_formatter
    )
    add_reproduce_arguments(reproduce)
    reproduce.set_defaults(handler=command_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --distributed` starts this command again
    try:
        return args.handler(args)
    except MmoeError as error:
        if args.debug:
            traceback.print_exc()
        print(f"mmoe: error: {flag_message(str(error), command_flags(parser, args.command))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmoe: interrupted", file=sys.stderr)
        return 130


# -- library parameter names -> flags ----------------------------------------------------------------
def command_flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """{parameter name: flag} of one command: each option's dest and its first long flag
    (batch_size: --batch-size, learning_rate: --learning-rate, data_seed: --data-seed)."""
    commands = _subparsers(parser)
    flags: dict[str, str] = {}
    for action in commands.choices[command]._actions:
        long = [option for option in action.option_strings if option.startswith("--")]
        if long and action.dest not in ("help", "debug"):
            flags.setdefault(action.dest, long[0])
    return flags


_QUOTED_OR_PATH = r"[\w'\"/.-]"


def flag_message(message: str, flags: dict[str, str]) -> str:
    """A library error in the CLI's terms: the library names its parameters ("option
    batch_size", "training option epochs", "replicas=3", "streaming=True", a bare name such as
    num_experts); on the command line they are flags ("--batch-size", "--replicas 3",
    "--streaming"). Names inside quotes (a column 'num_experts') or paths are left alone, and so
    is a name that is not one of the command's options."""

    def option(match: re.Match[str]) -> str:
        return flags.get(match.group(1), match.group(0))

    def assignment(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if name not in flags:
            return match.group(0)
        return flags[name] if value == "True" else f"{flags[name]} {value}"

    def bare(match: re.Match[str]) -> str:
        return flags.get(match.group(1), match.group(1))

    message = re.sub(r"\b(?:training )?option ([a-z][a-z0-9_]*)", option, message)
    message = re.sub(rf"(?<!{_QUOTED_OR_PATH})([a-z][a-z0-9_]*)=([^\s,;)]+)", assignment, message)
    return re.sub(rf"(?<!{_QUOTED_OR_PATH})([a-z][a-z0-9]*_[a-z0-9_]+)(?![\w'\"/-])", bare, message)


if __name__ == "__main__":
    sys.exit(main())
