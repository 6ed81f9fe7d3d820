"""Two ranks, interrupted and resumed, train what one process trains uninterrupted, through the
Python API: the models with a structure or loss term of their own (PLE's levels of gates, AITM's
calibrator, DSelect-k's entropy, ESMM's conditional task), the loss weightings that are no fixed
weighted sum of the task losses (gls, uw) or that combine per-task gradients (mgda, its upper
bound, pcgrad), numeric columns as learned vectors, and the row-sparse optimisers of an embedded
column.

One torchrun launch trains every case in turn (a process start-up costs seconds, a case's training
a fraction of one): each case `epochs − 1` epochs with a checkpoint, then resumed to `epochs`.
This process trains the same cases uninterrupted, for reference, while the ranks run; each case
is then its own test. tests/test_distributed.py tests the same contract through `mmoe train`
(torchrun, `--distributed`, `--resume`, which rank writes) and states the tolerances.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist

from mmoe.data.dataset import MultiTaskData, with_numeric_embedding
from mmoe.data.tabular import table_data
from mmoe.runs import fit
from mmoe.train.trainer import TrainConfig, TrainResult
from tests.conftest import toy_data
from tests.test_distributed import ABSOLUTE, RELATIVE, WEIGHTS, _leaves
from tests.test_embeddings import embedded_data

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="this torch has no torch.distributed with the gloo backend",
)

REPO = Path(__file__).resolve().parents[1]
SEQUENCE_TASKS = "clicked:binary,bought:binary,watch:regression"  # the columns of `sequence_frame`
CONDITIONAL_TASKS = "click:binary,purchase:binary:given=click"  # tests.test_conditional.SPEC


def sequence_frame(rows: int = 2489) -> pd.DataFrame:
    """A click, a purchase that only follows it and a watch time missing on 30% of the rows. With
    2,489 rows (1,991 to train) and batches of 199, every step's two shares are uneven (99 and 100
    rows) and each epoch's last batch is one row, so rank 0's share is empty."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3))
    colour = rng.choice(["red", "green", "blue", "grey"], rows)
    signal = x[:, 0] - x[:, 1] + (colour == "blue")
    clicked = signal + 0.5 * rng.normal(size=rows) > 0
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "colour": colour})
    frame["clicked"] = clicked.astype(int)
    frame["bought"] = (clicked & (x[:, 2] + 0.5 * rng.normal(size=rows) > 0.3)).astype(int)
    frame["watch"] = 3 * signal + 10 + 0.3 * rng.normal(size=rows)
    frame.loc[rng.random(rows) < 0.3, "watch"] = np.nan
    return frame


def sequence_data() -> MultiTaskData:
    return table_data(sequence_frame(), "sequence", SEQUENCE_TASKS)


def two_task_data() -> MultiTaskData:
    """601 rows (481 to train) of a click and a watch time, all labelled: batches of 99 split into
    shares of 49 and 50, the last batch (85 rows) into 42 and 43."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(601, 2))
    colour = rng.choice(["red", "green", "blue"], 601)
    signal = x[:, 0] - x[:, 1] + (colour == "blue")
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "colour": colour})
    frame["clicked"] = (signal + 0.5 * rng.normal(size=601) > 0).astype(int)
    frame["watch"] = 3 * signal + 0.3 * rng.normal(size=601)
    return table_data(frame, "two tasks", "clicked:binary,watch:regression")


def conditional_data() -> MultiTaskData:
    """1,493 rows (1,195 to train) of a click and a purchase labelled only after a click: batches
    of 199, uneven shares, and each epoch's last batch is one row."""
    rng = np.random.default_rng(0)
    rows = 1493
    x = rng.normal(size=(rows, 3))
    click = rng.random(rows) < 1 / (1 + np.exp(-2 * x[:, 0]))
    purchase = np.where(click, (rng.random(rows) < 1 / (1 + np.exp(-2 * x[:, 1]))).astype(float), np.nan)
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "click": click.astype(int), "purchase": purchase})
    return table_data(frame, "conditional", CONDITIONAL_TASKS)


def missing_labels_data() -> MultiTaskData:
    """700 rows (490 to train), 30% of the second task's labels missing: batches of 97 split
    unevenly (48 and 49), the last batch is 5 rows."""
    return toy_data(rows=700, missing_second=0.3)


