"""Conditional tasks (a purchase follows a click): the spec, the joint prediction P(click) ·
P(purchase | click), metrics on the right rows, the entire-space loss, and every way of training
(population, distributed shares, resume) and serving (predict, export) with them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mmoe.cli import main
from mmoe.data.dataset import MultiTaskData, Split
from mmoe.data.tabular import parse_task_spec
from mmoe.errors import MmoeError
from mmoe.estimator import MultiTaskEstimator
from mmoe.models import build_model
from mmoe.runs import Run, fit
from mmoe.spec import InputSpec, Task, condition_chains, joint_tasks, prediction_names
from mmoe.train.distributed import DataParallel
from mmoe.train.loss import (
    MAX_IPW_WEIGHT,
    MultiTaskLoss,
    conditional_labels,
    resolve_entire_space,
    resolve_loss_options,
)
from mmoe.train.metrics import evaluate_predictions, evaluate_stacked, to_predictions
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig
from mmoe.train.weighting import make_weighting

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASKS = [Task("click", "binary"), Task("purchase", "binary", given="click")]
SPEC = "click:binary,purchase:binary:given=click"
NAN = math.nan
DATA = Path(__file__).resolve().parent / "data"


def click_frame(rows: int, seed: int = 0, purchase_everywhere: bool = False) -> pd.DataFrame:
    """A click log: click depends on x0 and the colour, purchase (given a click) on x1; the
    purchase label is missing where there was no click (or 0 there, with purchase_everywhere)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    colour = rng.choice(["red", "green", "blue"], rows)
    click = rng.random(rows) < 1 / (1 + np.exp(-(2 * x[:, 0] + (colour == "blue") - 0.5)))
    bought = rng.random(rows) < 1 / (1 + np.exp(-(2 * x[:, 1] - 0.3)))
    purchase = np.where(click, bought.astype(float), 0.0 if purchase_everywhere else np.nan)
    return pd.DataFrame(
        {
            "x0": x[:, 0],
            "x1": x[:, 1],
            "x2": x[:, 2],
            "colour": colour,
            "click": click.astype(int),
            "purchase": purchase,
        }
    )


def tensor_data(rows: int = 700, seed: int = 0) -> MultiTaskData:
    """`click_frame` as tensors, split 70/15/15."""
    frame = click_frame(rows, seed)
    numeric = torch.tensor(frame[["x0", "x1", "x2"]].to_numpy(), dtype=torch.float32)
    categorical = torch.tensor(frame["colour"].map({"red": 1, "green": 2, "blue": 3}).to_numpy()).unsqueeze(1)
    labels = torch.tensor(frame[["click", "purchase"]].to_numpy(), dtype=torch.float32)
    split = Split(numeric, categorical, labels)
    cut1, cut2 = int(rows * 0.7), int(rows * 0.85)
    return MultiTaskData(
        list(TASKS),
        InputSpec(("x0", "x1", "x2"), ("colour",), (4,)),
        split.subset(torch.arange(cut1)),
        split.subset(torch.arange(cut1, cut2)),
        split.subset(torch.arange(cut2, rows)),
    )


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# -- the spec -----------------------------------------------------------------------------------------
def test_a_task_spec_declares_a_task_given_another() -> None:
    tasks = parse_task_spec(" click : binary , purchase:binary:given = click ")
    assert tasks == TASKS
    assert [task.spec() for task in tasks] == ["click:binary", "purchase:binary:given=click"]
    assert parse_task_spec(",".join(task.spec() for task in tasks)) == tasks
    assert joint_tasks(tasks) == [(1, 0, "click&purchase")]
    assert prediction_names(tasks) == ["click", "purchase", "click&purchase"]
    # A chain: checkout given purchase given click.
    chain = parse_task_spec("click:binary,watch:regression,purchase:binary:given=click,checkout:binary:given=purchase")
    assert condition_chains(chain) == [(0,), (1,), (0, 2), (0, 2, 3)]
    assert prediction_names(chain)[4:] == ["click&purchase", "click&purchase&checkout"]


