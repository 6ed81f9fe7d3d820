"""Speed-benchmark adapters for two peer multi-task libraries: torch-rechub and DeepCTR-Torch.

Each adapter trains the same MMoE shape (8 experts x 16 units, one layer; one tower of 8 units
per task; embeddings of `EMBED_DIM` for every categorical column; Adam, lr 1e-3, batch 1024)
through the library's *own* documented training API, so the numbers say what a user of that
library gets, not what its model would do inside our loop:

* torch-rechub: `SparseFeature`/`DenseFeature` -> `MMOE` -> `DataGenerator.generate_dataloader`
  -> `MTLTrainer.fit`, as in its examples/ranking/run_census.py (which uses this very MMoE shape
  and embed_dim=4).
* DeepCTR-Torch: `SparseFeat`/`DenseFeat` -> `deepctr_torch.models.MMOE` -> `.compile` -> `.fit`
  with a dict of numpy columns, as in its examples/run_multitask_learning.py.

What is timed: whole training epochs only. Data preparation, model construction, per-epoch
validation inside the library's fit, checkpoint saving and the final test-set prediction are all
outside the clock (hooks: DeepCTR's epoch callbacks; a timing wrapper around rechub's
`MTLTrainer.train_one_epoch`, which its `fit` calls once per epoch).

Memory: run each contender in a fresh process (`python benchmarks/peers.py --peer ...`), so the
peak resident set belongs to that contender alone. The peak is read from /proc/self/status
(VmHWM) rather than `resource.getrusage(...).ru_maxrss`, because a child started by fork/vfork+exec
inherits its parent's ru_maxrss on Linux: a driver holding the census data in memory would
otherwise leak its own peak into every child's number. Where /proc is missing the adapter falls
back to ru_maxrss.

The peers are imported lazily, so `PeerData` and the CLI load without them. They live in their
own virtual environment (see benchmarks/README.md); this file imports nothing from `mmoe`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

# The MMoE shape of the census experiments, shared by both peers.
N_EXPERTS = 8
EXPERT_UNITS = 16
TOWER_UNITS = 8
# rechub's census example and DeepCTR's SparseFeat default both use 4.
EMBED_DIM = 4
# Library defaults, kept so each peer runs with its stock light regularisation.
RECHUB_WEIGHT_DECAY = 1e-5  # MTLTrainer's default optimizer_params
# rechub's fit needs a validation loader and evaluates it after every (untimed) epoch;
# a slice of the test set keeps that overhead small without touching training.
RECHUB_VAL_ROWS = 20_000

PEERS = ("rechub", "deepctr")


@dataclass
class PeerData:
    """One train/test split in the form both peers take.

    Arrays are row-aligned; `dense_*` is already standardised and `sparse_*` is label-encoded per
    column to 0..vocab_sizes[j]-1.
    """

    dense_train: np.ndarray  # [N_train, n_dense] float32
    dense_test: np.ndarray  # [N_test, n_dense] float32
    sparse_train: np.ndarray  # [N_train, n_sparse] int64
    sparse_test: np.ndarray  # [N_test, n_sparse] int64
    vocab_sizes: list[int]
    dense_names: list[str]
    sparse_names: list[str]
    labels_train: np.ndarray  # [N_train, n_tasks] float32, 0/1
    labels_test: np.ndarray  # [N_test, n_tasks] float32, 0/1
    task_names: list[str] = field(default_factory=lambda: ["income", "marital"])

    def __post_init__(self) -> None:
        self.dense_train = np.ascontiguousarray(self.dense_train, dtype=np.float32)
        self.dense_test = np.ascontiguousarray(self.dense_test, dtype=np.float32)
        self.sparse_train = np.ascontiguousarray(self.sparse_train, dtype=np.int64)
        self.sparse_test = np.ascontiguousarray(self.sparse_test, dtype=np.int64)
        self.labels_train = np.ascontiguousarray(self.labels_train, dtype=np.float32)
        self.labels_test = np.ascontiguousarray(self.labels_test, dtype=np.float32)
        self.vocab_sizes = [int(v) for v in self.vocab_sizes]
        self.dense_names = [str(n) for n in self.dense_names]
        self.sparse_names = [str(n) for n in self.sparse_names]
        self.task_names = [str(n) for n in self.task_names]
        self.validate()

    @property
    def n_train(self) -> int:
        return int(self.labels_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.labels_test.shape[0])

    def validate(self) -> None:
        """Fail early on shape or encoding mistakes, which the peers report only obscurely."""
        n_dense, n_sparse, n_tasks = len(self.dense_names), len(self.sparse_names), len(self.task_names)
        for name, arr, cols in (
            ("dense_train", self.dense_train, n_dense),
            ("dense_test", self.dense_test, n_dense),
            ("sparse_train", self.sparse_train, n_sparse),
            ("sparse_test", self.sparse_test, n_sparse),
            ("labels_train", self.labels_train, n_tasks),
            ("labels_test", self.labels_test, n_tasks),
        ):
            if arr.ndim != 2 or arr.shape[1] != cols:
                raise ValueError(f"{name} has shape {arr.shape}, expected [N, {cols}]")
        if not (len(self.dense_train) == len(self.sparse_train) == len(self.labels_train)):
            raise ValueError("train arrays differ in row count")
        if not (len(self.dense_test) == len(self.sparse_test) == len(self.labels_test)):
            raise ValueError("test arrays differ in row count")
        if len(self.vocab_sizes) != n_sparse:
            raise ValueError(f"{len(self.vocab_sizes)} vocab sizes for {n_sparse} sparse columns")
        if n_tasks < 2:
            raise ValueError("MMoE needs at least two tasks")
        # Names key the peers' input dicts; a clash would silently drop a column.
        all_names = self.dense_names + self.sparse_names
        if len(set(all_names)) != len(all_names):
            raise ValueError("dense and sparse column names must be unique")
        vocab = np.asarray(self.vocab_sizes)
        for split, arr in (("train", self.sparse_train), ("test", self.sparse_test)):
            if len(arr) and (arr.min(axis=0).min() < 0 or (arr.max(axis=0) >= vocab).any()):
                raise ValueError(f"sparse_{split} has codes outside 0..vocab_size-1")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an .npz that `load` reads back (names as unicode arrays, so no pickle)."""
        np.savez(
            path,
            dense_train=self.dense_train,
            dense_test=self.dense_test,
            sparse_train=self.sparse_train,
            sparse_test=self.sparse_test,
            labels_train=self.labels_train,
            labels_test=self.labels_test,
            vocab_sizes=np.asarray(self.vocab_sizes, dtype=np.int64),
            dense_names=np.asarray(self.dense_names, dtype=np.str_),
            sparse_names=np.asarray(self.sparse_names, dtype=np.str_),
            task_names=np.asarray(self.task_names, dtype=np.str_),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PeerData:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                dense_train=z["dense_train"],
                dense_test=z["dense_test"],
                sparse_train=z["sparse_train"],
                sparse_test=z["sparse_test"],
                vocab_sizes=z["vocab_sizes"].tolist(),
                dense_names=z["dense_names"].tolist(),
                sparse_names=z["sparse_names"].tolist(),
                labels_train=z["labels_train"],
                labels_test=z["labels_test"],
                task_names=z["task_names"].tolist(),
            )

    def feature_dict(self, split: str) -> dict[str, np.ndarray]:
        """Column name -> 1-D array, the input form both peers document."""
        dense, sparse = (self.dense_train, self.sparse_train) if split == "train" else (self.dense_test, self.sparse_test)
        cols: dict[str, np.ndarray] = {n: sparse[:, j] for j, n in enumerate(self.sparse_names)}
        cols.update({n: dense[:, j] for j, n in enumerate(self.dense_names)})
        return cols


