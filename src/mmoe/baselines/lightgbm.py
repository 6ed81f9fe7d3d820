"""LightGBM, one booster per task: the baseline a multi-task model has to beat.

Each task's booster trains on the training rows that have its label (a missing label leaves the row
out of that task only) and stops early on the validation rows that have it: the main metric of
the task (AUC for a binary task, L2 for a regression task; log loss when the validation labels
hold one class), `early_stopping_rounds` rounds without a better value ending it, the best round
kept. The inputs are mmoe's encoded columns: the standardised numeric columns (a tree does not
care for the scale) and each categorical column's code as a LightGBM categorical feature, so
that LightGBM sees the splits, the vocabularies (min_frequency, max_categories, hashing) and the
unseen-value slot the neural models see.

Deterministic: the same seed, data and options give the same trees (LightGBM's deterministic
mode, column-wise histograms; 1 and 2 threads measured identical). At its defaults nothing is
sampled, so the seed changes nothing unless the binning samples rows (more than 200,000 of them).

The boosters are saved in LightGBM's own text format, one file per task (booster-K.txt, K the
task's position), and hold the trees up to the best round only, so that a loaded run predicts
exactly as the fitted one. A regression task's booster is trained on the standardised label,
(y - label_mean) / label_std with the task's moments in config.json, and predicts it: the neural
models' output, which `mmoe predict` turns back into the label's units.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import torch

from mmoe.baselines.base import (
    Baseline,
    categorical_features,
    check_single_valued,
    feature_matrix,
    parts,
    task_rows,
)
from mmoe.data.dataset import MultiTaskData, RowSource, Split
from mmoe.errors import MmoeError
from mmoe.io import atomic_write_text
from mmoe.models.base import check_positive
from mmoe.models.options import Help
from mmoe.spec import InputSpec

INSTALL_HINT = "pip install 'mmoe[lightgbm]'"
PREDICT_ROWS = 65_536  # rows per prediction call: a float64 feature matrix of this many rows at a time


def _lightgbm() -> Any:
    """The lightgbm package, or a one-line MmoeError saying how to install it."""
    try:
        import lightgbm
    except ImportError:
        raise MmoeError(f"model lightgbm needs the package lightgbm, which is not installed; {INSTALL_HINT}") from None
    return lightgbm


class LightGBM(Baseline):
    """Baseline: one LightGBM booster per task (gradient-boosted trees), early-stopped on the validation split."""

    name = "lightgbm"
    package = "lightgbm"
    counterparts: ClassVar[dict[str, str]] = {
        "learning_rate": "boosting_learning_rate",
        "epochs": "max_rounds",
        "patience": "early_stopping_rounds",
    }

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        num_leaves: Annotated[int, Help("leaves per tree")] = 63,
        boosting_learning_rate: Annotated[
            float,
            Help("shrinkage of each tree, LightGBM's learning_rate (--learning-rate is the neural models' Adam's)"),
        ] = 0.05,
        max_rounds: Annotated[int, Help("most boosting rounds (trees) per task")] = 5000,
        early_stopping_rounds: Annotated[
            int, Help("stop a task's boosting after this many rounds without a better validation metric")
        ] = 50,
        min_data_in_leaf: Annotated[int, Help("fewest training rows in a leaf")] = 20,
    ) -> None:
        super().__init__(
            input_spec,
            num_tasks,
            num_leaves=check_positive(self.name, "num_leaves", num_leaves),
            boosting_learning_rate=check_positive(self.name, "boosting_learning_rate", boosting_learning_rate, float),
            max_rounds=check_positive(self.name, "max_rounds", max_rounds),
            early_stopping_rounds=check_positive(self.name, "early_stopping_rounds", early_stopping_rounds),
            min_data_in_leaf=check_positive(self.name, "min_data_in_leaf", min_data_in_leaf),
        )
        if self.hyperparameters["num_leaves"] < 2:
            raise MmoeError(f"model lightgbm: num_leaves must be at least 2, got {num_leaves!r}")
        check_single_valued(self.name, input_spec)
        self.boosters: list[Any] = []
        self.threads: int | None = None  # predicting's threads: fit's (None: LightGBM's default, every core)

    # -- fitting --------------------------------------------------------------------------------------
    def _params(self, kind: str, metric: str, seed: int, threads: int | None) -> dict[str, Any]:
        options = self.hyperparameters
        return {
            "objective": "binary" if kind == "binary" else "regression",
            "metric": metric,
            "num_leaves": options["num_leaves"],
            "learning_rate": options["boosting_learning_rate"],
            "min_data_in_leaf": options["min_data_in_leaf"],
            "seed": seed,
            "num_threads": threads or 0,  # 0: OpenMP's default, every core
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }

    def fit(
        self, data: MultiTaskData, seed: int, threads: int | None, log: Callable[[str], None] | None = None
    ) -> list[dict[str, Any]]:
        lgb = _lightgbm()
        if len(data.tasks) != self.num_tasks:
            raise MmoeError(f"model lightgbm was built for {self.num_tasks} tasks; the data has {len(data.tasks)}")
        spec = data.input_spec
        train_x, validation_x = feature_matrix(spec, data.train), feature_matrix(spec, data.validation)
        categorical = categorical_features(spec)
        history, boosters = [], []
        for k, task in enumerate(data.tasks):
            started = time.perf_counter()
            train_rows, train_labels = task_rows(data.train, k, data.tasks)
            validation_rows, validation_labels = task_rows(data.validation, k, data.tasks)
            for split, rows in (("training", train_rows), ("validation", validation_rows)):
                if rows.size == 0:
                    raise MmoeError(
                        f"task {task.name!r} has no labelled {split} rows; the lightgbm baseline trains each task on "
                        f"its labelled training rows and stops early on its labelled validation rows"
                    )
            if task.kind == "binary":
                metric = "auc" if np.unique(validation_labels).size == 2 else "binary_logloss"
            else:
                metric = "l2"
            params = self._params(task.kind, metric, seed, threads)
            train_set = lgb.Dataset(
                train_x[train_rows],
                train_labels,
                categorical_feature=categorical,
                params={"verbosity": -1},
                free_raw_data=True,
            )
            validation_set = lgb.Dataset(
                validation_x[validation_rows], validation_labels, categorical_feature=categorical, reference=train_set
            )
            curve: dict[str, Any] = {}
            trained = lgb.train(
                params,
                train_set,
                num_boost_round=self.hyperparameters["max_rounds"],
                valid_sets=[validation_set],
                valid_names=["validation"],
                callbacks=[
                    lgb.early_stopping(self.hyperparameters["early_stopping_rounds"], verbose=False),
                    lgb.record_evaluation(curve),
                ],
            )
            # Kept as its own text up to the best round: what save writes and load reads, so that
            # the fitted and the loaded model predict alike.
            booster = lgb.Booster(model_str=trained.model_to_string())
            boosters.append(booster)
            values = [float(v) for v in curve["validation"][metric]]
            best_round = int(trained.best_iteration) or len(values)
            entry = {
                "task": task.name,
                "kind": task.kind,
                "metric": metric,
                "train_rows": int(train_rows.size),
                "validation_rows": int(validation_rows.size),
                "rounds": len(values),
                "best_round": best_round,
                "best_validation": values[best_round - 1],
                "stopped_early": len(values) < self.hyperparameters["max_rounds"],
                "seconds": time.perf_counter() - started,
                "validation": values,
            }
            history.append(entry)
            if log is not None:
                log(
                    f"lightgbm {task.name}: best round {best_round} of {len(values)}, validation {metric} "
                    f"{entry['best_validation']:.4f} ({entry['train_rows']:,} training rows) [{entry['seconds']:.1f}s]"
                )
        self.boosters, self.threads = boosters, threads
        return history

    # -- predicting -----------------------------------------------------------------------------------
    def outputs(self, rows: Split | RowSource) -> torch.Tensor:
        if len(self.boosters) != self.num_tasks:
            raise MmoeError("model lightgbm is not fitted; expected fit(...) or a run directory to load")
        chunks = []
        for part in parts(rows):
            for start in range(0, len(part), PREDICT_ROWS):
                piece = Split(
                    part.numeric[start : start + PREDICT_ROWS],
                    part.categorical[start : start + PREDICT_ROWS],
                    part.labels[start : start + PREDICT_ROWS],
                )
                x = feature_matrix(self.input_spec, piece)
                chunks.append(
                    np.stack(
                        [
                            booster.predict(x, raw_score=True, num_threads=self.threads or 0)
                            for booster in self.boosters
                        ],
                        axis=1,
                    )
                )
        raw = np.concatenate(chunks) if chunks else np.zeros((0, self.num_tasks))
        return torch.from_numpy(raw.astype(np.float32))

    # -- files ----------------------------------------------------------------------------------------
    def files(self) -> list[str]:
        return [f"booster-{k}.txt" for k in range(self.num_tasks)]

    def save(self, directory: Path) -> None:
        if len(self.boosters) != self.num_tasks:
            raise MmoeError("model lightgbm is not fitted; nothing to save")
        for name, booster in zip(self.files(), self.boosters):
            atomic_write_text(directory / name, booster.model_to_string())

    def load_fitted(self, directory: Path) -> None:
        lgb = _lightgbm()
        boosters = []
        for name in self.files():
            path = directory / name
            if not path.is_file():
                raise MmoeError(f"{path}: no such file; expected the booster `mmoe train --model lightgbm` wrote")
            try:
                boosters.append(lgb.Booster(model_str=path.read_text()))
            except Exception as error:  # LightGBM raises its own LightGBMError on a damaged file
                raise MmoeError(
                    f"{path}: not a readable LightGBM model ({type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else 'no detail'})"
                ) from None
            if boosters[-1].num_feature() != self.input_spec.num_numeric + self.input_spec.num_categorical:
                raise MmoeError(
                    f"{path}: the booster reads {boosters[-1].num_feature()} columns, but the run's inputs are "
                    f"{self.input_spec.num_numeric + self.input_spec.num_categorical}; expected the booster that "
                    f"`mmoe train` wrote next to this config.json"
                )
        self.boosters = boosters

    def num_parameters(self) -> int:
        """The leaves of every tree of every booster (each holds one learned value)."""
        return sum(
            int(line.partition("=")[2])
            for booster in self.boosters
            for line in booster.model_to_string().splitlines()
            if line.startswith("num_leaves=")
        )

    def versions(self) -> dict[str, str]:
        return {"lightgbm": str(_lightgbm().__version__)}