def test_given_is_saved_only_when_set_and_old_task_dicts_load() -> None:
    assert "given" not in Task("click", "binary").to_dict()
    assert Task.from_dict(TASKS[1].to_dict()) == TASKS[1]
    assert Task.from_dict({"name": "a", "kind": "binary", "label_mean": 0.0, "label_std": 1.0}).given is None
    run = Run.load(DATA / "run-0.1.0")  # a run of the first release: its tasks have no given
    assert all(task.given is None for task in run.tasks)
    assert prediction_names(run.tasks) == [task.name for task in run.tasks]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("click:binary,purchase:binary:given=clik", "task 'purchase': given='clik' names no task; expected an earlier"),
        ("purchase:binary:given=click,click:binary", "given='click' names a later task"),
        ("a:binary:given=b,b:binary:given=a", "task 'a': given='b' names a later task"),  # a cycle
        ("watch:regression,purchase:binary:given=watch", "given='watch' names a regression task; expected an earlier"),
        ("click:binary,value:regression:given=click", "task 'value': given='click' on a regression task"),
        ("click:binary,purchase:binary:given=purchase", "given= names the task itself"),
        ("click:binary,purchase:binary:given=", "has an empty given="),
        ("click:binary,purchase:binary:given=click,click&purchase:binary", "'click&purchase' is also a task's name"),
    ],
)
def test_bad_conditions_are_one_line_errors_naming_the_task(spec: str, fragment: str) -> None:
    with pytest.raises(MmoeError) as error:
        parse_task_spec(spec)
    message = str(error.value)
    assert fragment in message and "\n" not in message and message.startswith(f"task spec {spec!r}")


def test_task_objects_are_checked_as_specs_are() -> None:
    with pytest.raises(MmoeError, match="task 'p': given='click' on a regression task"):
        Task("p", "regression", given="click")
    estimator = MultiTaskEstimator(tasks=[Task("purchase", "binary", given="click"), Task("click", "binary")])
    with pytest.raises(MmoeError, match="option tasks: task 'purchase': given='click' names a later task"):
        estimator._task_list()
    mapping = MultiTaskEstimator(tasks={"click": "binary", "purchase": "binary:given=click"})
    assert mapping._task_list() == TASKS
    assert MultiTaskEstimator(tasks=SPEC)._task_list() == TASKS


# -- labels, predictions, metrics ----------------------------------------------------------------------
def test_conditional_and_joint_labels() -> None:
    # Rows: clicked+bought, clicked+not, clicked+unknown, not clicked (no label), not clicked but a
    # purchase label anyway (dropped: the condition does not hold), click unknown.
    labels = torch.tensor([[1, 1], [1, 0], [1, NAN], [0, NAN], [0, 1], [NAN, 0]])
    conditional = conditional_labels(TASKS, labels)
    joint = conditional_labels(TASKS, labels, entire_space=True)
    torch.testing.assert_close(conditional[:, 0], labels[:, 0], equal_nan=True)
    torch.testing.assert_close(conditional[:, 1], torch.tensor([1, 0, NAN, NAN, NAN, NAN]), equal_nan=True)
    torch.testing.assert_close(joint[:, 1], torch.tensor([1, 0, NAN, 0, 0, NAN]), equal_nan=True)
    # Turning is idempotent (the trainer turns a batch before sharing it, the loss again).
    torch.testing.assert_close(conditional_labels(TASKS, joint, entire_space=True), joint, equal_nan=True)
    torch.testing.assert_close(conditional_labels(TASKS, conditional), conditional, equal_nan=True)
    # No conditional task: the labels themselves.
    plain = [Task("click", "binary"), Task("purchase", "binary")]
    assert conditional_labels(plain, labels) is labels


def test_the_joint_prediction_is_the_product_of_the_two_probabilities() -> None:
    outputs = torch.randn(50, 2, generator=torch.Generator().manual_seed(0)) * 3
    predictions = to_predictions(TASKS, outputs)
    assert predictions.shape == (50, 3)
    torch.testing.assert_close(predictions[:, :2], torch.sigmoid(outputs))
    assert torch.equal(predictions[:, 2], predictions[:, 0] * predictions[:, 1])  # exactly, in float32
    assert bool((predictions[:, 2] <= predictions[:, 0]).all())


