"""`MultiTaskEstimator`: one fitted object holding the fitted encoder, the network and the tasks.

    est = MultiTaskEstimator(model="mmoe", tasks={"income": "binary", "never_married": "binary"},
                             num_experts=8, expert_units=16, epochs=20, seed=0)
    est.fit(train_df)            # a DataFrame, a CSV/Parquet path or folder, a data set description, MultiTaskData
    est.predict(test_df)         # DataFrame: one column per task, test_df's index
    est.score(test_df)           # {task: {"auc", "logloss", "rows"} or {"mse", "r2", "rows"}}
    est.gates(test_df)           # {task: DataFrame of each expert's gate weight} (MoE models)
    est.save("runs/adult"); MultiTaskEstimator.load("runs/adult"); est.export("serve/model.onnx")

scikit-learn's conventions: the constructor stores its arguments unchanged and checks nothing
(`fit` does, with one-line `MmoeError`s that name the parameter); the model's hyperparameters
(num_experts, expert_units, ...; `mmoe.models.model_hyperparameters(model)` lists them) come as
keyword arguments, and `get_params`/`set_params`/`sklearn.base.clone` treat them as parameters
like the others; fitted state lives in attributes ending in "_"; `fit` returns the estimator.

The directory `save` writes is a run directory (`mmoe.runs`), the one `mmoe train --out` writes,
and `mmoe train` is `train_run(MultiTaskEstimator(...), dataset, out)`.

model="lightgbm" is the baseline of one LightGBM booster per task (`mmoe.baselines`): the same
data, split, encoding, metrics and run directory, its options (num_leaves, boosting_learning_rate,
max_rounds, early_stopping_rounds, min_data_in_leaf) as keyword arguments, seed and threads as for
a network; the neural models' options (learning_rate, epochs, replicas, ...) are errors there.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from mmoe.baselines import Baseline, BaselineResult, fit_baseline, is_baseline, neural_only
from mmoe.baselines import check_hyperparameters as check_any_hyperparameters
from mmoe.data import DATASET_KINDS, load_dataset
from mmoe.data.dataset import MultiTaskData, Task, with_numeric_embedding
from mmoe.data.tabular import parse_task_item, read_table, resolve_tasks, table_data
from mmoe.data.vocabulary import OPTION_FLAGS, VocabularyOptions
from mmoe.errors import MmoeError
from mmoe.export import FORMATS, export_model
from mmoe.models import build_model, model_hyperparameters
from mmoe.models.ensemble import EnsembleModel
from mmoe.predict import evaluate_frame, evaluate_table, features_split, predict_frame
from mmoe.runs import (
    CHECKPOINT_FILE,
    Run,
    fit_replicas,
    run_config,
    summarize_replicas,
    write_run,
)
from mmoe.runs import fit as fit_model
from mmoe.spec import DEFAULT_NUMERIC_EMBEDDING, PeriodicEmbedding
from mmoe.train import distributed, trainer
from mmoe.train.callbacks import Callback, EpochFunction, PopulationEpochFunction
from mmoe.train.metrics import Metrics
from mmoe.train.trainer import (
    TrainConfig,
    TrainResult,
    check_checkpoint_identity,
    options_identity,
)

# The export format a file name's suffix asks for.
EXPORT_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}
_DEFAULTS = TrainConfig()


class NotFitted(MmoeError, NotFittedError):
    """`predict` (or another method that needs the fitted model) before `fit`: an MmoeError, and
    scikit-learn's NotFittedError, so that either `except` catches it."""


