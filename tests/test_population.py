"""Population training: every replica equals the same run trained alone."""

from __future__ import annotations

import pytest
import torch

from mmoe.errors import MmoeError
from mmoe.runs import fit
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig
from tests.conftest import toy_data


@pytest.mark.parametrize(
    "model", ["mmoe", "omoe", "shared-bottom", "l2-constrained", "cross-stitch", "single-task", "tensor-factorization"]
)
def test_each_replica_equals_its_run_alone(model: str) -> None:
    seeds, rates = [3, 5, 11], [1e-3, 1e-2, 3e-3]
    options = {"epochs": 4, "batch_size": 64, "patience": 2}
    population = train_population(model, toy_data(), TrainConfig(**options), seeds=seeds, learning_rates=rates)
    for replica, state, seed, rate in zip(population.replicas, population.state_dicts, seeds, rates):
        alone = fit(toy_data(), model, TrainConfig(**options, seed=seed, learning_rate=rate))
        assert replica.best_epoch == alone.best_epoch
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5)
        for split in ("validation", "test"):
            for task, metrics in alone.metrics[split].items():
                for metric, value in metrics.items():
                    # AUC may differ by one swapped near-tie (float rounding): 1/(positives·negatives).
                    tolerance = 2e-3 if metric == "auc" else 1e-5
                    assert replica.metrics[split][task][metric] == pytest.approx(value, rel=1e-4, abs=tolerance)


def test_replicas_with_their_own_data_equal_their_runs_alone() -> None:
    datasets = [toy_data(seed=1), toy_data(seed=2)]
    options = {"epochs": 3, "batch_size": 64, "patience": 0}
    population = train_population("mmoe", datasets, TrainConfig(**options), seeds=[0, 1])
    for replica, data, seed in zip(population.replicas, datasets, [0, 1]):
        alone = fit(data, "mmoe", TrainConfig(**options, seed=seed))
        # AUC is a rank statistic: float rounding may swap a near-tie, so compare the log loss.
        assert replica.metrics["test"]["clicked"]["logloss"] == pytest.approx(
            alone.metrics["test"]["clicked"]["logloss"], rel=1e-4
        )
        assert replica.metrics["test"]["watch_time"]["mse"] == pytest.approx(
            alone.metrics["test"]["watch_time"]["mse"], rel=1e-4
        )
        assert [h["train_loss"] for h in replica.history] == pytest.approx(
            [h["train_loss"] for h in alone.history], rel=1e-5
        )


def test_population_rejects_mismatched_options() -> None:
    with pytest.raises(MmoeError, match="one positive learning rate per replica"):
        train_population("mmoe", toy_data(), TrainConfig(epochs=1), seeds=[0, 1], learning_rates=[1e-3])
    with pytest.raises(MmoeError, match="at least one replica"):
        train_population("mmoe", toy_data(), TrainConfig(epochs=1), seeds=[])


@pytest.mark.parametrize("sparse_optimizer", ["lazy-adam", "row-adagrad", "dense"])
def test_replicas_with_an_embedded_column_equal_their_runs_alone(sparse_optimizer: str) -> None:
    """Each replica updates only the embedding rows its own batches looked up (lazy Adam,
    row-wise AdaGrad), as its run alone does with its sparse gradients."""
    from tests.test_embeddings import embedded_data

    data = embedded_data(rows=500, users=400)
    seeds, rates = [3, 5], [1e-2, 1e-2]
    options = {"epochs": 3, "batch_size": 64, "patience": 0, "sparse_optimizer": sparse_optimizer}
    population = train_population("mmoe", data, TrainConfig(**options), seeds=seeds, learning_rates=rates)
    for replica, state, seed in zip(population.replicas, population.state_dicts, seeds):
        alone = fit(data, "mmoe", TrainConfig(**options, seed=seed, learning_rate=1e-2))
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5)
        assert [h["train_loss"] for h in replica.history] == pytest.approx(
            [h["train_loss"] for h in alone.history], rel=1e-5
        )