def test_metrics_are_computed_on_the_right_rows() -> None:
    """Hand-made: purchase's AUC on the 4 clicked rows with a label is 1/4 (with the non-clicked row
    whose purchase label is 0 it would be 3/6); the joint AUC on all 6 rows is 5/8; click's is 1."""
    p_click = [0.8, 0.9, 0.4, 0.3, 0.2, 0.5]
    p_purchase = [0.6, 0.5, 0.7, 0.9, 0.1, 0.4]
    labels = torch.tensor([[1, 1], [1, 0], [1, 0], [0, NAN], [0, 0], [1, 1]])
    outputs = torch.tensor([[logit(c), logit(p)] for c, p in zip(p_click, p_purchase)])
    metrics = evaluate_predictions(TASKS, to_predictions(TASKS, outputs), labels)
    assert list(metrics) == ["click", "purchase", "click&purchase"]
    assert metrics["click"]["auc"] == pytest.approx(1.0) and metrics["click"]["rows"] == 6
    assert metrics["purchase"]["auc"] == pytest.approx(0.25) and metrics["purchase"]["rows"] == 4
    assert metrics["click&purchase"]["auc"] == pytest.approx(5 / 8) and metrics["click&purchase"]["rows"] == 6
    joint = np.array(p_click) * np.array(p_purchase)
    y = np.array([1, 0, 0, 0, 0, 1])
    logloss = -np.mean(y * np.log(joint) + (1 - y) * np.log(1 - joint))
    assert metrics["click&purchase"]["logloss"] == pytest.approx(logloss, rel=1e-6)
    # Predictions without the joint column are completed; the stacked (population) path agrees.
    assert evaluate_predictions(TASKS, to_predictions(TASKS, outputs)[:, :2], labels) == metrics
    stacked = evaluate_stacked([TASKS, TASKS], torch.stack([outputs, outputs]), torch.stack([labels, labels]))
    for replica in stacked:
        assert list(replica) == list(metrics)
        for name, values in metrics.items():
            for metric, value in values.items():
                assert replica[name][metric] == pytest.approx(value, rel=1e-9), (name, metric)  # type: ignore[literal-required]


# -- the loss ------------------------------------------------------------------------------------------
def bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_the_entire_space_loss_by_hand() -> None:
    """Three rows: clicked and bought, clicked and not, not clicked (no purchase label)."""
    o = [[0.5, -1.0], [2.0, 0.3], [-1.5, 1.2]]
    labels = torch.tensor([[1, 1], [1, 0], [0, NAN]])
    outputs = torch.tensor(o, requires_grad=True)
    sigma = [[1 / (1 + math.exp(-v)) for v in row] for row in o]
    click = (bce(sigma[0][0], 1) + bce(sigma[1][0], 1) + bce(sigma[2][0], 0)) / 3

    conditional, labelled = MultiTaskLoss(TASKS)(outputs, labels)
    assert conditional.tolist() == pytest.approx([click, (bce(sigma[0][1], 1) + bce(sigma[1][1], 0)) / 2], rel=1e-6)
    assert labelled.tolist() == [True, True]

    joint = [sigma[r][0] * sigma[r][1] for r in range(3)]
    entire, labelled = MultiTaskLoss(TASKS, entire_space=True)(outputs, labels)
    expected = (bce(joint[0], 1) + bce(joint[1], 0) + bce(joint[2], 0)) / 3  # every row: y = click ∧ purchase
    assert entire.tolist() == pytest.approx([click, expected], rel=1e-6)
    # The joint loss reaches the click output too (ESMM's shared learning), the conditional loss does not.
    (gradient,) = torch.autograd.grad(entire[1], outputs)
    assert bool((gradient[:, 0] != 0).all())
    (gradient,) = torch.autograd.grad(conditional[1], outputs)
    assert bool((gradient[:, 0] == 0).all())
    # Without a conditional task, or off, the loss is the plain one.
    plain = [Task("click", "binary"), Task("purchase", "binary")]
    torch.testing.assert_close(MultiTaskLoss(plain, entire_space=True)(outputs, labels)[0], conditional)


