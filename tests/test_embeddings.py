"""Embedded categorical columns and their row-sparse training (issue 12).

An embedded column is looked up in a table and joins the numeric columns in the first layer's
dense part, for every model; with a row-sparse optimiser (lazy Adam, row-wise AdaGrad) a step
reads and writes only the table rows its batch looked up. The specs are built by hand: the
encoder's rule for which columns are embedded is not under test here.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mmoe.cli import build_parser, training_options
from mmoe.data.dataset import MultiTaskData, Split
from mmoe.errors import MmoeError
from mmoe.models import MODELS, build_model
from mmoe.models.layers import (
    EMBEDDING_INIT_STD,
    CategoryEmbeddings,
    SparseLinear,
    row_sparse_tables,
    use_sparse_gradients,
)
from mmoe.runs import fit
from mmoe.spec import InputSpec, Task
from mmoe.train.loss import MultiTaskLoss
from mmoe.train.optim import LazyAdam, RowAdaGrad, make_adam, make_row_sparse_optimizer
from mmoe.train.trainer import TrainConfig, predict_outputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def embedded_data(rows: int = 600, seed: int = 0, users: int = 1000, dim: int = 8) -> MultiTaskData:
    """A click task that depends on a user id (embedded, `users` values) and a numeric column, and
    a regression task on a one-hot context column: spec ("x",), ("user", "ctx"), dims (dim, 0)."""
    generator = torch.Generator().manual_seed(seed)
    spec = InputSpec(("x",), ("user", "ctx"), (users, 5), (dim, 0))
    user = torch.randint(0, users, (rows,), generator=generator)
    ctx = torch.randint(0, 5, (rows,), generator=generator)
    x = torch.randn(rows, 1, generator=generator)
    taste = torch.randn(users, generator=torch.Generator().manual_seed(99))
    clicked = (taste[user] + x[:, 0] + 0.3 * torch.randn(rows, generator=generator) > 0).float()
    watch = 2.0 * ctx.float() + x[:, 0] + 0.1 * torch.randn(rows, generator=generator)
    split = Split(x, torch.stack([user, ctx], 1), torch.stack([clicked, watch], 1))
    cut1, cut2 = int(rows * 0.7), int(rows * 0.85)
    tasks = [Task("clicked", "binary"), Task("watch", "regression", float(watch.mean()), float(watch.std()))]
    return MultiTaskData(
        tasks,
        spec,
        split.subset(torch.arange(cut1)),
        split.subset(torch.arange(cut1, cut2)),
        split.subset(torch.arange(cut2, rows)),
    )


# Two embedded dimensions (two tables), a one-hot column between embedded ones.
MIXED = InputSpec(("x", "y"), ("ctx", "user", "item", "day"), (5, 300, 50, 7), (0, 8, 4, 8))


def mixed_codes(rows: int, generator: torch.Generator) -> torch.Tensor:
    """Random in-range codes of MIXED, each column's offset of its kind added."""
    columns = [
        torch.randint(0, n, (rows,), generator=generator) + offset
        for n, offset in zip(MIXED.cardinalities, MIXED.offsets)
    ]
    return torch.stack(columns, 1)


# -- the first layer ----------------------------------------------------------------------------------
def test_first_layer_reads_numeric_and_embeddings_densely_and_one_hot_sparsely() -> None:
    torch.manual_seed(0)
    layer = SparseLinear(MIXED, 6)
    # Embedding vocabulary: user 0..299, item 300..349, day 350..356; user and day share the 8-wide table.
    assert MIXED.offsets == [0, 0, 300, 350]
    assert layer.numeric_weight.shape == (2 + 20, 6) and layer.category_weight.shape == (5, 6)
    generator = torch.Generator().manual_seed(1)
    numeric, codes = torch.randn(9, 2, generator=generator), mixed_codes(9, generator)
    assert layer.embeddings is not None
    wide, narrow = layer.embeddings.tables  # dimension 8 (user, day), then 4 (item)
    assert wide.shape == (300 + 7, 8) and narrow.shape == (50, 4)
    user, item, day = wide[codes[:, 1]], narrow[codes[:, 2] - 300], wide[300 + codes[:, 3] - 350]
    dense = torch.cat([numeric, user, day, item], 1)  # tables in order of their first column
    expected = dense @ layer.numeric_weight + layer.category_weight[codes[:, 0]] + layer.bias
    torch.testing.assert_close(layer(numeric, codes), expected)


