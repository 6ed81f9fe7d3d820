"""evaluate_stacked: many replicas' metrics at once, the same as the per-replica reference."""

from __future__ import annotations

import math

import pytest
import torch

from mmoe.data.dataset import Task
from mmoe.train.metrics import evaluate_predictions, evaluate_stacked, to_predictions


def reference(task_lists: list[list[Task]], outputs: torch.Tensor, labels: torch.Tensor) -> list[dict[str, dict]]:
    return [
        evaluate_predictions(tasks, to_predictions(tasks, outputs[r]), labels[r]) for r, tasks in enumerate(task_lists)
    ]


def assert_same(got: list[dict[str, dict]], expected: list[dict[str, dict]]) -> None:
    """Same replicas, tasks and metric names in the same order; "rows" identical ints; None in the
    same places; numbers equal to float64 rounding."""
    assert len(got) == len(expected)
    for replica, (ours, theirs) in enumerate(zip(got, expected)):
        assert list(ours) == list(theirs)
        for task in theirs:
            assert list(ours[task]) == list(theirs[task])
            for name, value in theirs[task].items():
                where = f"replica {replica}, task {task}, {name}"
                if name == "rows":
                    assert type(ours[task][name]) is int and ours[task][name] == value, where
                elif value is None:
                    assert ours[task][name] is None, where
                else:
                    assert type(ours[task][name]) is float, where
                    assert ours[task][name] == pytest.approx(value, rel=1e-9, abs=1e-12), where


def two_tasks(replicas: int) -> list[list[Task]]:
    """A binary and a regression task; each replica has its own regression label scale."""
    return [
        [Task("click", "binary"), Task("spend", "regression", label_mean=10.0 + 3.7 * r, label_std=0.5 + 1.3 * r)]
        for r in range(replicas)
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_with_ties_missing_labels_and_degenerate_replicas(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    replicas, rows = 5, 300
    task_lists = two_tasks(replicas)
    outputs = torch.randn(replicas, rows, 2, generator=generator) * 3
    outputs[:, :, 0] = outputs[:, :, 0].round()  # few distinct logits: many tied scores
    outputs[:, :5, 0] = 40.0  # sigmoid == 1 in float32: tied by the 1 - 1e-7 clip
    outputs[:, 5:10, 0] = -40.0  # clipped at 1e-7
    labels = torch.empty(replicas, rows, 2)
    labels[..., 0] = torch.randint(0, 2, (replicas, rows), generator=generator).float()
    labels[..., 1] = torch.randn(replicas, rows, generator=generator) * 4 + 10
    labels[torch.rand(replicas, rows, generator=generator) < 0.1] = math.nan  # both tasks missing
    labels[torch.rand(replicas, rows, generator=generator) < 0.1, 0] = math.nan
    labels[torch.rand(replicas, rows, generator=generator) < 0.1, 1] = math.nan
    labels[1, :, 0] = torch.where(labels[1, :, 0].isnan(), math.nan, 1.0)  # one class: AUC None
    labels[2, :, 1] = torch.where(labels[2, :, 1].isnan(), math.nan, 7.25)  # constant label, imperfect fit: r2 0.0
    # Constant label fitted exactly (outputs 0 -> the label mean, in float32 as the label): r2 1.0.
    outputs[3, :, 1] = 0.0
    labels[3, :, 1] = torch.where(labels[3, :, 1].isnan(), math.nan, task_lists[3][1].label_mean)

    expected = reference(task_lists, outputs, labels)
    assert expected[1]["click"]["auc"] is None
    assert expected[2]["spend"]["r2"] == 0.0 and expected[3]["spend"]["r2"] == 1.0
    assert_same(evaluate_stacked(task_lists, outputs, labels), expected)


def test_matches_reference_without_missing_labels_and_with_shared_labels() -> None:
    """The population's shared-data case: one label table expanded (stride 0) over the replicas."""
    generator = torch.Generator().manual_seed(3)
    replicas, rows = 5, 300
    task_lists = two_tasks(replicas)
    outputs = torch.randn(replicas, rows, 2, generator=generator)
    labels = torch.stack(
        [torch.randint(0, 2, (rows,), generator=generator).float(), torch.randn(rows, generator=generator) * 2 + 15], 1
    ).expand(replicas, -1, -1)
    assert_same(evaluate_stacked(task_lists, outputs, labels), reference(task_lists, outputs, labels))


def test_single_binary_task() -> None:
    """K = 1: each replica's column is contiguous, where torch's sigmoid takes its SIMD path."""
    generator = torch.Generator().manual_seed(4)
    task_lists = [[Task("click", "binary")] for _ in range(5)]
    outputs = torch.randn(5, 301, 1, generator=generator) * 2
    labels = torch.randint(0, 2, (5, 301, 1), generator=generator).float()
    assert_same(evaluate_stacked(task_lists, outputs, labels), reference(task_lists, outputs, labels))


def test_too_few_present_labels() -> None:
    """No present label: every metric None and rows 0; one present label: mse but no r2, and
    no AUC from a single class."""
    generator = torch.Generator().manual_seed(5)
    task_lists = two_tasks(3)
    outputs = torch.randn(3, 20, 2, generator=generator)
    labels = torch.stack(
        [torch.randint(0, 2, (3, 20), generator=generator).float(), torch.randn(3, 20, generator=generator)], 2
    )
    labels[0] = math.nan
    labels[1, 1:] = math.nan
    got = evaluate_stacked(task_lists, outputs, labels)
    assert got[0] == {"click": {"auc": None, "logloss": None, "rows": 0}, "spend": {"mse": None, "r2": None, "rows": 0}}
    assert got[1]["click"]["auc"] is None and got[1]["spend"]["r2"] is None and got[1]["spend"]["rows"] == 1
    assert_same(got, reference(task_lists, outputs, labels))


def test_rejects_replicas_with_different_tasks() -> None:
    outputs = torch.zeros(2, 4, 2)
    with pytest.raises(ValueError, match="same task names and kinds"):
        evaluate_stacked([two_tasks(1)[0], [Task("click", "binary"), Task("other", "regression")]], outputs, outputs)
    with pytest.raises(ValueError, match="task lists"):
        evaluate_stacked(two_tasks(3), outputs, outputs)