def test_escm2s_counterfactual_term_by_hand() -> None:
    """ESCM²'s IPW term: on clicked rows, purchase's own BCE over the predicted click probability
    (clipped at MAX_IPW_WEIGHT, no gradient), averaged over every row with the joint loss."""
    o = [[0.5, -1.0], [-3.5, 0.3], [-1.5, 1.2], [2.0, 0.7]]  # row 2: P(click) = .029, weight clipped
    labels = torch.tensor([[1, 1], [1, 0], [0, NAN], [0, NAN]])
    outputs = torch.tensor(o, requires_grad=True)
    sigma = [[1 / (1 + math.exp(-v)) for v in row] for row in o]
    joint = [sigma[r][0] * sigma[r][1] for r in range(4)]
    global_loss = (bce(joint[0], 1) + bce(joint[1], 0) + bce(joint[2], 0) + bce(joint[3], 0)) / 4
    weights = [min(1 / sigma[0][0], MAX_IPW_WEIGHT), min(1 / sigma[1][0], MAX_IPW_WEIGHT)]
    assert weights[1] == MAX_IPW_WEIGHT
    counterfactual = (weights[0] * bce(sigma[0][1], 1) + weights[1] * bce(sigma[1][1], 0)) / 4
    losses, _ = MultiTaskLoss(TASKS, entire_space=True, counterfactual_weight=0.5)(outputs, labels)
    click = sum(bce(sigma[r][0], labels[r, 0].item()) for r in range(4)) / 4
    assert losses.tolist() == pytest.approx([click, global_loss + 0.5 * counterfactual], rel=1e-6)
    # The propensity carries no gradient: the term reaches the purchase output only, on clicked rows.
    plain, _ = MultiTaskLoss(TASKS, entire_space=True)(outputs, labels)
    (gradient,) = torch.autograd.grad(losses[1] - plain[1], outputs)
    assert bool((gradient[:, 0] == 0).all()) and bool((gradient[2:, 1] == 0).all())
    assert bool((gradient[:2, 1] != 0).all())
    # Only with entire-space training: otherwise it is an error, not silently ignored.
    spec = InputSpec(("a",), (), ())
    with pytest.raises(MmoeError, match=r"counterfactual_weight \(0.5\) adds ESCM²'s term .* --entire-space"):
        resolve_loss_options(None, 0.5, build_model("mmoe", spec, 2), TASKS)
    assert resolve_loss_options(None, 0.5, build_model("esmm", spec, 2), TASKS) == (True, 0.5)
    with pytest.raises(MmoeError, match="training option counterfactual_weight must be a finite number"):
        TrainConfig(counterfactual_weight=-1.0)
    assert "counterfactual_weight" not in TrainConfig().to_dict()


def test_the_entire_space_loss_is_finite_at_extreme_logits() -> None:
    outputs = torch.tensor([[60.0, 60.0], [-200.0, 3.0], [40.0, -200.0], [30.0, 30.0]], requires_grad=True)
    labels = torch.tensor([[1, 0], [0, NAN], [1, 0], [1, 1]])
    losses, _ = MultiTaskLoss(TASKS, entire_space=True)(outputs, labels)
    assert bool(losses.isfinite().all())
    (gradient,) = torch.autograd.grad(losses.sum(), outputs)
    assert bool(gradient.isfinite().all())
    # The first row predicts a sure purchase that did not happen: clamped at -log(1e-7), not inf.
    assert losses[1].item() == pytest.approx(
        (-math.log(1e-7) + 0 + F.softplus(torch.tensor(-200.0)).item()) / 4, rel=1e-2
    )


@pytest.mark.parametrize("counterfactual_weight", [0.0, 0.7])
def test_the_stacked_loss_matches_each_replica(counterfactual_weight: float) -> None:
    outputs = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[1, 1], [1, 0], [0, NAN], [0, 1], [1, NAN], [0, NAN], [1, 0], [0, NAN]]).expand(3, -1, -1)
    options = {"entire_space": True, "counterfactual_weight": counterfactual_weight}
    stacked, _ = MultiTaskLoss.stacked([TASKS] * 3, **options)(outputs, labels)
    for r in range(3):
        torch.testing.assert_close(stacked[r], MultiTaskLoss(TASKS, **options)(outputs[r], labels[r])[0])


