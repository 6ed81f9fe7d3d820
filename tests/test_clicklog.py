"""The click-log generator: determinism, the ids it promises, the label convention, the Bayes AUCs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mmoe.data.clicklog import ClickLogConfig, auc, generate_clicklog, main, write_clicklog
from mmoe.errors import MmoeError

SMALL = ClickLogConfig(rows=40_000, users=8_000, items=1_000, seed=3)


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    return generate_clicklog(SMALL, probabilities=True)


def test_same_seed_same_log_and_another_seed_another(small):
    train, test, info = small
    again_train, again_test, again_info = generate_clicklog(SMALL, probabilities=True)
    pd.testing.assert_frame_equal(train, again_train)
    pd.testing.assert_frame_equal(test, again_test)
    assert info["bayes_auc"] == again_info["bayes_auc"]
    other, _, _ = generate_clicklog(ClickLogConfig(rows=40_000, users=8_000, items=1_000, seed=4))
    assert not np.array_equal(train["user_id"].to_numpy(), other["user_id"].to_numpy())


def test_relatedness_changes_only_purchase(small):
    train, _, _ = small
    other, _, _ = generate_clicklog(
        ClickLogConfig(rows=40_000, users=8_000, items=1_000, seed=3, purchase_relatedness=1.0), probabilities=True
    )
    features = [c for c in train.columns if c not in ("purchase", "p_purchase")]
    pd.testing.assert_frame_equal(train[features], other[features])
    assert not np.allclose(train["p_purchase"], other["p_purchase"])
    # r = 1: purchase's logit is click's driver with another intercept, so the two rank rows alike.
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    difference = logit(other["p_purchase"].to_numpy(np.float64)) - logit(other["p_click"].to_numpy(np.float64))
    assert np.allclose(difference, SMALL.purchase_intercept - SMALL.click_intercept, atol=1e-3)


def test_rows_split_and_every_id_appears(small):
    train, test, info = small
    assert len(train) == SMALL.train_rows == 32_000 and len(test) == SMALL.test_rows == 8_000
    for column, count in (("user_id", SMALL.users), ("item_id", SMALL.items)):
        both = np.concatenate([train[column].to_numpy(), test[column].to_numpy()])
        assert set(np.unique(both)) == set(range(count))  # every id once at least, nothing else
        # In training: all but the ids seen only in the test part (documented: approximately `count`).
        assert 0.75 * count <= info["distinct"]["train"][column] <= count
        assert info["distinct"]["train"][column] == train[column].nunique()


def test_purchase_labelled_only_where_clicked(small):
    train, test, info = small
    for frame in (train, test):
        clicked = frame["click"] == 1
        assert set(frame["click"].unique()) == {0, 1}
        assert frame.loc[~clicked, "purchase"].isna().all()
        assert set(frame.loc[clicked, "purchase"].unique()) == {0.0, 1.0}
    assert 0.05 < info["rates"]["train"]["click"] < 0.5
    assert 0.05 < info["rates"]["train"]["purchase_given_click"] < 0.8


def test_bayes_auc_is_sklearns_auc_of_the_true_probabilities(small):
    _, test, info = small
    clicked = test["click"] == 1
    assert info["bayes_auc"]["click"] == pytest.approx(roc_auc_score(test["click"], test["p_click"]), abs=1e-12)
    assert info["bayes_auc"]["purchase"] == pytest.approx(
        roc_auc_score(test.loc[clicked, "purchase"], test.loc[clicked, "p_purchase"]), abs=1e-12
    )
    both = (clicked & (test["purchase"] == 1)).astype(int)
    joint = test["p_click"].to_numpy(np.float64) * test["p_purchase"].to_numpy(np.float64)
    assert info["bayes_auc"]["click_and_purchase"] == pytest.approx(roc_auc_score(both, joint), abs=1e-12)
    # Far from chance and from perfect: there is something to learn and it cannot all be learnt.
    for value in info["bayes_auc"].values():
        assert 0.6 < value < 0.95


def test_auc_with_ties_equals_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.random(5_000) < 0.3
    scores = rng.integers(0, 20, 5_000).astype(float)  # many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(auc(np.zeros(4), np.arange(4.0)))


def test_power_law_popularity(small):
    _, _, info = small
    # Uniform ids would give the top 1% about 1% of the rows; Zipf(1.05) gives them far more.
    assert info["top_share"]["user_id"] > 0.25
    assert info["top_share"]["item_id"] > 0.25
    _, _, flat = generate_clicklog(ClickLogConfig(rows=40_000, users=8_000, items=1_000, zipf_exponent=0.0))
    assert flat["top_share"]["user_id"] < 0.05


def test_ids_as_text():
    train, _, _ = generate_clicklog(ClickLogConfig(rows=2_000, users=500, items=100, id_format="str"))
    numbers, _, _ = generate_clicklog(ClickLogConfig(rows=2_000, users=500, items=100))
    assert train["user_id"].iloc[0] == f"u{numbers['user_id'].iloc[0]}"
    assert train["item_id"].str.startswith("i").all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rows": 1_000, "users": 2_000}, "users=2,000 exceeds rows=1,000"),
        ({"items": 0}, "items must be >= 1"),
        ({"test_fraction": 1.0}, "test_fraction must be in (0, 1)"),
        ({"purchase_relatedness": 1.5}, "purchase_relatedness must be in [0, 1]"),
        ({"zipf_exponent": -1.0}, "zipf_exponent must be >= 0"),
        ({"id_format": "hex"}, "id_format must be one of int, str"),
        ({"rows": 2.5}, "rows must be an integer"),
        ({"interaction": float("nan")}, "interaction must be a finite number"),
        ({"user_effect": -0.1}, "user_effect (a standard deviation) must be >= 0"),
    ],
)
def test_bad_parameters_are_one_line_errors(options, message):
    with pytest.raises(MmoeError) as error:
        ClickLogConfig(**{"rows": 10_000, "users": 100, "items": 100, **options})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_write_and_cli(tmp_path, capsys):
    config = ClickLogConfig(rows=3_000, users=300, items=50, seed=1)
    info = write_clicklog(config, tmp_path / "a")
    train, test, _ = generate_clicklog(config)
    read = pd.read_parquet(tmp_path / "a" / "train.parquet")
    pd.testing.assert_frame_equal(read, train)
    assert len(pd.read_parquet(tmp_path / "a" / "test.parquet")) == len(test)
    assert json.loads((tmp_path / "a" / "info.json").read_text())["bayes_auc"] == info["bayes_auc"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["info.json", "test.parquet", "train.parquet"]

    assert main(["--rows", "3000", "--users", "300", "--items", "50", "--seed", "1", "--out", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["bayes_auc"] == info["bayes_auc"]
    assert main(["--rows", "100", "--users", "300", "--out", str(tmp_path / "c")]) == 2
    assert "users=300 exceeds rows=100" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_clicklog_data_set_trains_and_evaluates_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`mmoe train --dataset clicklog` trains on the generated log (the log's test part is the test
    split; purchase is scored where clicked) and `mmoe evaluate RUN` generates the same rows again."""
    from mmoe.cli import main as cli
    from mmoe.data import load_dataset

    run = tmp_path / "run"
    flags = ["--dataset", "clicklog", "--impressions", "6000", "--users", "400", "--items", "60"]
    assert (
        cli(
            [
                "train",
                *flags,
                "--one-hot",
                "user_id,item_id",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["kind"] == "clicklog" and config["dataset"]["config"]["rows"] == 6000
    data = load_dataset(config["dataset"])
    assert len(data.test) == 1200 and data.task_names == ["click", "purchase"]
    # purchase follows click: the run scores the entire-space click ∧ purchase too; a description
    # written before that (no "conditional") loads the two plain tasks it was trained on.
    assert config["dataset"]["conditional"] is True and data.tasks[1].given == "click"
    assert "click&purchase" in json.loads((run / "metrics.json").read_text())["test"]
    old = {key: value for key, value in config["dataset"].items() if key != "conditional"}
    assert load_dataset(old).tasks[1].given is None
    assert set(data.info["bayes_auc"]) == {"click", "purchase", "click_and_purchase"}
    clicked = data.test.labels[:, 0] == 1
    assert torch.isnan(data.test.labels[~clicked, 1]).all() and not torch.isnan(data.test.labels[clicked, 1]).any()
    capsys.readouterr()
    assert cli(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((run / "metrics.json").read_text())["test"]