def periodic_data() -> MultiTaskData:
    """`sequence_data` with its numeric columns embedded (`PeriodicEmbeddings` in the first layer)."""
    return with_numeric_embedding(sequence_data(), "periodic")


def embedded_column_data() -> MultiTaskData:
    """An embedded user column of 300 ids, 900 rows (630 to train): batches of 97, uneven shares,
    a last batch of 48."""
    return embedded_data(rows=900, users=300)


@dataclass(frozen=True)
class Case:
    """One model trained on one data set: `fit(data(), model, TrainConfig(epochs, **options),
    **hyperparameters)`."""

    data: Callable[[], MultiTaskData]
    model: str
    epochs: int
    options: dict[str, Any]
    hyperparameters: dict[str, Any] = field(default_factory=dict)


WEIGHTED = {"batch_size": 97, "patience": 0, "learning_rate": 1e-2, "seed": 3}
TABLE = {"patience": 0, "batch_size": 199, "learning_rate": 0.01}
EMBEDDED = {"batch_size": 97, "patience": 0, "learning_rate": 1e-2}

CASES: dict[str, Case] = {
    # Loss weightings that are no fixed weighted sum of the ranks' losses: a function of the global
    # batch's task losses (gls), learnt weights (uw), per-task gradients combined (mgda, pcgrad; mgda
    # on the shared representation).
    "gls-mmoe": Case(missing_labels_data, "mmoe", 2, {**WEIGHTED, "weighting": "gls"}),
    "uw-mmoe": Case(missing_labels_data, "mmoe", 2, {**WEIGHTED, "weighting": "uw"}),
    "mgda-mmoe": Case(missing_labels_data, "mmoe", 2, {**WEIGHTED, "weighting": "mgda"}),
    # The penalty, on rank 0 only, reaches the shared weights.
    "pcgrad-l2-constrained": Case(missing_labels_data, "l2-constrained", 2, {**WEIGHTED, "weighting": "pcgrad"}),
    # DSelect-k's entropy term, per rank, reaches the shared weights.
    "pcgrad-dselect-k": Case(missing_labels_data, "dselect-k", 2, {**WEIGHTED, "weighting": "pcgrad"}),
    "mgda-upper-bound-shared-bottom": Case(
        missing_labels_data,
        "shared-bottom",
        2,
        {**WEIGHTED, "weighting": "mgda", "weighting_options": {"upper_bound": 1.0}},
    ),
    # Models: PLE's levels of task and shared gates; AITM's calibrator and DSelect-k's entropy term
    # are per-row means over the global batch (uneven shares and an empty one add up to one
    # process's); ESMM's conditional task trained entire-space (each task's mean divides by the
    # global batch's count of its joint labels).
    "ple": Case(
        two_task_data,
        "ple",
        3,
        {"patience": 0, "batch_size": 99, "learning_rate": 0.01},
        {"specific_experts": 1, "shared_experts": 2, "levels": 2, "expert_units": (8,)},
    ),
    # PLE with DSelect-k gates: its entropy term summed over levels and gates.
    "ple-dselect-k": Case(
        two_task_data,
        "ple",
        2,
        {"patience": 0, "batch_size": 99, "learning_rate": 0.01},
        {"specific_experts": 1, "shared_experts": 3, "gate": "dselect-k", "entropy_weight": 0.2, "expert_units": (8,)},
    ),
    "aitm": Case(sequence_data, "aitm", 3, TABLE, {"hidden_units": (16,), "calibrator_weight": 2.0}),
    "dselect-k": Case(
        sequence_data, "dselect-k", 3, TABLE, {"num_experts": 5, "k": 2, "expert_units": (8,), "entropy_weight": 0.2}
    ),
    "esmm": Case(conditional_data, "esmm", 2, TABLE, {"tower_units": (8,)}),
    # ESCM²'s IPW term: per row over the clicked ones, divided by the global batch's joint-label count.
    "escm2-ipw": Case(conditional_data, "esmm", 2, {**TABLE, "counterfactual_weight": 0.5}, {"tower_units": (8,)}),
    # Numeric columns as learned vectors: their parameters are dense, reduced by DDP as the rest.
    "periodic-mmoe": Case(periodic_data, "mmoe", 3, TABLE, {"num_experts": 3}),
    # Embedded columns: the tables' sparse gradients are gathered and summed over the ranks (outside DDP).
    "lazy-adam": Case(
        embedded_column_data, "mmoe", 2, {**EMBEDDED, "sparse_optimizer": "lazy-adam"}, {"num_experts": 3}
    ),
    "row-adagrad": Case(
        embedded_column_data, "mmoe", 2, {**EMBEDDED, "sparse_optimizer": "row-adagrad"}, {"num_experts": 3}
    ),
}