@pytest.mark.parametrize("entire_space, counterfactual_weight", [(False, 0.0), (True, 0.0), (True, 0.5)])
def test_rank_shares_sum_to_the_global_batch_loss(entire_space: bool, counterfactual_weight: float) -> None:
    """As tests/test_distributed.py: the ranks' losses and gradients sum to the global batch's, with
    purchase labels also on non-clicked rows (dropped, or 0 in the joint label), so that the counts
    each mean divides by differ from the raw labels' counts."""
    torch.manual_seed(0)
    model = build_model("mmoe", InputSpec(("a", "b"), ("colour",), (4,)), 2, num_experts=2, expert_units=4)
    loss_fn, weighting = MultiTaskLoss(TASKS, entire_space, counterfactual_weight), make_weighting("ew", 2, None)
    rows = 13
    click = torch.randint(0, 2, (rows,)).float()
    labels = torch.stack([click, torch.randint(0, 2, (rows,)).float()], 1)
    labels[torch.arange(rows) % 4 == 1, 1] = NAN
    batch = Split(torch.randn(rows, 2), torch.randint(0, 4, (rows, 1)), labels)
    model.zero_grad()
    per_task, labelled = loss_fn(model(batch.numeric, batch.categorical), batch.labels)
    loss = weighting.backward(per_task, labelled, list(model.parameters()), None)
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    total = torch.zeros(())
    for rank in range(3):
        parallel = DataParallel(rank, 3, torch.device("cpu"), grouped=True)
        share, counts = parallel.share(loss_fn.with_loss_labels(batch))  # as the trainer does
        rank_per_task, rank_labelled = loss_fn(model(share.numeric, share.categorical), share.labels, counts)
        total = total + weighting.backward(rank_per_task, rank_labelled, list(model.parameters()), None)
    torch.testing.assert_close(total, loss, rtol=1e-6, atol=1e-7)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-7, msg=name)


# -- the option ----------------------------------------------------------------------------------------
def test_entire_space_option() -> None:
    spec = InputSpec(("a",), (), ())
    mmoe, esmm = build_model("mmoe", spec, 2), build_model("esmm", spec, 2)
    plain = [Task("click", "binary"), Task("purchase", "binary")]
    assert resolve_entire_space(None, mmoe, TASKS) is False
    assert resolve_entire_space(True, mmoe, TASKS) is True
    assert resolve_entire_space(None, esmm, TASKS) is True
    assert resolve_entire_space(False, esmm, TASKS) is False
    assert resolve_entire_space(None, esmm, plain) is False  # nothing to train entire-space
    with pytest.raises(MmoeError, match="training option entire_space .* none of the tasks \\(click, purchase\\)"):
        resolve_entire_space(True, mmoe, plain)
    with pytest.raises(MmoeError, match="training option entire_space must be True, False or None"):
        TrainConfig(entire_space="yes")  # type: ignore[arg-type]
    # Unset, the option is left out of config.json and checkpoint identities (as before it existed).
    assert "entire_space" not in TrainConfig().to_dict()
    assert TrainConfig(entire_space=True).to_dict()["entire_space"] is True


def test_entire_space_changes_training_and_only_with_a_conditional_task() -> None:
    data = tensor_data()
    options = {"epochs": 2, "batch_size": 64, "patience": 0}
    off = fit(data, "mmoe", TrainConfig(**options), num_experts=2, expert_units=(8,))
    default = fit(data, "mmoe", TrainConfig(**options, entire_space=False), num_experts=2, expert_units=(8,))
    on = fit(data, "mmoe", TrainConfig(**options, entire_space=True), num_experts=2, expert_units=(8,))
    assert off.history[-1]["train_loss"] == default.history[-1]["train_loss"]
    assert on.history[-1]["train_loss"] != off.history[-1]["train_loss"]
    test = on.metrics["test"]
    assert list(test) == ["click", "purchase", "click&purchase"]
    labels = data.test.labels
    assert test["click&purchase"]["rows"] == len(data.test)
    assert test["purchase"]["rows"] == int(((labels[:, 0] == 1) & ~labels[:, 1].isnan()).sum())
    assert on.history[-1]["validation"].keys() == test.keys()