class MultiTaskEstimator(BaseEstimator):
    """A multi-task model (MMoE or any model of the paper) fitted on a table, scikit-learn style.

    model: one of `mmoe.models.MODELS` ("mmoe", "omoe", "shared-bottom", ...), or a baseline of
        `mmoe.baselines.BASELINES` ("lightgbm": one booster per task; learning_rate, epochs,
        batch_size, weight_decay, patience, task_weights, sparse_optimizer, replicas, streaming,
        callbacks, resume and export are neural-model options it refuses; seed and threads apply).
    tasks: {column: "binary" | "regression"}, or "name:kind,..." (the first is the main task: early
        stopping and model selection follow it), or `Task`s. A binary task may follow an earlier
        one: {"click": "binary", "purchase": "binary:given=click"}, "...,purchase:binary:given=click"
        or Task("purchase", "binary", given="click") (`mmoe.spec.Task.given`). Not needed for a
        built-in data set.
    features: the input columns (default: every column that is not a task). numeric / categorical:
        columns to read as numbers or as categories whatever their dtype. positive: {binary task:
        the value that means 1} for labels other than 0/1, true/false, yes/no.
    embedding_dim, embed, one_hot, min_frequency, max_categories, hash_buckets: how the
        categorical columns' vocabularies are kept and how each enters the model (None: the
        default; `mmoe.data.vocabulary`, docs/tables.md): a column with more than 100 slots is
        embedded with embedding_dim (16) dimensions, others one-hot, unless listed in embed /
        one_hot; values in fewer than min_frequency training rows, or beyond the max_categories
        most frequent, share the slot of unseen values; hash_buckets N or {column: N} hashes
        columns into N buckets instead of keeping a vocabulary.
    numeric_embedding: how the numeric columns enter the network: "periodic" (each column as a
        learned vector of periodic features, `mmoe.spec.PeriodicEmbedding`; census income AUC
        .9462 -> .9515), "none" (as they are, the paper's input) or "auto" (the default: periodic
        when the table also has categorical columns, see `PeriodicEmbedding.of`).
    multi_value, multi_value_separator: the multi-valued columns, each a list of values per row
        pooled into one embedding: "COL[:max=L][:pooling=mean|sum][:shares=OTHER]" items (a
        list, or one comma-separated string) or {column: {"max_values": L, "pooling": ...,
        "shares": ...}}; text cells hold the values joined by multi_value_separator (default
        "|"). A Parquet list column is multi-valued without being named (docs/tables.md).
    epochs, batch_size, learning_rate, weight_decay, patience, task_weights, seed, threads,
        sparse_optimizer, entire_space: the training options (`mmoe.train.trainer.TrainConfig`;
        task_weights one per task; entire_space: train conditional tasks ESMM's way, None the
        model's default).
    counterfactual_weight: with entire-space training, the weight of ESCM²'s inverse-propensity
        weighted term in each conditional task's loss (0: ESMM's loss alone; `mmoe.train.loss`).
    weighting, weighting_options: how the task losses make one update, a name of
        `mmoe.train.weighting.WEIGHTINGS` ("ew", "uw", "pcgrad", ...; task_weights alone mean
        "fixed"), and that method's options ({"alpha": 1.5}).
    lr_schedule, warmup_epochs, weight_decay_mode: the learning rate over the steps ("constant",
        "cosine", "linear", after warmup_epochs of linear warm-up) and the kind of weight decay
        ("l2" or "decoupled", AdamW's): `mmoe.train.schedule`.
    replicas: train this many seeds at once (seed, seed + 1, ...) and keep the one with the best
        main-task validation metric; `replicas_` holds every replica's metrics.
    ensemble: with replicas > 1, keep all of them as one model that averages their predictions
        (`mmoe.models.ensemble.EnsembleModel`) instead of the best one.
    validation_fraction, test_fraction, split_seed: the seeded split of a table into training,
        validation (early stopping) and test rows; test_fraction None keeps no test rows.
        validation_fraction is ignored when `fit` is given validation rows.
    streaming: read a Parquet table (path or folder) in batches instead of loading it whole.
    verbose: 0 quiet; 1 the data and resume lines on stderr; 2 also one line per epoch.
    callbacks: `mmoe.train.callbacks.Callback`s (TensorBoardLogger, MLflowLogger, your own), or
        functions called after every epoch with its history entry (a dict); with replicas > 1,
        with (epoch, replicas still training). Under torchrun, in the first process only.
    **hyperparameters: the model's own (num_experts, expert_units, tower_units, hidden_units, ...);
        unset ones take the model's default.

    Fitted attributes: model_ (the network), encoder_ (`TableEncoder`), tasks_ (fitted `Task`s),
    input_spec_, history_, metrics_ ({split: {task: metrics}}), best_epoch_, result_
    (`TrainResult`), training_ (`TrainConfig`), dataset_ (the data set description, None for
    rows given in memory), config_ (the run's config.json), replicas_ (None for one replica).
    """

    def __init__(
        self,
        model: str = "mmoe",
        tasks: Mapping[str, str] | str | Sequence[Task] | None = None,
        *,
        features: Sequence[str] | None = None,
        numeric: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        positive: Mapping[str, str] | None = None,
        embedding_dim: int | None = None,
        embed: Sequence[str] | None = None,
        one_hot: Sequence[str] | None = None,
        min_frequency: int | None = None,
        max_categories: int | None = None,
        hash_buckets: int | Mapping[str, int] | None = None,
        multi_value: Sequence[str] | Mapping[str, Mapping[str, Any]] | str | None = None,
        multi_value_separator: str | None = None,
        numeric_embedding: str | PeriodicEmbedding | None = DEFAULT_NUMERIC_EMBEDDING,
        epochs: int = _DEFAULTS.epochs,
        batch_size: int = _DEFAULTS.batch_size,
        learning_rate: float = _DEFAULTS.learning_rate,
        weight_decay: float = _DEFAULTS.weight_decay,
        patience: int = _DEFAULTS.patience,
        task_weights: Sequence[float] | None = None,
        seed: int = _DEFAULTS.seed,
        threads: int | None = None,
        sparse_optimizer: str = _DEFAULTS.sparse_optimizer,
        entire_space: bool | None = _DEFAULTS.entire_space,
        counterfactual_weight: float = _DEFAULTS.counterfactual_weight,
        weighting: str = _DEFAULTS.weighting,
        weighting_options: Mapping[str, float] | None = None,
        lr_schedule: str = _DEFAULTS.lr_schedule,
        warmup_epochs: float = _DEFAULTS.warmup_epochs,
        weight_decay_mode: str = _DEFAULTS.weight_decay_mode,
        replicas: int = 1,
        ensemble: bool = False,
        validation_fraction: float = 0.1,
        test_fraction: float | None = 0.1,
        split_seed: int = 0,
        streaming: bool = False,
        verbose: int = 0,
        callbacks: Sequence[Any] | None = None,
        **hyperparameters: Any,
    ) -> None:
        self.model = model
        self.tasks = tasks
        self.features = features
        self.numeric = numeric
        self.categorical = categorical
        self.positive = positive
        self.embedding_dim = embedding_dim
        self.embed = embed
        self.one_hot = one_hot
        self.min_frequency = min_frequency
        self.max_categories = max_categories
        self.hash_buckets = hash_buckets
        self.multi_value = multi_value
        self.multi_value_separator = multi_value_separator
        self.numeric_embedding = numeric_embedding
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.task_weights = task_weights
        self.seed = seed
        self.threads = threads
        self.sparse_optimizer = sparse_optimizer
        self.entire_space = entire_space
        self.counterfactual_weight = counterfactual_weight
        self.weighting = weighting
        self.weighting_options = weighting_options
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.weight_decay_mode = weight_decay_mode
        self.replicas = replicas
        self.ensemble = ensemble
        self.validation_fraction = validation_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.streaming = streaming
        self.verbose = verbose
        self.callbacks = callbacks
        self._hyperparameter_names: list[str] = []
        for name, value in hyperparameters.items():
            self._set_hyperparameter(name, value)

    # -- scikit-learn parameters --------------------------------------------------------------------
    def _set_hyperparameter(self, name: str, value: Any) -> None:
        if name not in self._hyperparameter_names:
            self._hyperparameter_names.append(name)
        setattr(self, name, value)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments, the model's hyperparameters given as keywords included."""
        params = super().get_params(deep)
        params.update({name: getattr(self, name) for name in self._hyperparameter_names})
        return params

    def set_params(self, **params: Any) -> MultiTaskEstimator:
        """Sets constructor arguments; a name that is not one is a model hyperparameter (checked
        against the model in `fit`)."""
        named = set(super().get_params(deep=False))
        super().set_params(**{k: v for k, v in params.items() if k in named})
        for name, value in params.items():
            if name not in named:
                self._set_hyperparameter(name, value)
        return self

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The model hyperparameters given (by keyword or `set_params`); the others take the model's defaults."""
        return {name: getattr(self, name) for name in self._hyperparameter_names}

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    # -- fitting ------------------------------------------------------------------------------------
    def fit(
        self, X: Any, validation: Any = None, *, checkpoint: str | Path | None = None, resume: bool = False
    ) -> MultiTaskEstimator:
        """Fits the encoder on the training rows and trains the model; returns the estimator.

        X: a DataFrame, a CSV/Parquet file or a folder of Parquet files (read in batches with
            streaming=True), a data set description as `mmoe.data.load_dataset` takes it
            ({"kind": "census", "group": 1, ...}), or a `MultiTaskData` (a streamed one included).
        validation: rows to stop early on (a DataFrame with X a DataFrame, a table path with X a
            path) instead of validation_fraction of X.
        checkpoint: where to write the training state after every epoch; resume: continue from it
            (the same options and data; the result equals an uninterrupted fit)."""
        if is_baseline(self.model):
            return self._fit_baseline(X, validation, resume)
        hyperparameters = self._checked_hyperparameters()
        config = self._train_config()
        replicas = self.replicas
        if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) or replicas < 1:
            raise MmoeError(f"option replicas must be at least 1, got {replicas!r}")
        dataset = self._describe(X, validation)
        parallel = distributed.current()
        if self.ensemble not in (False, True):
            raise MmoeError(f"option ensemble must be True or False, got {self.ensemble!r}")
        if self.ensemble and replicas < 2:
            raise MmoeError(
                f"ensemble=True averages the replicas of population training; expected replicas of 2 or more, "
                f"got {replicas}"
            )
        if replicas != 1:
            if dataset is not None and dataset.get("streaming"):
                raise MmoeError(
                    f"replicas={replicas} trains seeds side by side on a table in memory; it cannot be "
                    f"combined with streaming=True"
                )
            if parallel.grouped:
                raise MmoeError(
                    f"replicas={replicas} trains seeds side by side in one process; it cannot be "
                    f"combined with distributed training"
                )
            if resume:
                raise MmoeError(
                    f"resume=True continues one model's training; it cannot be combined with replicas={replicas}"
                )
        saved = None
        if resume:
            if checkpoint is None:
                raise MmoeError(
                    "resume=True continues from a checkpoint; expected fit(..., checkpoint=PATH, resume=True)"
                )
            # A missing, damaged or foreign checkpoint fails before the data is read; training checks
            # the rest (tasks, inputs, rows) on this very state, without reading the file again.
            saved = parallel.from_first(trainer.load_checkpoint, checkpoint)  # only rank 0 reads it
            wanted = options_identity(
                self.model, {**model_hyperparameters(self.model), **hyperparameters}, config, dataset
            )
            check_checkpoint_identity(checkpoint, saved["identity"], wanted)
        started = time.perf_counter()
        data = self._load(X, dataset, validation)
        self._check_tasks(data)
        if self.verbose and parallel.is_first:  # every rank reads the data; one reports it
            kind = dataset["kind"] if dataset else "data"
            _log(
                f"data: {kind} — {len(data.train):,} train / {len(data.validation):,} validation / "
                f"{len(data.test):,} test rows, {data.input_spec.one_hot_dim} input columns, tasks "
                f"{', '.join(_described(t) for t in data.tasks)} [{time.perf_counter() - started:.1f}s]"
            )
            if parallel.grouped:
                _log(
                    f"distributed: {parallel.describe()}; each step trains on a global batch of {config.batch_size} "
                    f"rows, about {config.batch_size // parallel.world_size} per process"
                )
        build_model(self.model, data.input_spec, len(data.tasks), **hyperparameters)  # checked before training
        callbacks = self._epoch_callbacks(parallel.is_first)
        replica_summary: dict[str, Any] | None = None
        if replicas > 1:
            result, summary = fit_replicas(
                data, self.model, config, replicas, callbacks=callbacks, ensemble=bool(self.ensemble), **hyperparameters
            )
            replica_summary = {"replicas": summary, "test_summary": summarize_replicas(summary)}
            if self.ensemble:
                replica_summary["ensemble"] = True
        else:
            if saved is not None and self.verbose and parallel.is_first:
                _log(f"resuming from {checkpoint} after epoch {int(saved['epoch'])}")
            result = fit_model(
                data,
                self.model,
                config,
                checkpoint_path=checkpoint,
                callbacks=callbacks,
                resume_from=checkpoint if resume else None,
                resume_state=saved,
                data_identity=dataset,
                **hyperparameters,
            )
        self._set_fitted(result, data, config, dataset, replica_summary)
        return self

    # -- baselines (mmoe.baselines, model="lightgbm") ------------------------------------------------
    def _fit_baseline(self, X: Any, validation: Any, resume: bool) -> MultiTaskEstimator:
        """`fit` for a baseline: the same data, split and encoding, one fit per task, no epochs.
        The neural models' options are MmoeErrors unless left at their defaults."""
        hyperparameters = self._checked_hyperparameters()
        for name in _training_parameters():
            if name not in ("seed", "threads") and getattr(self, name) != getattr(_DEFAULTS, name):
                raise neural_only(self.model, f"option {name}")
        for name, given in (
            ("replicas", self.replicas != 1),
            ("ensemble", bool(self.ensemble)),
            ("resume", resume),
            ("callbacks", bool(self.callbacks)),
        ):
            if given:
                raise neural_only(self.model, f"option {name}")
        if distributed.current().grouped:
            raise neural_only(self.model, "distributed training")
        TrainConfig(seed=self.seed, threads=self.threads)  # threads checked as for a network
        dataset = self._describe(X, validation)
        if self.streaming or (dataset is not None and dataset.get("streaming")):
            raise neural_only(self.model, "option streaming")
        started = time.perf_counter()
        data = self._load(X, dataset, validation)
        self._check_tasks(data)
        if self.verbose:
            _log(
                f"data: {dataset['kind'] if dataset else 'data'} — {len(data.train):,} train / "
                f"{len(data.validation):,} validation / {len(data.test):,} test rows, "
                f"{data.input_spec.num_numeric + data.input_spec.num_categorical} input columns "
                f"[{time.perf_counter() - started:.1f}s]"
            )
        log = _log if self.verbose else None
        result = fit_baseline(data, self.model, self.seed, self.threads, log, **hyperparameters)
        self._set_fitted(result, data, {"seed": self.seed, "threads": self.threads}, dataset, None)
        return self

    def _set_fitted(
        self,
        result: TrainResult | BaselineResult,
        data: MultiTaskData,
        config: TrainConfig | dict[str, Any],
        dataset: dict[str, Any] | None,
        replicas: dict[str, Any] | None,
    ) -> None:
        self.model_ = result.model
        self.encoder_ = data.encoder
        self.tasks_ = list(data.tasks)
        self.input_spec_ = data.input_spec
        self.history_ = result.history
        self.metrics_ = result.metrics
        # A baseline has no epochs (its config.json has each task's best round).
        self.best_epoch_ = result.best_epoch if isinstance(result, TrainResult) else None
        self.result_ = result
        self.training_ = config
        self.dataset_ = dataset
        self.replicas_ = replicas
        self.config_ = run_config(dataset, result.model, self.tasks_, self.input_spec_, config, result, data.info)
        self.directory_: Path | None = None

    def _checked_hyperparameters(self) -> dict[str, Any]:
        check_any_hyperparameters(self.model, self._hyperparameter_names)  # an unknown model too
        return self.hyperparameters

    def _train_config(self) -> TrainConfig:
        # Errors name the option as this class does (TrainConfig's fields are its parameters).
        options = {name: getattr(self, name) for name in _training_parameters()}
        if options["task_weights"] is not None:
            options["task_weights"] = tuple(options["task_weights"])
        if options["weighting_options"] is not None:
            options["weighting_options"] = dict(options["weighting_options"])
        return TrainConfig(**options)

    def _epoch_callbacks(self, first_rank: bool) -> list[Callback]:
        """The callbacks and the epoch lines (verbose 2) as the training loops' `Callback`s; in the
        first process only (under torchrun every process trains, one reports). A plain function
        is called with each epoch's history entry (a dict), or with (epoch, replicas still
        training) when replicas > 1."""
        if not first_rank:
            return []
        listed: list[Callback] = []
        for callback in self.callbacks or ():
            if isinstance(callback, Callback):
                listed.append(callback)
            elif callable(callback):
                listed.append(PopulationEpochFunction(callback) if self.replicas > 1 else EpochFunction(callback))
            else:
                raise MmoeError(
                    f"option callbacks: {callback!r} is neither a mmoe.train.callbacks.Callback nor a function"
                )
        if self.verbose >= 2 and self.replicas == 1:
            listed.append(EpochFunction(_print_epoch))
        return listed

    # -- data ---------------------------------------------------------------------------------------
    def _task_list(self) -> list[Task]:
        if self.tasks is None:
            raise MmoeError(
                "option tasks is needed to fit on a table; expected e.g. tasks={'clicked': 'binary', "
                "'watch_time': 'regression'}"
            )
        if isinstance(self.tasks, Mapping):
            return resolve_tasks(
                [parse_task_item(f"{name}:{kind}", "option tasks") for name, kind in self.tasks.items()], "option tasks"
            )
        return resolve_tasks(self.tasks, "option tasks")

    def _column_types(self) -> dict[str, str] | None:
        types = {str(c): "categorical" for c in _names(self.categorical)}
        types.update({str(c): "numeric" for c in _names(self.numeric)})
        return types or None

    def _table_options(self) -> dict[str, Any]:
        """The table options of a data set description, as `mmoe train --data` writes them."""
        tasks = self._task_list()
        return {
            "tasks": ",".join(task.spec() for task in tasks),
            "features": [str(c) for c in _names(self.features)] or None,
            "column_types": self._column_types(),
            "positive": {str(k): str(v) for k, v in (self.positive or {}).items()} or None,
            "validation_fraction": self.validation_fraction,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
            **self._vocabulary_options(),
        }

    def _vocabulary_options(self) -> dict[str, Any]:
        """The vocabulary options set, checked, as a data set description's keys (none when unset,
        so that descriptions written without them stay the same)."""
        return VocabularyOptions.of(
            self.embedding_dim,
            _names(self.embed) or None,
            _names(self.one_hot) or None,
            self.min_frequency,
            self.max_categories,
            self.hash_buckets,
            self.multi_value,
            self.multi_value_separator,
        ).spec()

    def _describe(self, X: Any, validation: Any) -> dict[str, Any] | None:
        """The JSON description of the data (saved in config.json, so that `mmoe evaluate RUN`
        finds the same split; checked against a checkpoint on resume); None for a MultiTaskData."""
        if isinstance(X, MultiTaskData):
            if validation is not None:
                raise MmoeError("option validation goes with a table; a MultiTaskData brings its own validation split")
            return None
        if isinstance(X, Mapping):
            if validation is not None:
                raise MmoeError("option validation goes with a table; a data set description brings its own split")
            # A description that says how its numeric columns enter the model (the CLI's) keeps it.
            spec = {**self._numeric_embedding_option(), **X}
            if is_baseline(self.model):
                spec.pop("numeric_embedding", None)
            if spec.get("kind") not in DATASET_KINDS:
                raise MmoeError(
                    f"data set description {spec.get('kind')!r}: expected a kind among "
                    f"{', '.join(DATASET_KINDS)} (see mmoe.data.load_dataset)"
                )
            if self.streaming and spec["kind"] != "table":
                raise MmoeError(
                    f"streaming=True reads a Parquet table; the {spec['kind']} data set is loaded in memory, "
                    f"so leave streaming out"
                )
            if self.streaming:
                spec["streaming"] = True
            return spec
        if isinstance(X, (str, Path)):
            if validation is not None and not isinstance(validation, (str, Path)):
                raise MmoeError(
                    "option validation must be a table path when the training table is a path; expected "
                    "fit('train.csv', validation='validation.csv')"
                )
            return {
                "kind": "table",
                "path": str(X),
                **self._table_options(),
                "validation_path": str(validation) if validation is not None else None,
                "test_path": None,
                # Only when set, so that the descriptions (and checkpoints) of in-memory runs stay as they were.
                **({"streaming": True} if self.streaming else {}),
                **self._numeric_embedding_option(),
            }
        if isinstance(X, pd.DataFrame):
            if self.streaming:
                raise MmoeError(
                    "streaming=True reads a Parquet table from disk in batches; a DataFrame is in memory "
                    "already, so leave streaming out"
                )
            if validation is not None and not isinstance(validation, pd.DataFrame):
                raise MmoeError("option validation must be a DataFrame when the training rows are one")
            return {
                "kind": "dataframe",
                "rows": len(X),
                **self._table_options(),
                "validation_rows": len(validation) if validation is not None else None,
                **self._numeric_embedding_option(),
            }
        raise MmoeError(
            f"cannot fit on a {type(X).__name__}; expected a DataFrame, a CSV/Parquet path or folder, a "
            f"data set description (dict) or a MultiTaskData"
        )

    def _numeric_embedding_option(self) -> dict[str, Any]:
        """The data set description's "numeric_embedding" key (`mmoe.data.load_dataset`; absent, as
        in descriptions written before it, reads as "none"), checked; none for a baseline, which
        reads the numeric columns as they are."""
        option = self.numeric_embedding
        PeriodicEmbedding.of(option)  # a bad value fails here, before any data is read
        if is_baseline(self.model):
            return {}
        if option is None or isinstance(option, str):
            return {"numeric_embedding": option or "none"}
        return {"numeric_embedding": option.describe() if isinstance(option, PeriodicEmbedding) else dict(option)}

    def _load(self, X: Any, dataset: dict[str, Any] | None, validation: Any) -> MultiTaskData:
        if dataset is None:
            return X if is_baseline(self.model) else with_numeric_embedding(X, self.numeric_embedding)
        if dataset["kind"] != "dataframe":
            return load_dataset(dataset)
        data = frame_data(
            X,
            self._task_list(),
            features=dataset["features"],
            column_types=dataset["column_types"],
            positive=dataset["positive"],
            validation_fraction=self.validation_fraction,
            test_fraction=self.test_fraction,
            split_seed=self.split_seed,
            validation=validation,
            vocabulary=VocabularyOptions.from_spec(dataset),
        )
        return with_numeric_embedding(data, dataset.get("numeric_embedding"))

    def _check_tasks(self, data: MultiTaskData) -> None:
        if self.tasks is None:
            return
        wanted = [task.name for task in self._task_list()]
        if wanted != data.task_names:
            raise MmoeError(
                f"option tasks names {', '.join(wanted)}, but the data set's tasks are "
                f"{', '.join(data.task_names)}; expected the same tasks in the same order (or tasks=None)"
            )

    # -- using the fitted model ---------------------------------------------------------------------
    def _fitted(self) -> Run:
        """The fitted state as a `Run`, which predicting, evaluating and exporting read."""
        if not self.__sklearn_is_fitted__():
            raise NotFitted(
                f"this {type(self).__name__} is not fitted yet; call fit(...) (or "
                f"MultiTaskEstimator.load(RUN)) before using it"
            )
        return Run(self.directory_ or Path(type(self).__name__), self.config_, self.model_, self.encoder_)

    def predict(self, X: pd.DataFrame | str | Path) -> pd.DataFrame:
        """One column per task: the positive class's probability (binary) or the value in the
        label's own units (regression), indexed like X (a DataFrame, or a table path); then per
        conditional task its joint probability ("click&purchase": P(click) · P(purchase | click)).
        Label columns and any other column the model does not read are ignored."""
        run = self._fitted()
        frame, source = _frame(X)
        return predict_frame(run, frame, source)

    def score(self, X: pd.DataFrame | str | Path) -> Metrics:
        """{task: {"auc", "logloss", "rows"}} (binary) or {task: {"mse", "r2", "rows"}} (regression)
        on the rows of X that have that task's label (a conditional task's: where its condition
        holds; its joint event, "click&purchase", after the tasks, on every row where the joint
        label is known). With streaming=True a Parquet path is read
        in batches. A dict, not scikit-learn's single number (there is one per task): give
        scikit-learn's searches a `scoring` of their own."""
        run = self._fitted()
        if self.streaming and isinstance(X, (str, Path)):
            return evaluate_table(run, X)
        frame, source = _frame(X)
        return evaluate_frame(run, frame, source)

    @torch.inference_mode()
    def gates(self, X: pd.DataFrame | str | Path) -> dict[str, pd.DataFrame]:
        """{task: DataFrame [rows, experts]}: the weight each task's gate gives each expert, per
        row of X (rows sum to 1). Models with gates only: mmoe, omoe, and ple / cgc (their last
        level's task gates over all experts, zero on other tasks' own experts)."""
        run = self._fitted()
        network = run.network("gates")
        if isinstance(network, EnsembleModel):  # N members, each with gates over its own experts
            raise MmoeError(
                f"an ensemble of {network.size} {network.name} models has no gates of its own; expected a run "
                f"trained without --ensemble"
            )
        gates_of = getattr(network, "gates", None)
        if gates_of is None:
            raise MmoeError(
                f"model {network.name} has no gates; expected a mixture-of-experts model (mmoe, omoe, ple or cgc)"
            )
        frame, source = _frame(X)
        split = features_split(run, frame, source)
        was_training = network.training
        network.eval()
        weights = torch.cat(
            [
                gates_of(split.numeric[start : start + 65_536], split.categorical[start : start + 65_536])
                for start in range(0, max(len(split), 1), 65_536)
            ]
        ).numpy()  # [rows, tasks, experts]
        network.train(was_training)
        experts = [f"expert_{e}" for e in range(weights.shape[2])]
        return {
            task.name: pd.DataFrame(weights[:, k, :], index=frame.index, columns=experts)
            for k, task in enumerate(run.tasks)
        }

    # -- saving and loading -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Writes the run directory `mmoe train --out` writes (config.json, model.pt, encoder.json,
        metrics.json, history.json; replicas.json with replicas), which `mmoe evaluate`,
        `predict` and `export` read. Returns the directory."""
        run = self._fitted()
        return write_run(directory, run.config, run.model, run.encoder, self.result_, self.replicas_)

    @classmethod
    def load(cls, directory: str | Path) -> MultiTaskEstimator:
        """A fitted estimator from a run directory (written by `save` or by `mmoe train`); its
        parameters are the run's model, hyperparameters, tasks, training and data options."""
        run = Run.load(directory)
        config = run.config
        dataset = config.get("dataset")
        training = config.get("training", {})
        options: dict[str, Any] = {
            name: training[name] for name in _training_parameters() if name in training and name != "task_weights"
        }
        if training.get("task_weights") is not None:
            options["task_weights"] = tuple(training["task_weights"])
        if isinstance(dataset, dict) and dataset.get("kind") in ("table", "dataframe"):
            types = dataset.get("column_types") or {}
            options.update(
                features=dataset.get("features"),
                positive=dataset.get("positive"),
                numeric=[c for c, t in types.items() if t == "numeric"] or None,
                categorical=[c for c, t in types.items() if t == "categorical"] or None,
                validation_fraction=dataset.get("validation_fraction", 0.1),
                test_fraction=dataset.get("test_fraction", 0.1),
                split_seed=dataset.get("split_seed", 0),
                streaming=bool(dataset.get("streaming", False)),
                **{name: dataset[name] for name in OPTION_FLAGS if name in dataset},
            )
        hyperparameters: dict[str, Any] = {
            name: tuple(value) if isinstance(value, list) else value
            for name, value in config["hyperparameters"].items()
        }
        if config.get("ensemble"):  # --replicas N --ensemble
            options.update(replicas=int(config["ensemble"]), ensemble=True)
        estimator = cls(
            model=config["model"],
            tasks={task.name: task.spec()[len(task.name) + 1 :] for task in run.tasks},
            **options,
            **hyperparameters,
        )
        history = _read_json(run.directory / "history.json", [])
        metrics = _read_json(run.directory / "metrics.json", {})
        replicas = _read_json(run.directory / "replicas.json", None)
        seconds = float(config.get("train_seconds") or 0.0)
        samples_per_second = float(config.get("samples_per_second") or 0.0)
        result: TrainResult | BaselineResult
        trained: TrainConfig | dict[str, Any]
        if isinstance(run.model, Baseline):  # a baseline's run: no epochs, its options are seed and threads
            best_epoch, trained = None, dict(training)
            result = BaselineResult(run.model, history, seconds, samples_per_second, metrics)
        else:
            best_epoch = int(config.get("best_epoch") or 0)
            epochs = int(training.get("epochs", len(history)))
            result = TrainResult(
                run.model,
                history,
                best_epoch,
                math.nan,
                seconds,
                samples_per_second,
                metrics,
                stopped_early=len(history) < epochs,
            )
            trained = TrainConfig(**{k: v for k, v in training.items() if k in TrainConfig.__dataclass_fields__})
        estimator.model_, estimator.encoder_, estimator.tasks_ = run.model, run.encoder, run.tasks
        estimator.input_spec_, estimator.history_, estimator.metrics_ = run.model.input_spec, history, metrics
        estimator.best_epoch_, estimator.result_, estimator.replicas_ = best_epoch, result, replicas
        estimator.training_ = trained
        estimator.dataset_, estimator.config_, estimator.directory_ = dataset, config, run.directory
        return estimator

    def export(self, path: str | Path, format: str | None = None) -> Path:
        """Writes the fitted model for serving (`mmoe export`): ONNX or TorchScript, from the
        suffix (.onnx; .pt, .ts) unless `format` says, with FILE.signature.json beside it."""
        run = self._fitted()
        path = Path(path)
        if format is None:
            if path.suffix.lower() not in EXPORT_SUFFIXES:
                raise MmoeError(
                    f"{path}: cannot tell the export format from the suffix {path.suffix or '(none)'!r}; "
                    f"expected .onnx, .pt or .ts, or format= one of {', '.join(FORMATS)}"
                )
            format = EXPORT_SUFFIXES[path.suffix.lower()]
        return export_model(run, path, format)


