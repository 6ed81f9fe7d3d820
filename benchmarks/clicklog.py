"""The click-log benchmark (issue 12): mmoe, torch-rechub, DeepCTR-Torch and LightGBM on an impression
log with millions of ids, drawn from a known model (`mmoe.data.clicklog`) so that each task's
Bayes-optimal test AUC is known. Prints a table and the issue's targets as PASS/FAIL lines and
writes one JSON (default benchmarks/results/clicklog.json, atomically).

    pip install -c constraints.txt ".[bench]"            # the peers and LightGBM are an optional extra
    PYTHONPATH=src python benchmarks/clicklog.py --smoke  # < 1 minute, every contender, small sizes
    PYTHONPATH=src python benchmarks/clicklog.py          # the issue's sizes (see benchmarks/README.md)

Sections:
  compare  one log (default 2,500,000 rows, 1,300,000 user ids of which ≈ 1.08M in the training
           part, 100,000 item ids) trained by each
           contender for E epochs, each run in a fresh process (so its peak memory is its own),
           contenders alternating over repeats so that drift hits all alike:
             mmoe      MultiTaskEstimator (MMoE defaults; ids and context columns categorical;
                       embedding_dim / sparse_optimizer when the installed mmoe has them)
             rechub    torch-rechub 0.9.0 MMOE, embeddings of 16, its MTLTrainer (benchmarks/peers.py)
             deepctr   DeepCTR-Torch 0.3.0 MMOE, embeddings of 16, its fit (benchmarks/peers.py)
             lightgbm  one LightGBM model per task, categorical columns as pandas categories, its own
                       early stopping on the last 10% of the training rows
  vocab    mmoe alone on logs of the same rows and model whose user-id column has 10k and 11M
           distinct values (default 12,000,000 rows, 5% test: ≈ 10.4M user ids in training):
           rows/s against the vocabulary, and peak RSS. mmoe streams the log's Parquet file
           (--vocab-streaming; no DataFrame of it held) and trains its tables with
           --vocab-sparse-optimizer (default row-adagrad: one number of state per row).

Labels. purchase is labelled only where click = 1. mmoe reads the missing labels as missing (its
loss skips them), and LightGBM's purchase model trains on the clicked rows: both predict
P(purchase | click). The two peers cannot mask a label, so they learn the entire-space label
click·purchase (0 where not clicked) and their P(purchase | click) is their purchase head over
their click head (clipped to [0, 1]). Every contender is scored the same three ways on the test
rows: click AUC, purchase AUC on the clicked rows, and click·purchase AUC on every row.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402
from peers import PeerData, _setup_torch, _TrainWindow, _version  # noqa: E402

CONTENDERS = ("mmoe", "rechub", "deepctr", "lightgbm")
CONTENDER_MODULES = {"rechub": "torch_rechub", "deepctr": "deepctr_torch", "lightgbm": "lightgbm"}
EMBEDDING_DIM = 16
# mmoe options of issue 12 that the benchmark passes when the installed mmoe takes them.
MMOE_NEW_OPTIONS = ("embedding_dim", "sparse_optimizer")
VALIDATION_ROWS = 20_000  # mmoe's per-epoch validation rows (taken from its training rows)
# The vocab section trains the tables with row-wise AdaGrad, production's choice for 10M-row tables:
# lazy Adam's two moments per entry would add 10.5M x 16 x 8 bytes = 1.3 GB.
VOCAB_SPARSE_OPTIMIZER = "row-adagrad"
# 10k ids, and 11M ids (10.5M in training) hashed into 2^24 buckets. "11000000" alone keeps its
# vocabulary of 10.5M texts: loaded in memory (--no-vocab-streaming) it peaked at 5.8 GB, and
# streaming's vocabulary pass is slow at that size (its lookups rebuild per record batch).
VOCAB_RUNS = "10000,11000000:hash16777216"
LIGHTGBM_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.9,
    "verbose": -1,
}
LIGHTGBM_MAX_ROUNDS = 2000
LIGHTGBM_PATIENCE = 50
TARGETS = {"mmoe/rechub rows/s": 10.0, "min_train_user_ids": 1_000_000, "vocab rows/s ratio": 0.7,
           "vocab_large_ids": 10_000_000, "peak_rss_mb": 4096}  # fmt: skip


# -- what the installed mmoe supports ----------------------------------------------------------------
def mmoe_options() -> dict[str, bool]:
    """{option: does MultiTaskEstimator take it} for the options of issue 12 (a named parameter, or a
    hyperparameter of the mmoe model, which the estimator passes on)."""
    from mmoe.estimator import MultiTaskEstimator
    from mmoe.models import model_hyperparameters

    named = set(inspect.signature(MultiTaskEstimator.__init__).parameters) | set(model_hyperparameters("mmoe"))
    return {option: option in named for option in MMOE_NEW_OPTIONS}


def mmoe_configuration(embedding_dim: int, sparse_optimizer: str | None) -> dict[str, Any]:
    """The options the mmoe contender will be given, and a line that says which configuration runs."""
    supported = mmoe_options()
    given: dict[str, Any] = {}
    if supported["embedding_dim"]:
        given["embedding_dim"] = embedding_dim
    if supported["sparse_optimizer"] and sparse_optimizer is not None:
        given["sparse_optimizer"] = sparse_optimizer
    missing = [option for option, ok in supported.items() if not ok]
    if missing:
        note = f"the installed mmoe does not take {', '.join(missing)}: mmoe runs " + (
            "with embeddings of {embedding_dim} but dense optimiser updates"
            if "embedding_dim" in given
            else "with its one-hot input into every expert (the configuration before issue 12)"
        )
    else:
        note = f"mmoe runs with embeddings of {embedding_dim} and sparse_optimizer={sparse_optimizer or 'its default'}"
    return {"supported": supported, "options": given, "note": note.format(embedding_dim=embedding_dim)}


# -- the contenders (each in its own process) ---------------------------------------------------------
def _read_parts(data_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    import pandas as pd

    info = json.loads((data_dir / "info.json").read_text())
    return pd.read_parquet(data_dir / "train.parquet"), pd.read_parquet(data_dir / "test.parquet"), info


def run_mmoe(data_dir: Path, epochs: int, seed: int, threads: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """MultiTaskEstimator on the log, as a user would call it; the last epoch's weights (patience 0).
    Validation (each epoch, untimed) reads VALIDATION_ROWS of the training rows, never test rows."""
    import torch

    from mmoe import __version__
    from mmoe.estimator import MultiTaskEstimator

    # from_file: mmoe reads train.parquet itself (the vocab section), so no DataFrame of the
    # training rows is held while it trains; its validation rows are written beside it first.
    from_file = bool(options.pop("from_file", False))
    info = json.loads((data_dir / "info.json").read_text())
    columns = info["columns"]
    validation_path = data_dir / "validation.parquet"
    if from_file:
        import pyarrow.parquet as pq

        pq.write_table(pq.read_table(data_dir / "train.parquet").slice(0, VALIDATION_ROWS), validation_path)
    else:
        train, test, info = _read_parts(data_dir)
    window = _TrainWindow()
    window.start()
    # The id columns are named in embed: an id column, not an event id, even where nearly every
    # value is new (the vocab section's 10M users in 11.4M rows, 92% distinct).
    ids = {"embed": columns["ids"]} if "embedding_dim" in options else {}
    estimator = MultiTaskEstimator(
        "mmoe", "click:binary,purchase:binary", features=columns["ids"] + columns["context"] + columns["numeric"],
        categorical=columns["ids"] + columns["context"], numeric=columns["numeric"], epochs=epochs, batch_size=1024,
        learning_rate=1e-3, patience=0, seed=seed, threads=threads, test_fraction=None, **ids, **options,
    )  # fmt: skip
    cpu_before = time.process_time()
    if from_file:
        estimator.fit(data_dir / "train.parquet", validation=validation_path)
    else:
        estimator.fit(train, validation=train.iloc[: min(VALIDATION_ROWS, len(train))])
    cpu_seconds = time.process_time() - cpu_before
    memory = window.stop()
    if from_file:
        import pandas as pd

        test = pd.read_parquet(data_dir / "test.parquet")
    predicted = estimator.predict(test)
    epoch_seconds = [float(entry["seconds"]) for entry in estimator.history_]
    result = _timing("mmoe", __version__, int(info["rows"]["train"]), epoch_seconds, cpu_seconds, memory)
    result.update({"options": options, "input_columns": int(estimator.input_spec_.one_hot_dim),
                   "parameters": int(sum(p.numel() for p in estimator.model_.parameters())),
                   "threads": torch.get_num_threads()})  # fmt: skip
    probabilities = {"click": predicted["click"].to_numpy(), "purchase_given_click": predicted["purchase"].to_numpy()}
    return {**result, "_probabilities": probabilities}


def run_peer(
    name: str, data_dir: Path, epochs: int, seed: int, threads: int | None, embedding_dim: int
) -> dict[str, Any]:
    """torch-rechub or DeepCTR-Torch through benchmarks/peers.py's runner (their own trainers), with
    embeddings of `embedding_dim`. Their second head learns click·purchase (see the module docstring)."""
    # peers.py sizes every embedding by its module constant and keeps the probabilities to itself:
    # set the one, and catch the other on its way into peers._result (it is `probs`, the 6th argument).
    peers.EMBED_DIM = embedding_dim
    caught: dict[str, np.ndarray] = {}
    report = peers._result

    def keep_probabilities(*args: Any, **kwargs: Any) -> dict[str, Any]:
        caught["probabilities"] = np.asarray(args[5], dtype=np.float64)
        return report(*args, **kwargs)

    peers._result = keep_probabilities
    data = PeerData.load(data_dir / "peers.npz")
    result = peers.RUNNERS[name](data, epochs, batch_size=1024, lr=1e-3, seed=seed, threads=threads)
    click, joint = caught["probabilities"][:, 0], caught["probabilities"][:, 1]
    conditional = np.clip(joint / np.maximum(click, 1e-12), 0.0, 1.0)
    result.pop("test_auc", None)  # against the entire-space labels; the driver scores every contender alike
    result["rows_per_second"] = result["samples_per_second"]
    return {**result, "_probabilities": {"click": click, "purchase_given_click": conditional,
                                         "click_and_purchase": joint}}  # fmt: skip


def run_lightgbm(data_dir: Path, seed: int, threads: int | None) -> dict[str, Any]:
    """One LightGBM model per task: click on every training row, purchase on the clicked ones; each
    stops early on the last 10% of its rows. Time: both `lgb.train` calls (Dataset binning included)."""
    import lightgbm as lgb
    import pandas as pd

    train, test, info = _read_parts(data_dir)
    columns = info["columns"]
    categorical = columns["ids"] + columns["context"]
    features = categorical + columns["numeric"]
    for column in categorical:  # test reads the training categories; an unseen id is missing
        train[column] = train[column].astype("category")
        test[column] = pd.Categorical(test[column], categories=train[column].cat.categories)
    params = {**LIGHTGBM_PARAMS, "seed": seed, "num_threads": threads or 0}
    window = _TrainWindow()
    window.start()
    seconds, cpu, rounds, probabilities = 0.0, 0.0, {}, {}
    for task, rows in (("click", train.index), ("purchase", train.index[train["click"].to_numpy() == 1])):
        cut = int(len(rows) * 0.9)
        fit_rows, stop_rows = rows[:cut], rows[cut:]
        started, cpu_before = time.perf_counter(), time.process_time()
        booster = lgb.train(
            params,
            lgb.Dataset(train.loc[fit_rows, features], train.loc[fit_rows, task], categorical_feature=categorical),
            num_boost_round=LIGHTGBM_MAX_ROUNDS,
            valid_sets=[lgb.Dataset(train.loc[stop_rows, features], train.loc[stop_rows, task],
                                    categorical_feature=categorical)],
            callbacks=[lgb.early_stopping(LIGHTGBM_PATIENCE, verbose=False)],
        )  # fmt: skip
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_before
        rounds[task] = booster.best_iteration
        key = "click" if task == "click" else "purchase_given_click"
        probabilities[key] = booster.predict(test[features], num_iteration=booster.best_iteration)
    memory = window.stop()
    result = _timing("lightgbm", _version("lightgbm"), len(train), [seconds], cpu, memory)
    result.update({"params": params, "best_rounds": rounds, "max_rounds": LIGHTGBM_MAX_ROUNDS,
                   "early_stopping_patience": LIGHTGBM_PATIENCE,
                   "note": "rows/s = training rows / seconds of both tasks' lgb.train (not epochs)"})  # fmt: skip
    return {**result, "_probabilities": probabilities}


def _timing(
    name: str, version: str, rows: int, epoch_seconds: list[float], cpu_seconds: float, memory: dict[str, Any]
) -> dict[str, Any]:
    seconds = float(sum(epoch_seconds))
    return {"contender": name, "version": version, "epochs": len(epoch_seconds), "train_seconds": seconds,
            "rows_per_second": len(epoch_seconds) * rows / seconds if seconds > 0 else None,
            "epoch_seconds": epoch_seconds, "train_cpu_seconds": cpu_seconds, "n_train": rows, **memory}  # fmt: skip


def contender_main(args: argparse.Namespace) -> int:
    """One contender in this process: JSON result to --json, test probabilities to --predictions (.npz)."""
    if args.contender == "mmoe":
        result = run_mmoe(args.data, args.epochs, args.seed, args.threads, json.loads(args.mmoe_options))
    elif args.contender == "lightgbm":
        result = run_lightgbm(args.data, args.seed, args.threads)
    else:
        _setup_torch(args.seed, args.threads)
        result = run_peer(args.contender, args.data, args.epochs, args.seed, args.threads, args.embedding_dim)
    probabilities = result.pop("_probabilities")
    np.savez(args.predictions, **{key: np.asarray(value, dtype=np.float64) for key, value in probabilities.items()})
    args.json.write_text(json.dumps(result, indent=2, default=float))
    return 0


# -- the driver ------------------------------------------------------------------------------------------
def write_log(config: Any, directory: Path, for_peers: bool = True) -> dict[str, Any]:
    """The log as every contender reads it: DIR/train.parquet, test.parquet, info.json (mmoe and
    LightGBM; `mmoe.data.clicklog.save_clicklog`) and, with for_peers, peers.npz (`peers.PeerData`:
    per-column codes, 0 = unseen in training; numbers standardised on the training rows; labels
    click and click·purchase). Returns the info, with the test labels kept aside under "_labels"."""
    from mmoe.data.clicklog import generate_clicklog, save_clicklog

    train, test, info = generate_clicklog(config)
    directory.mkdir(parents=True, exist_ok=True)
    info = save_clicklog(train, test, info, directory)
    info["_labels"] = {"click": test["click"].to_numpy(np.int8), "purchase": test["purchase"].to_numpy(np.float32)}
    if not for_peers:
        return info
    columns = info["columns"]
    sparse_names = columns["ids"] + columns["context"]
    codes_train, codes_test, vocab = [], [], []
    for column in sparse_names:
        if column in columns["context"]:  # pandas categoricals: their codes are the encoding already
            codes_train.append(train[column].cat.codes.to_numpy(np.int64) + 1)
            codes_test.append(test[column].cat.codes.to_numpy(np.int64) + 1)
            vocab.append(len(train[column].cat.categories) + 1)
            continue
        values, train_codes = np.unique(np.asarray(train[column]), return_inverse=True)
        test_values = np.asarray(test[column])
        position = np.minimum(np.searchsorted(values, test_values), len(values) - 1)
        codes_train.append(train_codes + 1)
        codes_test.append(np.where(values[position] == test_values, position + 1, 0))
        vocab.append(len(values) + 1)
    dense_train = train[columns["numeric"]].to_numpy(np.float64)
    dense_test = test[columns["numeric"]].to_numpy(np.float64)
    mean, std = dense_train.mean(axis=0), dense_train.std(axis=0) + 1e-12

    def labels(frame: Any) -> np.ndarray:
        click = frame["click"].to_numpy(np.float32)
        return np.stack([click, click * np.nan_to_num(frame["purchase"].to_numpy(np.float32))], axis=1)

    PeerData(
        dense_train=(dense_train - mean) / std, dense_test=(dense_test - mean) / std,
        sparse_train=np.stack(codes_train, axis=1), sparse_test=np.stack(codes_test, axis=1), vocab_sizes=vocab,
        dense_names=columns["numeric"], sparse_names=sparse_names, labels_train=labels(train),
        labels_test=labels(test), task_names=["click", "click_and_purchase"],
    ).save(directory / "peers.npz")  # fmt: skip
    return info


def score(labels: dict[str, np.ndarray], probabilities: dict[str, np.ndarray]) -> dict[str, float]:
    """The three test AUCs of one contender (module docstring)."""
    from mmoe.data.clicklog import auc

    click, purchase = labels["click"] == 1, labels["purchase"] == 1
    joint = probabilities.get("click_and_purchase", probabilities["click"] * probabilities["purchase_given_click"])
    return {"click": auc(click, probabilities["click"]),
            "purchase": auc(purchase[click], probabilities["purchase_given_click"][click]),
            "click_and_purchase": auc(click & purchase, joint)}  # fmt: skip


def run_contender(name: str, data_dir: Path, args: argparse.Namespace, seed: int, mmoe: dict[str, Any],
                  labels: dict[str, np.ndarray]) -> dict[str, Any]:  # fmt: skip
    """One contender in a fresh process; its result with its test AUCs (or the error it died with)."""
    with tempfile.TemporaryDirectory() as scratch:
        out, predictions = Path(scratch) / "result.json", Path(scratch) / "predictions.npz"
        command = [sys.executable, str(Path(__file__).resolve()), "--contender", name, "--data", str(data_dir),
                   "--epochs", str(args.epochs), "--seed", str(seed), "--json", str(out), "--predictions",
                   str(predictions), "--embedding-dim", str(args.embedding_dim),
                   "--mmoe-options", json.dumps(mmoe["options"])]  # fmt: skip
        if args.threads:
            command += ["--threads", str(args.threads)]
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0 or not out.exists():
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
            return {"contender": name, "error": " | ".join(tail)}
        result = json.loads(out.read_text())
        with np.load(predictions) as saved:
            result["test_auc"] = score(labels, {key: saved[key] for key in saved.files})
        result["wall_seconds"] = time.perf_counter() - started
        return {**result, "contender": name}


def _installed(name: str) -> bool:
    return name == "mmoe" or importlib.util.find_spec(CONTENDER_MODULES[name]) is not None


def _fallback_gigabytes(info: dict[str, Any]) -> float:
    """Memory of mmoe's one-hot first layer (weights, gradient, Adam's two moments; float32) for
    this log: every distinct training value of the categorical columns is a row of width
    experts·units + tasks·experts (MMoE defaults: 8·16 + 2·8)."""
    rows = sum(info["distinct"]["train"].values()) + sum(len(v) for v in _context_values().values())
    return rows * (8 * 16 + 2 * 8) * 4 * 4 / 2**30


def _context_values() -> dict[str, tuple[str, ...]]:
    from mmoe.data.clicklog import CONTEXT_VALUES

    return CONTEXT_VALUES


def _summary(runs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in names:
        ok = [r for r in runs if r["contender"] == name and "error" not in r]
        if not ok:
            failed = [r for r in runs if r["contender"] == name]
            summary[name] = {"error": failed[0].get("error") or failed[0].get("skipped")} if failed else {}
            continue
        summary[name] = {
            "version": ok[0]["version"],
            "rows_per_second_median": float(np.median([r["rows_per_second"] for r in ok])),
            "rows_per_second_runs": [r["rows_per_second"] for r in ok],
            "test_auc_mean": {task: float(np.mean([r["test_auc"][task] for r in ok])) for task in ok[0]["test_auc"]},
            "peak_rss_mb_max": float(max(r["peak_rss_mb"] for r in ok)),
            "train_seconds_median": float(np.median([r["train_seconds"] for r in ok])),
        }
    return summary


def section_compare(args: argparse.Namespace, mmoe: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from mmoe.data.clicklog import ClickLogConfig

    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()]
    names = [c for c in wanted if _installed(c)]
    missing = [c for c in wanted if c not in names]
    if missing:
        print(f"not installed: {', '.join(missing)} (pip install -c constraints.txt '.[bench]')", file=sys.stderr)
    config = ClickLogConfig(rows=args.rows, users=args.users, items=args.items, seed=args.seed)
    print(f"compare: writing the log ({config.rows:,} rows, {config.users:,} users, {config.items:,} items) ...",
          file=sys.stderr, flush=True)  # fmt: skip
    info = write_log(config, workdir / "compare")
    labels = info.pop("_labels")
    runs: list[dict[str, Any]] = []
    skip = None
    if "mmoe" in names and "embedding_dim" not in mmoe["options"]:
        needed = _fallback_gigabytes(info)
        if needed > args.max_fallback_gb:
            skip = (f"skipped: mmoe's one-hot first layer would take about {needed:.1f} GB (weights, gradient, "
                    f"Adam state) for {info['distinct']['train']['user_id']:,} user ids; limit --max-fallback-gb "
                    f"{args.max_fallback_gb}")  # fmt: skip
            print(f"  {skip}", file=sys.stderr)
    for repeat in range(args.repeats):
        shift = repeat % max(1, len(names))
        for name in names[shift:] + names[:shift]:
            if name == "mmoe" and skip:
                runs.append({"contender": "mmoe", "error": skip, "repeat": repeat})
                continue
            print(f"  compare: repeat {repeat + 1}/{args.repeats}, {name} ...", file=sys.stderr, flush=True)
            result = run_contender(name, workdir / "compare", args, args.seed + repeat, mmoe, labels)
            result["repeat"] = repeat
            runs.append(result)
    return {"log": info, "epochs": args.epochs, "repeats": args.repeats, "embedding_dim": args.embedding_dim,
            "not_installed": missing, "runs": runs, "summary": _summary(runs, names)}  # fmt: skip


def section_vocab(args: argparse.Namespace, mmoe: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from mmoe.data.clicklog import ClickLogConfig

    results = []
    for users, buckets in args.vocab_users:
        config = ClickLogConfig(
            rows=args.vocab_rows, users=users, items=args.items, test_fraction=args.vocab_test_fraction, seed=args.seed
        )
        print(f"vocab: {users:,} user ids, {config.rows:,} rows ...", file=sys.stderr, flush=True)
        directory = workdir / f"vocab-{users}"
        info = write_log(config, directory, for_peers=False)
        labels = info.pop("_labels")
        if "embedding_dim" not in mmoe["options"] and _fallback_gigabytes(info) > args.max_fallback_gb:
            result: dict[str, Any] = {"contender": "mmoe", "error": f"skipped: mmoe's one-hot first layer would "
                                      f"take about {_fallback_gigabytes(info):.1f} GB; limit --max-fallback-gb "
                                      f"{args.max_fallback_gb}"}  # fmt: skip
        else:
            options = {**mmoe["options"], "from_file": True}
            if args.vocab_sparse_optimizer and mmoe["supported"].get("sparse_optimizer"):
                options["sparse_optimizer"] = args.vocab_sparse_optimizer
            if buckets:
                options["hash_buckets"] = {"user_id": buckets}
            if args.vocab_streaming:
                options["streaming"] = True
            result = run_contender("mmoe", directory, args, args.seed, {**mmoe, "options": options}, labels)
        distinct = info["distinct"]["train"]["user_id"]
        result.update({"users": users, "user_hash_buckets": buckets, "train_user_ids": distinct,
                       "bayes_auc": info["bayes_auc"]})  # fmt: skip
        results.append(result)
        for path in directory.iterdir():  # the largest logs are big: keep only the one being read
            path.unlink()
    return {"rows": args.vocab_rows, "epochs": args.epochs, "results": results}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each {"target", "status": PASS | FAIL | N/A, "detail"}."""
    lines: list[dict[str, Any]] = []
    compare = report.get("compare")
    if compare:
        summary = compare["summary"]
        ok = {name: row for name, row in summary.items() if "error" not in row and row}
        train_users = compare["log"]["distinct"]["train"]["user_id"]
        if "mmoe" in ok and "rechub" in ok:
            ratio = ok["mmoe"]["rows_per_second_median"] / ok["rechub"]["rows_per_second_median"]
            status = "PASS" if ratio >= TARGETS["mmoe/rechub rows/s"] else "FAIL"
            if train_users < TARGETS["min_train_user_ids"]:
                status = f"{status} (at {train_users:,} user ids, not the target's >= 1M)"
            lines.append({"target": "mmoe rows/s >= 10x torch-rechub's (>= 1M user ids in training)",
                          "status": status, "detail": f"{ratio:.1f}x"})  # fmt: skip
        else:
            lines.append({"target": "mmoe rows/s >= 10x torch-rechub's", "status": "N/A",
                          "detail": "mmoe or rechub did not run"})  # fmt: skip
        peers_auc = {name: ok[name]["test_auc_mean"]["click"] for name in ("rechub", "lightgbm") if name in ok}
        if "mmoe" in ok and peers_auc:
            mine, best = ok["mmoe"]["test_auc_mean"]["click"], max(peers_auc.values())
            lines.append(
                {
                    "target": "mmoe click AUC >= max(rechub, lightgbm) after the same epochs",
                    "status": "PASS" if mine >= best else "FAIL",
                    "detail": f"{mine:.4f} vs " + ", ".join(f"{n} {v:.4f}" for n, v in peers_auc.items()),
                }
            )
        else:
            lines.append({"target": "mmoe click AUC >= max(rechub, lightgbm)", "status": "N/A",
                          "detail": "mmoe or both peers did not run"})  # fmt: skip
    vocab = report.get("vocab")
    if vocab:
        ok_runs = [r for r in vocab["results"] if "error" not in r]
        if len(ok_runs) >= 2:
            small = min(ok_runs, key=lambda r: r["users"])
            largest = max(r["users"] for r in ok_runs)
            for large in [r for r in ok_runs if r["users"] == largest]:
                # Each large run against the small one: with its vocabulary, or hashed.
                how = (
                    f"user_id hashed into {large['user_hash_buckets']:,} buckets"
                    if large.get("user_hash_buckets")
                    else "user_id's vocabulary"
                )
                ratio = large["rows_per_second"] / small["rows_per_second"]
                status = "PASS" if ratio >= TARGETS["vocab rows/s ratio"] else "FAIL"
                if large["train_user_ids"] < TARGETS["vocab_large_ids"]:
                    status = f"{status} (at {large['train_user_ids']:,} ids in training, not 10M)"
                lines.append({"target": f"mmoe rows/s with 10M ids >= 0.7x with 10k ids ({how})", "status": status,
                              "detail": f"{ratio:.2f}x ({large['users']:,} vs {small['users']:,} ids)"})  # fmt: skip
                rss = large["peak_rss_mb"]
                status = "PASS" if rss <= TARGETS["peak_rss_mb"] else "FAIL"
                if large["train_user_ids"] < TARGETS["vocab_large_ids"]:
                    status = f"{status} (at {large['train_user_ids']:,} ids in training, not 10M)"
                if "embedding_dim" not in report["mmoe_configuration"]["options"]:
                    status = f"{status} (one-hot ids: the installed mmoe has no embedding_dim)"
                lines.append({"target": f"peak RSS <= 4 GB training a 10M-id column with embeddings of 16 ({how})",
                              "status": status, "detail": f"{rss:,.0f} MB"})  # fmt: skip
        else:
            errors = "; ".join(r.get("error", "") for r in vocab["results"] if "error" in r)
            for target in ("mmoe rows/s with 10M ids >= 0.7x with 10k ids", "peak RSS <= 4 GB with a 10M-id column"):
                lines.append({"target": target, "status": "N/A", "detail": errors or "fewer than two runs"})
    return lines