# -- every way of training -----------------------------------------------------------------------------
@pytest.mark.parametrize("model, counterfactual_weight", [("mmoe", 0.0), ("esmm", 0.0), ("esmm", 0.5)])
def test_population_replicas_equal_their_runs_alone(model: str, counterfactual_weight: float) -> None:
    data = tensor_data()
    seeds, rates = [3, 5], [1e-3, 1e-2]
    options = {
        "epochs": 3,
        "batch_size": 64,
        "patience": 2,
        "entire_space": True,
        "counterfactual_weight": counterfactual_weight,
    }
    hyper = {"tower_units": (16, 8)} if model == "esmm" else {"num_experts": 2, "expert_units": (8,)}
    population = train_population(model, data, TrainConfig(**options), seeds=seeds, learning_rates=rates, **hyper)
    for replica, state, seed, rate in zip(population.replicas, population.state_dicts, seeds, rates):
        alone = fit(data, model, TrainConfig(**options, seed=seed, learning_rate=rate), **hyper)
        assert replica.best_epoch == alone.best_epoch
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5)
        for split in ("validation", "test"):
            assert list(replica.metrics[split]) == list(alone.metrics[split])
            for task, metrics in alone.metrics[split].items():
                for metric, value in metrics.items():
                    tolerance = 2e-3 if metric == "auc" else 1e-5
                    assert replica.metrics[split][task][metric] == pytest.approx(value, rel=1e-4, abs=tolerance)


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    data = tensor_data()
    config = {"patience": 0, "batch_size": 64, "seed": 3, "entire_space": True}
    hyper = {"num_experts": 2, "expert_units": (8,)}
    full = fit(data, "mmoe", TrainConfig(epochs=4, **config), **hyper)
    checkpoint = tmp_path / "checkpoint.pt"
    fit(data, "mmoe", TrainConfig(epochs=2, **config), checkpoint_path=checkpoint, **hyper)
    resumed = fit(
        data, "mmoe", TrainConfig(epochs=4, **config), checkpoint_path=checkpoint, resume_from=checkpoint, **hyper
    )
    assert resumed.metrics == full.metrics
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in full.history]
    # Another entire_space is another run.
    with pytest.raises(MmoeError, match="training.entire_space: True in the checkpoint, False now"):
        fit(data, "mmoe", TrainConfig(epochs=4, **{**config, "entire_space": False}), resume_from=checkpoint, **hyper)


# -- the estimator, the CLI, predict and export --------------------------------------------------------
def test_estimator_predicts_both_and_saves_and_loads_the_condition(tmp_path: Path) -> None:
    train, rows = click_frame(800, seed=0), click_frame(60, seed=1)
    estimator = MultiTaskEstimator(
        "mmoe", SPEC, num_experts=2, expert_units=8, epochs=2, batch_size=64, entire_space=True, test_fraction=None
    )
    estimator.fit(train)
    assert estimator.tasks_ == TASKS
    predicted = estimator.predict(rows)
    assert list(predicted.columns) == ["click", "purchase", "click&purchase"]
    np.testing.assert_array_equal(
        predicted["click&purchase"].to_numpy(), (predicted["click"] * predicted["purchase"]).to_numpy(np.float32)
    )
    score = estimator.score(rows)
    assert score["click&purchase"]["rows"] == len(rows)
    assert score["purchase"]["rows"] == int(rows["click"].sum())
    # Purchase labels present on non-clicked rows too: they do not count for the conditional task.
    everywhere = click_frame(60, seed=1, purchase_everywhere=True)
    assert estimator.score(everywhere) == score

    estimator.save(tmp_path / "run")
    loaded = MultiTaskEstimator.load(tmp_path / "run")
    assert loaded.tasks_ == TASKS and loaded.entire_space is True
    assert loaded.tasks == {"click": "binary", "purchase": "binary:given=click"}
    pd.testing.assert_frame_equal(loaded.predict(rows), predicted)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["training"]["entire_space"] is True
    assert config["dataset"]["tasks"] == SPEC


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("conditional")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    click_frame(900, seed=0).to_csv(root / "train.csv", index=False)
    click_frame(50, seed=1).drop(columns=["click", "purchase"]).to_csv(root / "rows.csv", index=False)
    code = main(
        ["train", "--data", str(root / "train.csv"), "--tasks", SPEC, "--model", "mmoe", "--num-experts", "2"]
        + ["--expert-units", "8", "--epochs", "2", "--batch-size", "64", "--entire-space", "--quiet"]
        + ["--out", str(root / "run")]
    )
    torch.set_num_threads(threads)
    assert code == 0
    return {"root": root, "run": root / "run", "rows": root / "rows.csv"}


