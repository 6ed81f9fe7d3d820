"""Data-parallel training: R ranks train what one process trains with the same global batch.

The contract (mmoe.train.distributed): every rank reads the same global batches and trains on its
contiguous share; each task's loss divides by the global batch's label count and the ranks'
gradients are summed, so 2 ranks equal 1 process up to the order of floating-point sums. Measured
here: metrics and losses within a relative 1e-6, weights within 2e-7 (2e-5 for
Tensor-Factorization); the tolerances below leave a margin. The processes run on CPU (gloo) with
one thread each, as CI has two cores.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist

from mmoe.cli import main
from mmoe.data.dataset import InputSpec, Split, Task
from mmoe.models import build_model
from mmoe.train.distributed import DataParallel
from mmoe.train.loss import MultiTaskLoss
from mmoe.train.weighting import make_weighting

SRC = Path(__file__).resolve().parents[1] / "src"
RELATIVE, ABSOLUTE, WEIGHTS = 1e-5, 1e-7, 1e-4  # metrics and losses: relative (with a floor); weights: absolute

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch has no torch.distributed with the gloo backend",
)

# Records, per process, every file it opens for writing, renames or creates under $WATCHED_DIR
# (Python's audit hooks see torch.save, tempfile and os.replace alike), so the test can tell which
# rank wrote what.
SITECUSTOMIZE = """
import os, sys
_watched, _log = os.environ.get("WATCHED_DIR"), os.environ.get("WRITES_LOG_DIR")
if _watched and _log:
    _name = os.path.join(_log, "rank-" + os.environ.get("RANK", "launcher"))
    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        elif event in ("os.rename", "os.mkdir", "os.remove"):
            path, writes = args[1] if event == "os.rename" else args[0], True  # a rename's target
        else:
            return
        if writes and isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(_watched):
            with open(_name, "a") as log:
                log.write(os.fspath(path) + "\\n")
    sys.addaudithook(_hook)