def synthetic_peer_data(
    n_rows: int = 200_000,
    n_dense: int = 7,
    n_sparse: int = 33,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> PeerData:
    """Census-shaped random data (vocab sizes 2..50) whose two labels depend on the features.

    For smoke tests and speed runs without the real census files; the signal is there only so
    that an AUC clearly above 0.5 shows the adapter wired labels and predictions correctly.
    """
    rng = np.random.default_rng(seed)
    vocab = rng.integers(2, 51, size=n_sparse)
    dense = rng.standard_normal((n_rows, n_dense)).astype(np.float32)
    sparse = (rng.random((n_rows, n_sparse)) * vocab).astype(np.int64)
    logits = []
    for _ in range(2):
        w_dense = rng.normal(0.0, 0.5, n_dense)
        effects = [rng.normal(0.0, 0.5, v) for v in vocab]
        z = dense @ w_dense + sum(effects[j][sparse[:, j]] for j in range(n_sparse)) / np.sqrt(n_sparse)
        logits.append(z)
    probs = 1.0 / (1.0 + np.exp(-np.stack(logits, axis=1)))
    labels = (rng.random(probs.shape) < probs).astype(np.float32)
    n_test = int(round(n_rows * test_fraction))
    cut = n_rows - n_test
    return PeerData(
        dense_train=dense[:cut],
        dense_test=dense[cut:],
        sparse_train=sparse[:cut],
        sparse_test=sparse[cut:],
        vocab_sizes=vocab.tolist(),
        dense_names=[f"d{j}" for j in range(n_dense)],
        sparse_names=[f"c{j}" for j in range(n_sparse)],
        labels_train=labels[:cut],
        labels_test=labels[cut:],
        task_names=["income", "marital"],
    )


# ---------------------------------------------------------------------------------------------
# Process-level helpers: seeding, threads, memory.


def _setup_torch(seed: int, threads: int | None) -> Any:
    """Seed every RNG the peers draw from (shuffling uses torch's global one) and fix threads."""
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _ru_maxrss_mb() -> float:
    # ru_maxrss is KiB on Linux but bytes on macOS.
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _loadavg_1min() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


class _TrainWindow:
    """What happens to this process between the start and the end of training.

    Peak resident set size, overall and within the window: the window's peak resets the
    kernel's high-water mark via /proc/self/clear_refs (Linux >= 4.0); where that is not allowed
    only the overall peak is reported. The 1-minute load average before and after lets a driver
    flag runs that shared the CPU with other work: with torch's OpenMP threads, a busy neighbour
    costs far more than its share of the cores.
    """

    def __init__(self) -> None:
        self._before_mb: float | None = None
        self._pre_peak_kb: int | None = None
        self._reset_ok = False
        self._load0: float | None = None

    def start(self) -> None:
        rss = _proc_status_kb("VmRSS")
        self._before_mb = None if rss is None else rss / 1024.0
        self._pre_peak_kb = _proc_status_kb("VmHWM")
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
            self._reset_ok = True
        except OSError:
            self._reset_ok = False
        self._load0 = _loadavg_1min()

    def stop(self) -> dict[str, float | None]:
        hwm = _proc_status_kb("VmHWM")
        if hwm is None or self._pre_peak_kb is None:
            peak, train_peak = _ru_maxrss_mb(), None
        else:
            peak = max(hwm, self._pre_peak_kb) / 1024.0
            train_peak = hwm / 1024.0 if self._reset_ok else None
        return {
            "peak_rss_mb": peak,
            "train_peak_rss_mb": train_peak,
            "rss_before_train_mb": self._before_mb,
            "loadavg_before": self._load0,
            "loadavg_after": _loadavg_1min(),
        }


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _result(
    peer: str,
    dist: str,
    data: PeerData,
    epoch_seconds: list[float],
    epoch_cpu_seconds: list[float],
    probs: np.ndarray,
    mem: dict[str, float | None],
    **extra: Any,
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    import torch

    train_seconds = float(sum(epoch_seconds))
    epochs = len(epoch_seconds)
    aucs: dict[str, float | None] = {}
    for k, task in enumerate(data.task_names):
        y = data.labels_test[:, k]
        # A one-class test column has no AUC; report None rather than crash a long sweep.
        aucs[task] = float(roc_auc_score(y, probs[:, k])) if len(np.unique(y)) == 2 else None
    return {
        "peer": peer,
        "version": _version(dist),
        "epochs": epochs,
        "train_seconds": train_seconds,
        "samples_per_second": epochs * data.n_train / train_seconds if train_seconds > 0 else float("nan"),
        "test_auc": aucs,
        **mem,
        "epoch_seconds": [float(s) for s in epoch_seconds],
        # CPU time of all threads in the timed epochs; far above threads x train_seconds means
        # spinning OpenMP workers, far below means the process waited for a busy CPU.
        "train_cpu_seconds": float(sum(epoch_cpu_seconds)),
        "n_train": data.n_train,
        "n_test": data.n_test,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "embed_dim": EMBED_DIM,
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# torch-rechub


def run_torch_rechub(
    data: PeerData,
    epochs: int,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = None,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Train torch-rechub's MMOE with its MTLTrainer and report speed, test AUC and peak RSS.

    `threads`: torch intra-op threads (None keeps torch's default). `num_workers`: DataLoader
    workers passed to `DataGenerator.generate_dataloader`; its default 0 is what the docs use.
    Worker processes would also escape the peak-RSS measurement, which covers this process only.
    """
    torch = _setup_torch(seed, threads)
    from torch.utils.data import DataLoader

    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator, PredictDataset

    features = [SparseFeature(n, v, embed_dim=EMBED_DIM) for n, v in zip(data.sparse_names, data.vocab_sizes)]
    features += [DenseFeature(n) for n in data.dense_names]
    x_train, x_test = data.feature_dict("train"), data.feature_dict("test")
    n_val = min(RECHUB_VAL_ROWS, data.n_test)
    x_val = {k: v[:n_val] for k, v in x_test.items()}
    y_val = data.labels_test[:n_val]

    dg = DataGenerator(x_train, data.labels_train)
    train_dl, val_dl, _ = dg.generate_dataloader(
        x_val=x_val, y_val=y_val, x_test=x_val, y_test=y_val, batch_size=batch_size, num_workers=num_workers
    )
    task_types = ["classification"] * len(data.task_names)
    model = MMOE(
        features,
        task_types,
        N_EXPERTS,
        expert_params={"dims": [EXPERT_UNITS]},
        tower_params_list=[{"dims": [TOWER_UNITS]} for _ in task_types],
    )

    with tempfile.TemporaryDirectory(prefix="rechub_bench_") as model_dir:
        trainer = MTLTrainer(
            model,
            task_types=task_types,
            optimizer_params={"lr": lr, "weight_decay": RECHUB_WEIGHT_DECAY},
            n_epoch=epochs,
            # Early stopping would cut epochs short and restore older weights; the benchmark
            # wants exactly `epochs` epochs of training.
            earlystop_patience=epochs + 1,
            device="cpu",
            model_path=model_dir,  # fit saves a checkpoint at the end; keep it out of the tree
        )
        epoch_seconds: list[float] = []
        epoch_cpu: list[float] = []
        train_one_epoch: Callable[..., Any] = trainer.train_one_epoch

        def timed_epoch(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.process_time()
            out = train_one_epoch(*args, **kwargs)
            epoch_seconds.append(time.perf_counter() - t0)
            epoch_cpu.append(time.process_time() - c0)
            return out

        # fit() looks the method up on the instance, so this times exactly its training part.
        trainer.train_one_epoch = timed_epoch  # type: ignore[method-assign]
        mem = _TrainWindow()
        mem.start()
        trainer.fit(train_dl, val_dl, seed=seed)
        mem_result = mem.stop()

    predict_dl = DataLoader(PredictDataset(x_test), batch_size=batch_size, shuffle=False, num_workers=0)
    probs = np.asarray(trainer.predict(trainer.model, predict_dl), dtype=np.float64)
    return _result(
        "torch-rechub",
        "torch-rechub",
        data,
        epoch_seconds,
        epoch_cpu,
        probs,
        mem_result,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        num_workers=num_workers,
    )


# ---------------------------------------------------------------------------------------------
# DeepCTR-Torch


@contextlib.contextmanager
def _quiet_deepctr_version_check() -> Iterator[None]:
    """Import-time hygiene for deepctr_torch.

    `import deepctr_torch` starts a non-daemon thread that asks pypi.python.org for newer
    releases, without a timeout. That is network traffic in the middle of a benchmark and, where
    the network hangs, a process that never exits. The check is made to fail at once (the
    library catches it) and its one-line notice is swallowed. deepctr-torch 0.3.0 imports
    `requests` without declaring it, so it must be installed alongside.
    """
    import requests

    def offline_get(*_args: Any, **_kwargs: Any) -> Any:
        raise requests.exceptions.ConnectionError("version check disabled by benchmarks/peers.py")

    before = set(threading.enumerate())
    real_get = requests.get
    requests.get = offline_get  # type: ignore[assignment]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
            for t in set(threading.enumerate()) - before:
                t.join(timeout=10.0)
    finally:
        requests.get = real_get  # type: ignore[assignment]


def _import_deepctr() -> Any:
    if "deepctr_torch" in sys.modules:
        return sys.modules["deepctr_torch"]
    with _quiet_deepctr_version_check():
        import deepctr_torch
    return deepctr_torch


def run_deepctr(
    data: PeerData,
    epochs: int,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = None,
    train_metrics: bool = False,
    verbose: int = 2,
) -> dict[str, Any]:
    """Train DeepCTR-Torch's MMOE with `.compile`/`.fit` and report speed, test AUC and peak RSS.

    `threads`: torch intra-op threads (None keeps torch's default). `train_metrics`: also pass
    `metrics=["binary_crossentropy"]` to compile, as DeepCTR's example does; fit then computes
    sklearn's log loss on every training batch, monitoring cost rather than training, so it is off
    by default. `verbose`: fit's verbosity (2 = one line per epoch, as in the docs' example;
    1 = tqdm bar; 0 = silent).
    """
    torch = _setup_torch(seed, threads)
    _import_deepctr()
    from deepctr_torch.callbacks import Callback
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import MMOE

    feature_columns = [
        SparseFeat(n, vocabulary_size=v, embedding_dim=EMBED_DIM) for n, v in zip(data.sparse_names, data.vocab_sizes)
    ] + [DenseFeat(n, 1) for n in data.dense_names]
    model = MMOE(
        feature_columns,
        num_experts=N_EXPERTS,
        expert_dnn_hidden_units=(EXPERT_UNITS,),
        # The paper's gate is a single softmax layer on the input; DeepCTR's default adds a
        # hidden layer of 64 units, which would make this a different (and slower) model.
        gate_dnn_hidden_units=(),
        tower_dnn_hidden_units=(TOWER_UNITS,),
        task_types=["binary"] * len(data.task_names),
        task_names=list(data.task_names),
        seed=seed,
        device="cpu",
    )
    model.compile(
        torch.optim.Adam(model.parameters(), lr=lr),
        loss=["binary_crossentropy"] * len(data.task_names),
        metrics=["binary_crossentropy"] if train_metrics else None,
    )

    epoch_seconds: list[float] = []
    epoch_cpu: list[float] = []

    class EpochTimer(Callback):
        """fit() calls these right around each epoch's batch loop (no validation data is given)."""

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._t0, self._c0 = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            epoch_seconds.append(time.perf_counter() - self._t0)
            epoch_cpu.append(time.process_time() - self._c0)

    x_train = data.feature_dict("train")
    mem = _TrainWindow()
    mem.start()
    # fit() concatenates the columns into one float64 array before its first epoch: that is data
    # preparation and stays outside epoch_seconds, though inside the memory window.
    model.fit(
        x_train,
        data.labels_train,
        batch_size=batch_size,
        epochs=epochs,
        verbose=verbose,
        shuffle=True,
        callbacks=[EpochTimer()],
    )
    mem_result = mem.stop()

    probs = np.asarray(model.predict(data.feature_dict("test"), batch_size=batch_size), dtype=np.float64)
    return _result(
        "deepctr-torch",
        "deepctr-torch",
        data,
        epoch_seconds,
        epoch_cpu,
        probs,
        mem_result,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        train_metrics=train_metrics,
    )


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {"rechub": run_torch_rechub, "deepctr": run_deepctr}


# ---------------------------------------------------------------------------------------------
# CLI: one contender per process, so its peak RSS is its own.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train one peer library's MMoE on a PeerData .npz and write a JSON result."
    )
    parser.add_argument("--peer", choices=PEERS, help="which library to run")
    parser.add_argument("--data", type=Path, help="PeerData .npz (see PeerData.save)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--json", type=Path, help="write the result here (default: stdout only)")
    parser.add_argument(
        "--write-synthetic",
        type=Path,
        metavar="FILE.npz",
        help="instead of running, write census-shaped synthetic PeerData to FILE.npz",
    )
    parser.add_argument("--rows", type=int, default=200_000, help="rows for --write-synthetic")
    args = parser.parse_args(argv)

    if args.write_synthetic is not None:
        synthetic_peer_data(n_rows=args.rows, seed=args.seed).save(args.write_synthetic)
        return 0
    if args.peer is None or args.data is None:
        parser.error("--peer and --data are required (or use --write-synthetic)")
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")

    data = PeerData.load(args.data)
    result = RUNNERS[args.peer](
        data, args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads
    )
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    # The peers print progress to stdout/stderr; a marked last line lets a driver parse stdout too.
    print("PEER_RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