def test_cli_trains_predicts_and_evaluates_both(cli_run: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    metrics = json.loads((cli_run["run"] / "metrics.json").read_text())
    assert list(metrics["test"]) == ["click", "purchase", "click&purchase"]
    assert json.loads((cli_run["run"] / "config.json").read_text())["training"]["entire_space"] is True
    out = cli_run["root"] / "predicted.csv"
    assert main(["predict", str(cli_run["run"]), "--data", str(cli_run["rows"]), "--out", str(out)]) == 0
    predicted = pd.read_csv(out)
    assert list(predicted.columns) == ["click", "purchase", "click&purchase"]
    np.testing.assert_allclose(predicted["click&purchase"], predicted["click"] * predicted["purchase"], rtol=1e-5)
    capsys.readouterr()
    assert main(["evaluate", str(cli_run["run"])]) == 0
    assert "click&purchase" in capsys.readouterr().out


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_export_serves_the_joint_probability_as_predict_does(
    cli_run: dict[str, Path], format: str, tmp_path: Path
) -> None:
    from mmoe.export import encode_inputs, export_run, load_signature
    from mmoe.predict import predict_frame

    if format == "onnx":
        pytest.importorskip("onnxscript")
        onnxruntime = pytest.importorskip("onnxruntime")
    file = export_run(cli_run["run"], tmp_path / f"model.{'onnx' if format == 'onnx' else 'pt'}", format)
    signature = load_signature(file)
    assert signature["outputs"][0]["columns"] == ["click", "purchase", "click&purchase"]
    assert signature["outputs"][0]["shape"] == ["batch", 3]
    rows = pd.read_csv(cli_run["rows"])
    inputs = encode_inputs(rows, signature)
    if format == "onnx":
        session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        got = session.run(["predictions"], inputs)[0]
    else:
        got = torch.jit.load(str(file))(*(torch.from_numpy(a) for a in inputs.values())).numpy()
    expected = predict_frame(Run.load(cli_run["run"]), rows)
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-4, atol=1e-6)


def test_streaming_training_predict_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A Parquet table read in batches: the conditional task trains entire-space, and the streamed
    predictions and metrics equal the in-memory commands'."""
    click_frame(900, seed=0).to_parquet(tmp_path / "train.parquet", index=False)
    click_frame(80, seed=1).to_parquet(tmp_path / "rows.parquet", index=False)
    run = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "train.parquet"), "--streaming", "--tasks", SPEC, "--model", "mmoe"]
    argv += ["--num-experts", "2", "--expert-units", "8", "--epochs", "2", "--batch-size", "64", "--entire-space"]
    assert main([*argv, "--quiet", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["test"]) == ["click", "purchase", "click&purchase"]
    rows = tmp_path / "rows.parquet"
    for streaming in (["--streaming"], []):
        out = tmp_path / f"predicted{len(streaming)}.csv"
        assert main(["predict", str(run), "--data", str(rows), *streaming, "--keep", "x2", "--out", str(out)]) == 0
    streamed, memory = pd.read_csv(tmp_path / "predicted1.csv"), pd.read_csv(tmp_path / "predicted0.csv")
    assert list(streamed.columns) == ["x2", "click", "purchase", "click&purchase"]
    pd.testing.assert_frame_equal(streamed, memory)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(rows), "--streaming", "--json"]) == 0
    streamed_metrics = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(run), "--data", str(rows), "--json"]) == 0
    memory_metrics = json.loads(capsys.readouterr().out)
    assert list(streamed_metrics) == ["click", "purchase", "click&purchase"]
    for task, values in memory_metrics.items():
        assert streamed_metrics[task] == pytest.approx(values, rel=1e-6)
    assert streamed_metrics["purchase"]["rows"] == int(pd.read_parquet(rows)["click"].sum())