def test_a_spec_without_embedded_columns_is_the_model_it_always_was() -> None:
    plain, zeros = InputSpec(("a",), ("c", "d"), (4, 9)), InputSpec(("a",), ("c", "d"), (4, 9), (0, 0))
    for name in MODELS:
        torch.manual_seed(5)
        first = build_model(name, plain, 2)
        torch.manual_seed(5)
        second = build_model(name, zeros, 2)
        assert not any("embeddings" in key for key in first.state_dict())
        assert first.state_dict().keys() == second.state_dict().keys()
        for key, value in first.state_dict().items():
            assert torch.equal(value, second.state_dict()[key]), (name, key)


def test_embeddings_start_small_whatever_their_dimension() -> None:
    torch.manual_seed(0)
    for dim in (4, 16, 64):
        table = CategoryEmbeddings(InputSpec((), ("id",), (20000,), (dim,))).tables[0]
        assert table.std().item() == pytest.approx(EMBEDDING_INIT_STD, rel=0.02)
        assert table.mean().abs().item() < 0.05 * EMBEDDING_INIT_STD


@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_trains_and_predicts_with_an_embedded_column(model: str) -> None:
    data = embedded_data()
    result = fit(data, model, TrainConfig(epochs=2, batch_size=64, learning_rate=1e-2, patience=0))
    tables = row_sparse_tables(result.model)
    assert len(tables) == 1 and tables[0][1].shape == (1000, 8)
    outputs = predict_outputs(result.model, data.test)
    assert outputs.shape == (len(data.test), 2) and bool(outputs.isfinite().all())
    for split in ("validation", "test"):
        assert all(math.isfinite(v) for metrics in result.metrics[split].values() for v in metrics.values())
    # Only the rows of users seen in training moved; the others kept their initial draws.
    torch.manual_seed(0)
    initial = row_sparse_tables(build_model(model, data.input_spec, 2))[0][1]
    seen = torch.zeros(1000, dtype=torch.bool)
    seen[data.train.categorical[:, 0]] = True
    trained = tables[0][1].detach()
    assert torch.equal(trained[~seen], initial[~seen])
    assert bool((trained[seen] != initial[seen]).any(1).all())


def test_user_column_is_learned_through_its_embedding() -> None:
    """The click task depends on the user only through its id: embedded, it is learned."""
    data = embedded_data(rows=6000, users=100)
    result = fit(data, "mmoe", TrainConfig(epochs=8, batch_size=128, learning_rate=1e-2, patience=0))
    assert result.metrics["test"]["clicked"]["auc"] > 0.85


# -- row-sparse gradients and optimisers --------------------------------------------------------------
def test_the_tables_gradient_is_sparse_with_at_most_batch_times_columns_rows() -> None:
    torch.manual_seed(0)
    layer = SparseLinear(MIXED, 6)
    use_sparse_gradients(layer)
    generator = torch.Generator().manual_seed(2)
    numeric, codes = torch.randn(32, 2, generator=generator), mixed_codes(32, generator)
    layer(numeric, codes).square().sum().backward()
    assert layer.embeddings is not None
    wide, narrow = layer.embeddings.tables
    assert wide.grad is not None and narrow.grad is not None
    assert wide.grad.is_sparse and narrow.grad.is_sparse
    assert wide.grad._nnz() <= 32 * 2 and narrow.grad._nnz() <= 32 * 1
    looked_up = torch.cat([codes[:, 1], 300 + codes[:, 3] - 350]).unique()
    assert torch.equal(wide.grad.coalesce().indices()[0], looked_up)
    assert not layer.category_weight.grad.is_sparse  # the one-hot weight keeps its dense gradient
    # The same gradient as the dense lookup's.
    dense_layer = SparseLinear(MIXED, 6)
    dense_layer.load_state_dict(layer.state_dict())
    dense_layer(numeric, codes).square().sum().backward()
    assert dense_layer.embeddings is not None
    torch.testing.assert_close(wide.grad.to_dense(), dense_layer.embeddings.tables[0].grad)