def train(name: str, checkpoint: Path | None = None) -> TrainResult:
    """Case `name`, uninterrupted; or, with a checkpoint path, interrupted after `epochs − 1`
    epochs (the checkpoint saved) and resumed from it to `epochs`."""
    case = CASES[name]
    data = case.data()
    config = TrainConfig(epochs=case.epochs, threads=1, **case.options)
    if checkpoint is None:
        return fit(data, case.model, config, **case.hyperparameters)
    first = replace(config, epochs=case.epochs - 1)
    fit(data, case.model, first, checkpoint_path=checkpoint, **case.hyperparameters)
    return fit(data, case.model, config, resume_from=checkpoint, **case.hyperparameters)


def outcome(result: TrainResult) -> dict[str, Any]:
    """What the ranks and the one process must agree on: weights, per-epoch history, metrics."""
    return {"state": result.model.state_dict(), "history": result.history, "metrics": result.metrics}


RANKS_SCRIPT = """
import sys
from pathlib import Path
import torch
from mmoe.train import distributed
from tests.test_distributed_models import CASES, outcome, train

out = Path(sys.argv[1])
parallel = distributed.setup()
outcomes = {}
for name in CASES:
    try:
        outcomes[name] = outcome(train(name, out / f"{name}.checkpoint"))
    except BaseException:
        print(f"case {name} failed on rank {parallel.rank}", file=sys.stderr)
        raise
if parallel.is_first:
    torch.save(outcomes, out / "ranks.pt")
"""


class Ranks:
    """The torchrun launch of RANKS_SCRIPT, running while this process trains the references."""

    def __init__(self, out: Path) -> None:
        self.out = out
        (out / "ranks.py").write_text(RANKS_SCRIPT)
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]),
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
        }
        self.command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        self.command += [str(out / "ranks.py"), str(out)]
        # Output to files, not pipes: a full pipe would stop the ranks while no one reads it.
        self.log = open(out / "ranks.log", "w")  # closed in `outcome` or `finish`
        self.process = subprocess.Popen(self.command, env=environment, stdout=self.log, stderr=subprocess.STDOUT)
        self.outcomes: dict[str, Any] | None = None

    def outcome(self, name: str) -> dict[str, Any]:
        """Case `name`'s outcome on rank 0, once the launch has ended (and succeeded)."""
        if self.outcomes is None:
            code = self.process.wait(timeout=300)
            self.log.close()
            assert code == 0, f"{self.command}\n{(self.out / 'ranks.log').read_text()[-6000:]}"
            self.outcomes = torch.load(self.out / "ranks.pt", weights_only=False)
        return self.outcomes[name]

    def finish(self) -> None:
        if self.process.poll() is None:  # tests deselected or failed before waiting: no orphan ranks
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ranks]:
    launch = Ranks(tmp_path_factory.mktemp("ranks"))
    yield launch
    launch.finish()


@pytest.mark.parametrize("name", list(CASES))
def test_two_ranks_and_a_resume_train_what_one_process_trains(ranks: Ranks, name: str, one_torch_thread: None) -> None:
    expected = outcome(train(name))
    got = ranks.outcome(name)
    for part in ("history", "metrics"):
        leaves, got_leaves = _leaves(expected[part]), _leaves(got[part])
        assert leaves.keys() == got_leaves.keys(), (name, part)
        for key, value in leaves.items():
            if key.endswith("seconds"):
                continue
            if isinstance(value, float) and isinstance(got_leaves[key], float):
                assert got_leaves[key] == pytest.approx(value, rel=RELATIVE, abs=ABSOLUTE), (name, part, key)
            else:
                assert got_leaves[key] == value, (name, part, key)
    assert expected["state"].keys() == got["state"].keys(), name
    for key, tensor in expected["state"].items():
        torch.testing.assert_close(got["state"][key], tensor, rtol=0, atol=WEIGHTS, msg=f"{name}: {key}")