"""


def run_mmoe(argv: list[str], ranks: int, tmp: Path, torchrun: bool = True, env: dict[str, str] | None = None) -> None:
    """`mmoe ARGV` in one process, or in `ranks` processes (through torchrun, or through
    `mmoe train --distributed` when torchrun is False)."""
    if ranks == 1:
        command = [sys.executable, "-m", "mmoe", *argv]
    elif torchrun:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(ranks),
            "-m",
            "mmoe",
            *argv,
        ]
    else:
        command = [sys.executable, "-m", "mmoe", *argv, "--distributed", str(ranks)]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp / "site"), str(SRC)]),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        **(env or {}),
    }
    done = subprocess.run(
        [*command, "--threads", "1", "--quiet"], env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def assert_same_run(one: Path, two: Path) -> None:
    """metrics.json and history.json equal within RELATIVE (times aside), weights within WEIGHTS."""
    for name in ("metrics.json", "history.json"):
        expected, got = _leaves(json.loads((one / name).read_text())), _leaves(json.loads((two / name).read_text()))
        assert expected.keys() == got.keys(), name
        for key, value in expected.items():
            if key.endswith("seconds"):
                continue
            if isinstance(value, float) and isinstance(got[key], float):
                assert math.isclose(value, got[key], rel_tol=RELATIVE, abs_tol=ABSOLUTE), (name, key, value, got[key])
            else:
                assert value == got[key], (name, key, value, got[key])
    expected, got = (torch.load(d / "model.pt", weights_only=False)["state_dict"] for d in (one, two))
    for key, tensor in expected.items():
        torch.testing.assert_close(got[key], tensor, rtol=0, atol=WEIGHTS, msg=key)


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{prefix}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("distributed")
    (directory / "site").mkdir()
    (directory / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return directory


# -- the weighting, in one process: the ranks' gradients sum to the global batch's ------------------
@pytest.mark.parametrize("world_size", [2, 3])
def test_shares_sum_to_the_global_batch_loss_and_gradient(world_size: int) -> None:
    """Uneven shares, an empty share (a batch of one row) and missing labels in the second task:
    Σ over ranks of each rank's loss and gradient is the global batch's (the penalty on rank 0)."""
    torch.manual_seed(0)
    spec = InputSpec(("a", "b"), ("colour",), (4,))
    tasks = [Task("clicked", "binary"), Task("watch", "regression", 10.0, 3.0)]
    model = build_model("l2-constrained", spec, 2, hidden_units=(8,), l2_alpha=0.1)
    loss_fn, weighting = MultiTaskLoss(tasks), make_weighting("fixed", 2, (1.0, 0.5))
    for rows in (11, 1, 7):
        labels = torch.stack([torch.randint(0, 2, (rows,)).float(), 10 + 3 * torch.randn(rows)], 1)
        labels[torch.arange(rows) % 3 == 1, 1] = math.nan
        batch = Split(torch.randn(rows, 2), torch.randint(0, 4, (rows, 1)), labels)

        model.zero_grad()
        per_task, labelled = loss_fn(model(batch.numeric, batch.categorical), batch.labels)
        loss = weighting.backward(per_task, labelled, list(model.parameters()), model.penalty())
        per_task = per_task.detach()
        expected = {name: p.grad.clone() for name, p in model.named_parameters()}

        model.zero_grad()
        total, task_total = torch.zeros(()), torch.zeros(2)
        for rank in range(world_size):
            parallel = DataParallel(rank, world_size, torch.device("cpu"), grouped=True)
            share, counts = parallel.share(batch)
            rank_per_task, rank_labelled = loss_fn(model(share.numeric, share.categorical), share.labels, counts)
            assert torch.equal(rank_labelled, labelled)  # the global batch's labels, on every rank
            # Gradients accumulate, as DDP's summing hook adds them up.
            rank_loss = weighting.backward(
                rank_per_task, rank_labelled, list(model.parameters()), model.penalty() if parallel.is_first else None
            )
            total, task_total = total + rank_loss, task_total + rank_per_task.detach()
        torch.testing.assert_close(total, loss, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(task_total, per_task, rtol=1e-6, atol=1e-7)
        for name, p in model.named_parameters():
            torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-7, msg=name)


# -- 2 ranks vs 1 process, through torchrun and through --distributed ------------------------------------
@pytest.fixture(scope="module")
def runs(tmp: Path) -> tuple[Path, Path, Path]:
    """One process (this one, through `mmoe.cli.main`) trains three epochs. Two ranks train two
    epochs under torchrun, then resume to three with `mmoe train --distributed 2`. The data: a
    table of 2,489 rows (1,991 to train) whose regression task misses 30% of its labels, in batches
    of 199: every step's shares are uneven (99 and 100 rows), and each epoch's last batch is one
    row, so rank 0's share is empty.
    The model is L2-Constrained, the one with a penalty, which must count once per step."""
    rng = np.random.default_rng(0)
    rows = 2489
    x = rng.normal(size=(rows, 3))
    colour = rng.choice(["red", "green", "blue", "grey"], rows)
    signal = x[:, 0] - x[:, 1] + (colour == "blue")
    frame = pd.DataFrame(
        {
            "a": x[:, 0],
            "b": x[:, 1],
            "c": x[:, 2],
            "colour": colour,
            "clicked": (signal + 0.5 * rng.normal(size=rows) > 0).astype(int),
            "watch": 3 * signal + 10 + 0.3 * rng.normal(size=rows),
        }
    )
    frame.loc[rng.random(rows) < 0.3, "watch"] = np.nan
    frame.to_csv(tmp / "table.csv", index=False)
    argv = [
        "train",
        "--data",
        str(tmp / "table.csv"),
        "--tasks",
        "clicked:binary,watch:regression",
        "--model",
        "l2-constrained",
        "--hidden-units",
        "16",
        "--l2-alpha",
        "0.01",
        "--patience",
        "0",
        "--batch-size",
        "199",
        "--learning-rate",
        "0.01",
    ]
    one, two, writes = tmp / "one", tmp / "two", tmp / "writes"
    writes.mkdir()
    watch = {"WATCHED_DIR": str(two), "WRITES_LOG_DIR": str(writes)}
    threads = torch.get_num_threads()
    try:  # the one process is this one (no start-up to pay); its --threads 1 is undone afterwards
        assert main([*argv, "--epochs", "3", "--out", str(one), "--threads", "1", "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    run_mmoe([*argv, "--epochs", "2", "--out", str(two)], 2, tmp, env=watch)
    assert len(json.loads((two / "history.json").read_text())) == 2
    run_mmoe([*argv, "--epochs", "3", "--out", str(two), "--resume"], 2, tmp, torchrun=False, env=watch)
    return one, two, writes


def test_two_ranks_train_what_one_process_trains(runs: tuple[Path, Path, Path]) -> None:
    one, two, _ = runs
    assert len(json.loads((two / "history.json").read_text())) == 3
    assert_same_run(one, two)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_only_rank_0_writes_the_run(runs: tuple[Path, Path, Path]) -> None:
    _, _, writes = runs
    logs = {log.name: log.read_text().split() for log in writes.iterdir()}
    assert "rank-1" not in logs, f"rank 1 wrote {logs.get('rank-1')}"
    assert "rank-launcher" not in logs
    written = {Path(path).name for path in logs["rank-0"]}
    assert {"model.pt", "metrics.json", "history.json", "config.json", "checkpoint.pt"} <= written


# -- refused combinations -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--distributed", "2", "--replicas", "3"], "--replicas 3 trains seeds side by side in one process"),
        (["--distributed", "0"], "--distributed must be at least 1 process, got 0"),
    ],
)
def test_refused_before_any_process_starts(
    tmp: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    code = main(["train", "--dataset", "synthetic", "--rows", "500", "--out", str(tmp / "refused"), *options])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and message in error[0], error
    assert not (tmp / "refused").exists()


# Embedded columns (sparse gradients summed over the ranks outside DDP), every model with a term of
# its own and the loss weightings that combine the ranks' gradients: tests/test_distributed_models.py.