def _sparse_step(optimizer: torch.optim.Optimizer, table: torch.Tensor, rows: torch.Tensor, seed: int) -> None:
    """One step whose gradient reaches the table's rows `rows` (and only them)."""
    optimizer.zero_grad()
    values = F.embedding(rows, table, sparse=True)
    values.mul(torch.randn(values.shape, generator=torch.Generator().manual_seed(seed))).sum().backward()
    optimizer.step()


@pytest.mark.parametrize("kind", ["lazy-adam", "row-adagrad"])
def test_untouched_rows_and_their_state_do_not_change(kind: str) -> None:
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(50, 4))
    optimizer = make_row_sparse_optimizer(kind, [table], learning_rate=0.1, weight_decay=0.01)
    assert optimizer is not None
    _sparse_step(optimizer, table, torch.tensor([1, 2, 3, 40, 2]), seed=0)  # every row once at least
    _sparse_step(optimizer, table, torch.arange(50), seed=1)
    before = table.detach().clone()
    state_before = {key: value.clone() for key, value in optimizer.state[table].items()}
    touched = torch.tensor([7, 3, 7, 21])
    _sparse_step(optimizer, table, touched, seed=2)
    moved = torch.zeros(50, dtype=torch.bool)
    moved[touched] = True
    assert torch.equal(table[~moved], before[~moved])
    assert bool((table[moved] != before[moved]).all(1).all())
    for key, value in optimizer.state[table].items():
        if key == "step":
            continue
        assert torch.equal(value[~moved], state_before[key][~moved]), key
        assert not torch.equal(value[moved], state_before[key][moved]), key


def test_lazy_adam_equals_dense_adam_when_every_row_is_touched_every_step() -> None:
    torch.manual_seed(0)
    start = torch.randn(6, 3)
    lazy_table, dense_table = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    lazy, dense = LazyAdam([lazy_table], lr=0.05), torch.optim.Adam([dense_table], lr=0.05)
    for step in range(20):
        rows = torch.cat([torch.arange(6), torch.randint(0, 6, (5,))])  # all rows, some twice
        for table, optimizer, sparse in ((lazy_table, lazy, True), (dense_table, dense, False)):
            optimizer.zero_grad()
            values = F.embedding(rows, table, sparse=sparse)
            values.mul(torch.randn(values.shape, generator=torch.Generator().manual_seed(step))).sum().backward()
            optimizer.step()
    torch.testing.assert_close(lazy_table, dense_table, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lazy.state[lazy_table]["exp_avg_sq"], dense.state[dense_table]["exp_avg_sq"])