def print_report(report: dict[str, Any]) -> None:
    print(f"\nmmoe configuration: {report['mmoe_configuration']['note']}")
    compare = report.get("compare")
    if compare:
        log = compare["log"]
        bayes = log["bayes_auc"]
        print(f"\nclick log: {log['rows']['train']:,} train / {log['rows']['test']:,} test rows, "
              f"{log['distinct']['train']['user_id']:,} user ids and {log['distinct']['train']['item_id']:,} item "
              f"ids in training; {compare['epochs']} epoch(s), {compare['repeats']} run(s) each")  # fmt: skip
        print(f"{'contender':<10} {'version':<8} {'rows/s':>10} {'click AUC':>10} {'purchase AUC':>13} "
              f"{'click·purch.':>13} {'peak RSS':>10}")  # fmt: skip
        print(f"{'Bayes':<10} {'':<8} {'':>10} {bayes['click']:>10.4f} {bayes['purchase']:>13.4f} "
              f"{bayes['click_and_purchase']:>13.4f}")  # fmt: skip
        for name, row in compare["summary"].items():
            if not row or "error" in row:
                print(f"{name:<10} failed: {row.get('error') if row else 'no run'}")
                continue
            auc = row["test_auc_mean"]
            print(
                f"{name:<10} {row['version']:<8} {row['rows_per_second_median']:>10,.0f} {auc['click']:>10.4f} "
                f"{auc['purchase']:>13.4f} {auc['click_and_purchase']:>13.4f} {row['peak_rss_mb_max']:>8,.0f}MB"
            )
        print("  purchase AUC: on the clicked test rows; click·purch.: the entire-space task on every test row")
    vocab = report.get("vocab")
    if vocab:
        print(f"\nmmoe against the vocabulary ({vocab['rows']:,} rows, {vocab['epochs']} epoch(s))")
        for row in vocab["results"]:
            if "error" in row:
                print(f"  {row['users']:>12,} user ids: failed: {row['error']}")
            else:
                hashed = f", hashed into {row['user_hash_buckets']:,} buckets" if row.get("user_hash_buckets") else ""
                print(f"  {row['users']:>12,} user ids ({row['train_user_ids']:,} in training{hashed}): "
                      f"{row['rows_per_second']:,.0f} rows/s, peak RSS {row['peak_rss_mb']:,.0f} MB, click AUC "
                      f"{row['test_auc']['click']:.4f} (Bayes {row['bayes_auc']['click']:.4f})")  # fmt: skip
    print("\ntargets:")
    for line in report["targets"]:
        print(f"  {line['status']:<5} {line['target']}: {line['detail']}")