def _described(task: Task) -> str:
    """E.g. "purchase (binary, given click)", for the data line."""
    return f"{task.name} ({task.kind}{f', given {task.given}' if task.given else ''})"


def _training_parameters() -> tuple[str, ...]:
    """The TrainConfig fields that are constructor parameters of the estimator (the others, such as
    eval_batch_size, keep TrainConfig's defaults)."""
    accepted = inspect.signature(MultiTaskEstimator.__init__).parameters
    return tuple(field.name for field in dataclasses.fields(TrainConfig) if field.name in accepted)


def train_run(
    estimator: MultiTaskEstimator, data: Any, out: str | Path, *, resume: bool = False, processes: int | None = None
) -> MultiTaskEstimator:
    """What `mmoe train` does, in every process: joins the torchrun process group when torchrun
    started this process (`processes`: the --distributed value, checked against it), fits
    `estimator` on `data` with the checkpoint in out/checkpoint.pt (resume: continue from it), and
    saves the run into `out` (rank 0 only). Returns the fitted estimator."""
    parallel = distributed.setup(processes)  # the single process when torchrun did not start this one
    estimator.fit(data, checkpoint=Path(out) / CHECKPOINT_FILE, resume=resume)
    if parallel.is_first:  # only rank 0 writes out (the trainer writes the checkpoint on rank 0 only)
        estimator.save(out)
    return estimator


