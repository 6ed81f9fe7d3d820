"""Hyperparameter tuning: the trial objective shared by `mmoe tune` and the census study of
`mmoe reproduce`, and `mmoe tune` itself (its options, its workers' objective, best.json). How
many workers share one study is `mmoe.tune_workers`.

What is tuned follows the paper (Section 6.2): a Gaussian-process bandit (here Optuna's GPSampler;
TPE as an option) maximises the main task's validation metric — the number early stopping already
uses, `mmoe.train.metrics.main_score`: AUC for a binary main task, −MSE for a regression one —
over the learning rate, the model's sizes (each model's `search_space`, beside the model; at most
`max_units` hidden units per layer, for the MoE models experts × units per expert ≤ `max_units`,
the paper's cap being 2048), and the training steps, taken as the epoch with the best validation
metric. Every epoch's validation metric is reported to the trial, so that a pruner (MedianPruner,
with the TPE sampler: `PRUNING_SAMPLERS`) can stop hopeless trials early.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import socket
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mmoe.data.dataset import MultiTaskData, Task
from mmoe.errors import MmoeError, TrainingDiverged
from mmoe.io import atomic_write_json, to_jsonable
from mmoe.runs import fit
from mmoe.train.metrics import main_metric_name, main_score
from mmoe.train.trainer import TrainConfig, TrainResult
from mmoe.tune_workers import FINISHED_STATES, WorkerReport, open_storage, open_study, run_worker, shown_url

SAMPLERS = ("gp", "tpe")
LEARNING_RATES = (1e-4, 1e-2)  # the learning rate's search range (log scale), for every model
PAPER_MAX_UNITS = 2048


# -- the search space and one trial, shared with the census study ---------------------------------
def suggest(trial: optuna.Trial, model: str, max_units: int) -> dict[str, Any]:
    """The model's hyperparameters for one trial, drawn from its `search_space` within the caps."""
    from mmoe.models import model_class

    return model_class(model).search_space(trial, max_units)


@dataclass
class TrialOutcome:
    """What one trial drew and what its training gave."""

    learning_rate: float
    hyperparameters: dict[str, Any]
    config: TrainConfig
    result: TrainResult | None = None


def draw_trial(trial: optuna.Trial, model: str, training: TrainConfig, max_units: int) -> TrialOutcome:
    """The trial's learning rate and model hyperparameters, and the training options it trains
    with: `training` with that learning rate and seed + the trial's number (every trial starts
    from its own initialisation, and its number is enough to train the same model again)."""
    rate = trial.suggest_float("learning_rate", *LEARNING_RATES, log=True)
    hp = suggest(trial, model, max_units)
    return TrialOutcome(rate, hp, replace(training, learning_rate=rate, seed=training.seed + trial.number))