def _vocab_runs(text: str) -> list[tuple[int, int]]:
    """(user ids, hash buckets) per run of "10000,11000000:hash16777216": (10000, 0), (11000000, 16777216)."""
    runs = []
    for item in text.split(","):
        users, _, hashed = item.partition(":hash")
        runs.append((int(users), int(hashed) if hashed else 0))
    return runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    parser.add_argument("--sections", default="compare,vocab", help="comma-separated: compare, vocab")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes, about a minute: 40k rows, 8k users, 1k items; vocab 1k and 20k user "
                        "ids on 40k rows (overrides the size options)")  # fmt: skip
    parser.add_argument("--rows", type=int, default=2_500_000, help="compare: rows of the log (train + test)")
    parser.add_argument("--users", type=int, default=1_300_000, help="compare: distinct user ids")
    parser.add_argument("--items", type=int, default=100_000, help="distinct item ids")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="compare: comma-separated contenders")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of every neural contender")
    parser.add_argument("--repeats", type=int, default=1, help="compare: runs per contender (seed + repeat)")
    parser.add_argument("--vocab-rows", type=int, default=12_000_000, help="vocab: rows of each log")
    parser.add_argument("--vocab-test-fraction", type=float, default=0.05, help="vocab: share of rows in test")
    parser.add_argument("--vocab-users", type=_vocab_runs, default=_vocab_runs(VOCAB_RUNS),
                        help="vocab: user-id counts compared; USERS:hashN hashes user_id into N buckets "
                        "(no vocabulary of 10M texts held: the 4 GB configuration)")  # fmt: skip
    parser.add_argument("--vocab-sparse-optimizer", default=VOCAB_SPARSE_OPTIMIZER,
                        help="vocab: mmoe's sparse_optimizer (row-adagrad keeps 1 number of state per row, "
                        "lazy Adam 2 per embedding entry: 1.3 GB more at 10M ids of 16)")  # fmt: skip
    parser.add_argument("--vocab-streaming", action=argparse.BooleanOptionalAction, default=True,
                        help="vocab: mmoe streams the Parquet file (streaming=True) instead of loading it")  # fmt: skip
    parser.add_argument("--embedding-dim", type=int, default=EMBEDDING_DIM, help="embedding size, every contender")
    parser.add_argument("--sparse-optimizer", default=None,
                        help="mmoe's sparse_optimizer (when it takes one; default: its own default)")  # fmt: skip
    parser.add_argument(
        "--max-fallback-gb",
        type=float,
        default=6.0,
        help="skip mmoe when its one-hot first layer (no embedding_dim option) would need more",
    )
    parser.add_argument("--threads", type=int, default=None, help="threads per contender (default: library's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the logs go (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "clicklog.json", help="JSON output")
    # Internal: one contender in this process (the driver spawns these).
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--predictions", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mmoe-options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.users, args.items = 40_000, 8_000, 1_000
        args.vocab_rows, args.vocab_users = 40_000, [(1_000, 0), (20_000, 0), (20_000, 32_768)]
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    unknown = [s for s in args.sections.split(",") if s.strip() not in ("compare", "vocab")]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; expected compare, vocab")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.contender:
        return contender_main(args)

    import torch

    from mmoe import __version__
    from mmoe.io import atomic_write_json

    mmoe = mmoe_configuration(args.embedding_dim, args.sparse_optimizer)
    print(mmoe["note"], file=sys.stderr)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": args.threads, "mmoe": __version__},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv), "smoke": args.smoke,
        "mmoe_configuration": mmoe, "targets_wanted": TARGETS,
    }  # fmt: skip
    sections = {"compare": section_compare, "vocab": section_vocab}
    with tempfile.TemporaryDirectory(prefix="clicklog_bench_") as scratch:
        workdir = args.workdir or Path(scratch)
        for name in [s.strip() for s in args.sections.split(",") if s.strip()]:
            started = time.perf_counter()
            report[name] = sections[name](args, mmoe, workdir)
            report[name]["seconds"] = time.perf_counter() - started
            report["targets"] = targets(report)
            atomic_write_json(args.out, report)  # keep what is done if a later section fails
    print_report(report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