def test_row_adagrad_update_is_its_formula() -> None:
    table = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    optimizer = RowAdaGrad([table], lr=0.5)
    rows = torch.tensor([0, 2, 0])
    # Gradient: row 0 gets (1, 1) twice -> (2, 2); row 2 gets (1, 1)·(3, -1).
    weights = torch.tensor([[1.0, 1.0], [3.0, -1.0], [1.0, 1.0]])
    for _ in range(2):
        optimizer.zero_grad()
        F.embedding(rows, table, sparse=True).mul(weights).sum().backward()
        optimizer.step()
    # G_r = Σ_steps mean(g²): row 0: 2·4 = 8, row 2: 2·5 = 10; w -= 0.5·g/√G per step.
    g0, g2 = torch.tensor([2.0, 2.0]), torch.tensor([3.0, -1.0])
    expected0 = torch.tensor([1.0, 2.0]) - 0.5 * g0 / math.sqrt(4) - 0.5 * g0 / math.sqrt(8)
    expected2 = torch.tensor([5.0, 6.0]) - 0.5 * g2 / math.sqrt(5) - 0.5 * g2 / math.sqrt(10)
    torch.testing.assert_close(table[0], expected0)
    torch.testing.assert_close(table[2], expected2)
    assert torch.equal(table[1], torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(optimizer.state[table]["sum"], torch.tensor([8.0, 0.0, 10.0]))


class _RecordSizes(TorchDispatchMode):
    """The elements every tensor an op creates holds (not views; in-place ops write their input)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # Views and in-place ops return (an alias of) their input: they allocate nothing.
        if any(result.alias_info is not None for result in func._schema.returns):
            return out
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):  # a sparse tensor holds its indices and values
                stored = value._indices().numel() + value._values().numel() if value.is_sparse else value.numel()
                self.sizes.append((func.__name__, stored))
        return out


def _step_sizes(users: int, kind: str) -> list[tuple[str, int]]:
    """What a second training step of MMoE on a batch of 64 rows allocates, tensor by tensor."""
    torch.manual_seed(0)
    data = embedded_data(rows=200, users=users, dim=8)
    model = build_model("mmoe", data.input_spec, 2)
    tables = [table for _, table, _, _ in row_sparse_tables(model)]
    use_sparse_gradients(model)
    dense = make_adam([p for p in model.parameters() if all(p is not t for t in tables)], 1e-3, 0.0)
    sparse = make_row_sparse_optimizer(kind, tables, 1e-3, 0.0)
    assert sparse is not None
    loss_fn = MultiTaskLoss(data.tasks)
    recorder = _RecordSizes()
    for step in range(2):
        batch = data.train.subset(torch.arange(64 * step, 64 * (step + 1)))
        with recorder if step == 1 else contextlib.nullcontext():  # the second step only: state exists
            dense.zero_grad(set_to_none=True)
            sparse.zero_grad(set_to_none=True)
            task_losses, _ = loss_fn(model(batch.numeric, batch.categorical), batch.labels)
            task_losses.sum().backward()
            dense.step()
            sparse.step()
    return recorder.sizes


@pytest.mark.parametrize("kind", ["lazy-adam", "row-adagrad"])
def test_a_steps_cost_does_not_grow_with_the_vocabulary(kind: str) -> None:
    """A step with 10,000 user ids and one with 1,000,000 create the same tensors, none of
    them larger than the batch's share of the table (64 rows × 2 columns × 8 dimensions is
    far below 10,000 × 8)."""
    small, large = _step_sizes(10_000, kind), _step_sizes(1_000_000, kind)
    assert small == large
    assert max(size for _, size in small) < 10_000
    # With "dense", the step allocates the whole table's gradient: the check above can fail.
    torch.manual_seed(0)
    data = embedded_data(rows=200, users=100_000)
    model = build_model("mmoe", data.input_spec, 2)
    recorder = _RecordSizes()
    with recorder:
        task_losses, _ = MultiTaskLoss(data.tasks)(
            model(data.train.numeric[:64], data.train.categorical[:64]), data.train.labels[:64]
        )
        task_losses.sum().backward()
    assert max(size for _, size in recorder.sizes) >= 100_000 * 8


# -- options ------------------------------------------------------------------------------------------
def test_sparse_optimizer_option() -> None:
    assert TrainConfig().sparse_optimizer == "lazy-adam"
    assert "sparse_optimizer" not in TrainConfig().to_dict()  # old config.json and checkpoints match
    assert TrainConfig(sparse_optimizer="row-adagrad").to_dict()["sparse_optimizer"] == "row-adagrad"
    with pytest.raises(MmoeError, match="sparse_optimizer 'adam' is unknown; expected one of: lazy-adam, row-adagrad"):
        TrainConfig(sparse_optimizer="adam")
    args = build_parser().parse_args(["train", "--data", "x.csv", "--tasks", "a:binary", "--sparse-optimizer", "dense"])
    assert training_options(args)["sparse_optimizer"] == "dense"
    args = build_parser().parse_args(["train", "--data", "x.csv", "--tasks", "a:binary"])
    assert training_options(args)["sparse_optimizer"] == "lazy-adam"


def test_estimator_passes_sparse_optimizer_on() -> None:
    from mmoe.estimator import MultiTaskEstimator

    estimator = MultiTaskEstimator(sparse_optimizer="row-adagrad")
    assert estimator.get_params()["sparse_optimizer"] == "row-adagrad"
    assert estimator._train_config().sparse_optimizer == "row-adagrad"


@pytest.mark.parametrize("kind", ["lazy-adam", "row-adagrad", "dense"])
def test_each_sparse_optimizer_trains_the_embedded_column(kind: str) -> None:
    data = embedded_data(rows=3000, users=100)
    rate = 5e-2 if kind == "row-adagrad" else 1e-2
    result = fit(data, "mmoe", TrainConfig(epochs=6, batch_size=64, learning_rate=rate, sparse_optimizer=kind))
    assert result.metrics["test"]["clicked"]["auc"] > 0.8


def test_a_large_one_hot_vocabulary_gets_a_row_sparse_gradient() -> None:
    """A one-hot column of 100,000 values (an id a user keeps one-hot): its weight's gradient is
    B rows, not V, and a step's tensors do not grow with V; a small one-hot vocabulary keeps
    its dense gradient (census's path)."""
    for users, sparse in ((100_000, True), (50, False)):
        torch.manual_seed(0)
        spec = InputSpec(("x",), ("user",), (users,))
        model = build_model("shared-bottom", spec, 1, hidden_units=(16,))
        tables = row_sparse_tables(model)
        assert [name for name, _, _, _ in tables] == (["input_layer.category_weight"] if sparse else [])
        use_sparse_gradients(model)
        codes = torch.randint(0, users, (32, 1))
        model(torch.randn(32, 1), codes).sum().backward()
        grad = model.input_layer.category_weight.grad
        assert grad is not None and grad.is_sparse == sparse
    data = embedded_data(rows=300, users=100_000, dim=8)
    sizes = []
    for users in (100_000, 1_000_000):
        torch.manual_seed(0)
        model = build_model("mmoe", InputSpec(("x",), ("user", "ctx"), (users, 5)), 1)  # both one-hot
        tables = [table for _, table, _, _ in row_sparse_tables(model)]
        use_sparse_gradients(model)
        dense = make_adam([p for p in model.parameters() if all(p is not t for t in tables)], 1e-3, 0.0)
        lazy = make_row_sparse_optimizer("lazy-adam", tables, 1e-3, 0.0)
        assert lazy is not None
        recorder = _RecordSizes()
        codes = data.train.categorical[:64] + torch.tensor([0, users])  # ctx's one-hot slots follow user's
        for step in range(2):
            with recorder if step == 1 else contextlib.nullcontext():
                dense.zero_grad()
                lazy.zero_grad()
                model(data.train.numeric[:64], codes).sum().backward()
                dense.step()
                lazy.step()
        sizes.append(recorder.sizes)
    assert sizes[0] == sizes[1] and max(size for _, size in sizes[0]) < 100_000


def test_a_runs_sparse_optimizer_survives_config_and_load(tmp_path, capsys) -> None:
    """A run trained with a non-default sparse_optimizer: its config.json trains again through
    `mmoe train --config` with that optimiser, and MultiTaskEstimator.load reports it."""
    import json

    from mmoe import MultiTaskEstimator
    from mmoe.cli import main

    flags = ["--dataset", "clicklog", "--impressions", "4000", "--users", "300", "--items", "40", "--embed", "user_id"]
    run, again = tmp_path / "run", tmp_path / "again"
    common = ["--epochs", "1", "--threads", "1", "--quiet"]
    assert main(["train", *flags, *common, "--sparse-optimizer", "row-adagrad", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["training"]["sparse_optimizer"] == "row-adagrad"
    assert MultiTaskEstimator.load(run).sparse_optimizer == "row-adagrad"
    assert main(["train", "--config", str(run / "config.json"), *common, "--out", str(again)]) == 0
    assert json.loads((again / "config.json").read_text())["training"]["sparse_optimizer"] == "row-adagrad"
    capsys.readouterr()