def train_trial(
    trial: optuna.Trial,
    data: MultiTaskData,
    model: str,
    training: TrainConfig,
    max_units: int,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrialOutcome:
    """One trial: `draw_trial`, then training. The trial's value is `result.best_score`, the best
    epoch's main validation metric."""
    outcome = draw_trial(trial, model, training, max_units)
    outcome.result = fit(data, model, outcome.config, on_epoch=on_epoch, **outcome.hyperparameters)
    return outcome


def make_sampler(name: str, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
    """The sampler named `name`: "gp" (the paper's choice, a Gaussian process: Optuna's GPSampler)
    or "tpe". Both draw their first trials at random (at most 10, a third of `trials`) before their
    model of the objective takes over. TPE uses the constant liar, so that workers sharing a study
    do not pile onto one point (the GP sampler accounts for running trials by itself)."""
    startup = max(1, min(10, trials // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    raise _unknown_sampler(name)


def _unknown_sampler(name: str) -> MmoeError:
    return MmoeError(
        f"--sampler {name!r}: unknown sampler; expected one of: gp (Gaussian process, the paper's "
        f"choice), tpe (tree-structured Parzen estimator)"
    )


# The samplers that learn from pruned trials. Optuna's GPSampler ignores them, so after a pruned
# trial it proposes the same point again: 7 of 12 trials of a census MMoE study (December 2026) were
# one point, pruned seven times. With it, every trial trains to its end.
PRUNING_SAMPLERS = ("tpe",)


def make_pruner(prune: bool) -> optuna.pruners.BasePruner:
    """MedianPruner: after 5 finished trials, a trial whose validation metric at an epoch is below
    the median of the earlier trials at that epoch stops there. NopPruner when pruning is off."""
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if prune else optuna.pruners.NopPruner()


class EpochPruning:
    """The trainer's `on_epoch` callback for a trial: reports the epoch's main validation score to
    the trial (step = epoch) and, when the study's pruner finds the trial hopeless, ends training by
    raising optuna.TrialPruned (it propagates out of `fit`, and the worker records the trial as
    pruned, with its last reported score as its value)."""

    def __init__(
        self, trial: optuna.Trial, main_task: Task, then: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.trial = trial
        self.main_task = main_task
        self.then = then

    def __call__(self, entry: dict[str, Any]) -> None:
        score = main_score(self.main_task, entry["validation"][self.main_task.name])
        if math.isfinite(score):  # an AUC that does not exist (one class in validation) says nothing
            self.trial.report(score, step=int(entry["epoch"]))
        if self.then is not None:
            self.then(entry)
        if self.trial.should_prune():
            shown = describe_score(self.main_task, score)
            raise optuna.TrialPruned(f"epoch {entry['epoch']}: {shown} is below the median of earlier trials")


def describe_score(task: Task, score: float) -> str:
    """A score as people read it: "validation income auc 0.9412", "validation y1 mse 0.8123"."""
    metric = main_metric_name(task)
    value = score if metric == "auc" else -score
    return f"validation {task.name} {metric} " + (f"{value:.4f}" if math.isfinite(value) else "n/a")


# -- `mmoe tune` ----------------------------------------------------------------------------------------
@dataclass
class TuneOptions:
    """Everything `mmoe tune` needs. training: the options every trial trains with (its learning
    rate is tuned, its seed + the trial number is each trial's seed). storage: an RDB URL, or None
    for the SQLite file <out>/study.db. sampler_seed None: fresh entropy per worker, so that
    workers sharing a study do not draw the same random first trials."""

    model: str
    trials: int
    dataset: dict[str, Any]
    training: TrainConfig
    out: Path
    storage: str | None = None
    study: str | None = None
    sampler: str = "gp"
    sampler_seed: int | None = None
    prune: bool = True
    max_units: int = PAPER_MAX_UNITS
    quiet: bool = False


def check_options(model: str, trials: int, sampler: str, max_units: int) -> None:
    """The cheap checks, before any data is read or storage opened."""
    from mmoe.models import MODELS

    if trials < 1:
        raise MmoeError(f"--trials must be at least 1, got {trials}; it is the total over all workers")
    if sampler not in SAMPLERS:
        raise _unknown_sampler(sampler)
    if model not in MODELS:
        raise MmoeError(f"--model {model!r}: unknown model; expected one of: {', '.join(MODELS)}")
    if max_units < 1:
        raise MmoeError(f"--max-units must be at least 1, got {max_units}")


def study_identity(options: TuneOptions) -> dict[str, Any]:
    """What a study tunes; workers joining it must agree (see open_study). The census folder is
    left out (each machine has its own; the files are checked by checksum), so are the threads."""
    dataset = {key: value for key, value in options.dataset.items() if key != "data_dir"}
    training = {
        key: value
        for key, value in options.training.to_dict().items()
        if key not in ("learning_rate", "threads", "eval_batch_size", "restore_best")
    }
    return {"model": options.model, "dataset": dataset, "max_units": options.max_units, "training": training}


def run_tune(options: TuneOptions) -> dict[str, Any]:
    """`mmoe tune`: joins (or creates) the study, runs trials until it has `options.trials`
    finished ones in all, and writes the best configuration to <out>/best.json (atomically, after
    every trial this worker finishes and at the end), in the form `mmoe train --config` reads.
    Returns that document."""
    from tqdm.auto import tqdm

    from mmoe.config_file import train_config_document
    from mmoe.data import load_dataset

    check_options(options.model, options.trials, options.sampler, options.max_units)
    out = Path(options.out)
    if options.storage is None:
        out.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(out / 'study.db').resolve()}"
    else:
        url = options.storage
    name = options.study or f"{options.model}-{options.dataset.get('kind', 'data')}"
    shown = shown_url(url)
    optuna.logging.set_verbosity(logging.WARNING)
    storage = open_storage(url)
    study = open_study(
        storage,
        name,
        study_identity(options),
        make_sampler(options.sampler, options.sampler_seed, options.trials),
        make_pruner(options.prune and options.sampler in PRUNING_SAMPLERS),
        shown,
    )
    data = load_dataset(options.dataset)
    main_task = data.tasks[0]
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        drawn = draw_trial(trial, options.model, options.training, options.max_units)
        for key, value in (
            ("worker", worker),
            ("hyperparameters", to_jsonable(drawn.hyperparameters)),
            ("seed", drawn.config.seed),
        ):
            trial.set_user_attr(key, value)
        try:
            result = fit(
                data, options.model, drawn.config, on_epoch=EpochPruning(trial, main_task), **drawn.hyperparameters
            )
        except TrainingDiverged as error:  # too high a learning rate: a hopeless trial, not a broken worker
            trial.set_user_attr("diverged", str(error))
            raise optuna.TrialPruned(str(error)) from None
        trial.set_user_attr("best_epoch", max(1, result.best_epoch))
        if not math.isfinite(result.best_score):  # e.g. one class only in validation: no AUC to compare
            raise optuna.TrialPruned(f"no finite {describe_score(main_task, math.nan)} in any epoch")
        return result.best_score

    direction = study.direction  # read once (open_study checked it: maximise)

    def write_best(trials: list[FrozenTrial]) -> dict[str, Any] | None:
        best = best_complete(trials, direction)
        if best is None:
            return None
        document = best_config(best, trials, options, main_task, shown, name)
        atomic_write_json(out / "best.json", train_config_document(**document))
        return document

    finished_before = _count_finished(study.get_trials(deepcopy=False, states=FINISHED_STATES))
    bar = tqdm(
        total=options.trials,
        initial=min(finished_before, options.trials),
        desc=f"tuning {options.model}",
        unit="trial",
        disable=options.quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    if not options.quiet and finished_before:
        bar.write(
            f"study {name} in {shown}: {finished_before} trials finished before, going on to {options.trials}",
            file=sys.stderr,
        )

    # Per finished trial, the progress, the trial's line and best.json all come from the one list of
    # trials run_worker fetched after telling it (its best trial included); nothing is fetched here.
    def on_finished(trial: FrozenTrial, trials: list[FrozenTrial]) -> None:
        bar.n = min(_count_finished(trials), options.trials)
        bar.set_postfix_str("")
        bar.refresh()
        if not options.quiet:
            bar.write(_trial_line(trial, best_complete(trials, direction), main_task, options.trials), file=sys.stderr)
        write_best(trials)

    def on_wait(running: int, finished: int) -> None:
        bar.n = min(finished, options.trials)
        bar.set_postfix_str(f"waiting for {running} trial(s) of other workers")
        bar.refresh()

    with bar:
        report = run_worker(
            study, options.trials, objective, on_finished=on_finished, on_wait=on_wait, heartbeat=storage
        )
        bar.n = min(_count_finished(report.trials), options.trials)
        bar.set_postfix_str("")
    document = write_best(report.trials)
    if document is None:
        raise MmoeError(
            f"study {name} in {shown}: none of its {options.trials} trials completed (all pruned); "
            f"expected at least one: rerun with a larger --trials (the study goes on), or a new --study "
            f"with --no-prune"
        )
    _print_summary(document, report, out / "best.json")
    return document


def _value(trial: FrozenTrial) -> float:
    """A complete trial's objective value (Optuna types it as optional: unset until the trial ends)."""
    if trial.value is None:
        raise ValueError(f"trial {trial.number} has no value; expected a complete trial")
    return float(trial.value)


def best_complete(trials: list[FrozenTrial], direction: optuna.study.StudyDirection) -> FrozenTrial | None:
    """The trial `study.best_trial` names, picked from the study's trials already fetched (sorted by
    number, as `study.get_trials` returns them) instead of asking storage again: the complete trial
    with the highest value (lowest, for a minimising study), on a tie the lowest-numbered one — as
    Optuna's in-memory storage and its generic `get_best_trial` break ties (an RDB's ORDER BY ...
    LIMIT 1 leaves a tie to the database). None when no trial is complete (where best_trial raises
    ValueError). Optuna's constraints are not looked at: `mmoe tune` sets none."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return None
    pick = max if direction == optuna.study.StudyDirection.MAXIMIZE else min
    # max/min keep the first of equals: the lowest number. A COMPLETE trial always has a value.
    return pick(complete, key=_value)


# Training options a run's config.json has only when they are set: those TrainConfig.to_dict
# leaves out at their defaults (sparse_optimizer, entire_space, weighting, lr_schedule, ...).
OPTIONAL_TRAINING_KEYS = tuple(name for name in TrainConfig.__dataclass_fields__ if name not in TrainConfig().to_dict())


def best_config(
    best: FrozenTrial, trials: list[FrozenTrial], options: TuneOptions, main_task: Task, shown_storage: str, name: str
) -> dict[str, Any]:
    """train_config_document's arguments for the study's best complete trial `best` (see
    best_complete), with the complete and pruned counts of `trials`, the study's trials as fetched:
    its model, hyperparameters, learning rate and seed, epochs = its best epoch (the paper's tuned
    training steps; patience 0, so that exactly those are trained), the other training options and
    the data set as tuned. Trained with these, a model repeats the trial's best epoch."""
    attrs = best.user_attrs
    if "hyperparameters" not in attrs:
        raise MmoeError(
            f"study {name} in {shown_storage}: its best trial {best.number} was not made by "
            f"`mmoe tune` (no hyperparameters recorded); expected a study of `mmoe tune`"
        )
    training = options.training
    states = [t.state for t in trials]
    counts = {state.name.lower(): states.count(state) for state in (TrialState.COMPLETE, TrialState.PRUNED)}
    metric = main_metric_name(main_task)
    return {
        "model": options.model,
        # A copy: the fetched trials are the storage cache's own objects (fetched without deepcopy).
        "hyperparameters": copy.deepcopy(attrs["hyperparameters"]),
        "training": {
            "learning_rate": best.params["learning_rate"],
            "batch_size": training.batch_size,
            "epochs": int(attrs["best_epoch"]),
            "weight_decay": training.weight_decay,
            "patience": 0,
            "task_weights": training.task_weights,
            "seed": int(attrs["seed"]),
            # Only when not the default, as a run's config.json has it (TrainConfig.to_dict).
            **{key: value for key, value in training.to_dict().items() if key in OPTIONAL_TRAINING_KEYS},
        },
        "dataset": options.dataset,
        "tuned": {
            "study": name,
            "storage": shown_storage,
            "trial": best.number,
            "validation": {
                "task": main_task.name,
                "metric": metric,
                "value": _value(best) if metric == "auc" else -_value(best),
            },
            "trials": counts,
            "sampler": options.sampler,
            "max_units": options.max_units,
            "max_epochs": training.epochs,
            "tuning_patience": training.patience,
        },
    }


def _count_finished(trials: list[FrozenTrial]) -> int:
    return sum(t.state in FINISHED_STATES for t in trials)


def _trial_line(trial: FrozenTrial, best: FrozenTrial | None, main_task: Task, total: int) -> str:
    """One line per finished trial: its number, outcome, score (and the study's best complete trial
    `best`, from trials fetched after this one was told), what it trained, time."""
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else float("nan")
    )
    # The hyperparameters as trained (the drawn expert_units is capped by experts × units ≤ max_units).
    settings = {"learning_rate": trial.params.get("learning_rate"), **trial.user_attrs.get("hyperparameters", {})}
    params = "  ".join(
        f"{key} {value:.3g}"
        if isinstance(value, float)
        else f"{key} {','.join(map(str, value))}"
        if isinstance(value, list)
        else f"{key} {value}"
        for key, value in settings.items()
    )
    if trial.state == TrialState.PRUNED:
        epochs = max(trial.intermediate_values, default=0)
        outcome = f"pruned after epoch {epochs}" if "diverged" not in trial.user_attrs else "diverged"
    else:
        outcome = describe_score(main_task, _value(trial))
        outcome += (
            "  (best so far)"
            if best is None or best.number == trial.number
            else f"  (best: trial {best.number}, {describe_score(main_task, _value(best)).split()[-1]})"
        )
    return f"trial {trial.number:>3} of {total}: {outcome}  {params}  [{seconds:.1f}s]"


def _print_summary(document: dict[str, Any], report: WorkerReport, path: Path) -> None:
    tuned = document["tuned"]
    settings = ", ".join(f"{key} {value}" for key, value in document["hyperparameters"].items())
    training = document["training"]
    print(
        f"study {tuned['study']}: {tuned['trials']['complete']} complete + {tuned['trials']['pruned']} pruned trials "
        f"({report.finished} by this worker)"
    )
    print(
        f"best: trial {tuned['trial']}, validation {tuned['validation']['task']} {tuned['validation']['metric']} "
        f"{tuned['validation']['value']:.4f}; {document['model']} {settings}, learning rate "
        f"{training['learning_rate']:.3g}, {training['epochs']} epochs"
    )
    print(f"wrote {path}; train it with: mmoe train --config {path} --out runs/{document['model']}-tuned")