def frame_data(
    frame: pd.DataFrame,
    tasks: Sequence[Task] | str,
    features: Sequence[str] | None = None,
    column_types: Mapping[str, str] | None = None,
    positive: Mapping[str, str] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float | None = 0.1,
    split_seed: int = 0,
    validation: pd.DataFrame | None = None,
    source: str = "DataFrame",
    vocabulary: VocabularyOptions | None = None,
) -> MultiTaskData:
    """A DataFrame as a `MultiTaskData`: `mmoe.data.tabular.load_table` for rows already in memory
    (the same checks, label coding, dropped unlabelled rows, seeded split and encoder fitted on the
    training rows; `validation` replaces validation_fraction of `frame`; `vocabulary`: the
    categorical columns' options, `mmoe.data.vocabulary.VocabularyOptions`)."""
    return table_data(
        _checked_frame(frame, source),
        source,
        tasks,
        features,
        column_types,
        positive,
        validation_fraction,
        test_fraction,
        split_seed,
        validation=None
        if validation is None
        else (_checked_frame(validation, f"{source} (validation)"), f"{source} (validation)"),
        kind="dataframe",
        vocabulary=vocabulary,
    )


def _checked_frame(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """A copy with text column names; MmoeError for no rows or a repeated column name."""
    if len(frame) == 0:
        raise MmoeError(f"{source}: no rows; expected at least one row")
    names = [str(name) for name in frame.columns]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise MmoeError(
            f"{source}: duplicate column name(s) {', '.join(map(repr, repeated))}; expected every column name once"
        )
    frame = frame.copy()
    frame.columns = names
    return frame


def _frame(X: Any) -> tuple[pd.DataFrame, str]:
    if isinstance(X, pd.DataFrame):
        return X, "DataFrame"
    if isinstance(X, (str, Path)):
        return read_table(X), str(X)
    raise MmoeError(f"cannot read rows from a {type(X).__name__}; expected a DataFrame or a CSV/Parquet path")


def _names(columns: Sequence[str] | str | None) -> list[str]:
    if columns is None:
        return []
    if isinstance(columns, str):
        return [c.strip() for c in columns.split(",") if c.strip()]
    return list(columns)


def _read_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise MmoeError(f"{path}: not valid JSON ({error})") from None


def _print_epoch(entry: dict[str, Any]) -> None:
    scores = "  ".join(
        f"val {task} "
        + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items() if name != "rows" and value is not None)
        for task, metrics in entry["validation"].items()
    )
    _log(f"epoch {entry['epoch']:>3}  loss {entry['train_loss']:.4f}  {scores}{'  *' if entry['improved'] else ''}")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = ["MultiTaskEstimator", "NotFitted", "frame_data", "train_run"]
