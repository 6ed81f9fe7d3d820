"""Hyperparameter tuning: the search space and the trial objective shared by `mmoe tune` and the
census study of `mmoe reproduce`, and the worker loop with which many `mmoe tune` processes, on one
machine or many, work on one Optuna study.

What is tuned follows the paper (Section 6.2): a Gaussian-process bandit (here Optuna's GPSampler;
TPE as an option) maximises the main task's validation metric — the number early stopping already
uses, `mmoe.train.metrics.main_score`: AUC for a binary main task, −MSE for a regression one —
over the learning rate, the model's sizes (`suggest`; at most `max_units` hidden units per layer,
for the MoE models experts × units per expert ≤ `max_units`, the paper's cap being 2048), and the
training steps, taken as the epoch with the best validation metric. Every epoch's validation metric
is reported to the trial, so that a pruner (MedianPruner by default) can stop hopeless trials early.

Many workers, an exact total
----------------------------
Workers share a study through an Optuna RDB storage (SQLite on one machine, PostgreSQL or MySQL
across machines) and together finish exactly `total` trials (complete or pruned). Counting finished
trials before starting one is not enough: when one trial is left, two workers can both see it
missing and both start it (`optuna.study.MaxTrialsCallback` overshoots exactly so). Here the trial
*number* is the ticket: Optuna numbers a study's trials densely, in creation order, under a lock on
the study's row, so a trial's number tells which trials were created before it. A worker first
creates its trial (`study.ask()`), then counts the trials numbered below it that still hold a slot
— waiting, running, complete or pruned; a failed trial gives its slot back — and trains only when
fewer than `total` do (`claim_slot`). Otherwise the trial is surplus: it is marked failed, with the
user attribute "surplus", before a single parameter is drawn. Why the total is exact:

* never more: of any `total` + 1 finished trials, the highest-numbered one was created after the
  other `total`, which held their slots from their creation on (a trial reaches "complete" or
  "pruned" only from "running", and nothing leaves those states), so its count was `total` and it
  cannot have trained;
* never fewer: a worker stops only once `total` trials are finished; while the remaining slots are
  held by other workers' running trials, it waits and looks again, so a slot given back (a trial
  that failed, a worker that crashed) is taken by whoever is left.

A worker that dies without a word (SIGKILL, power loss) leaves its trial "running": every worker
sends a heartbeat for its trial (`HEARTBEAT_SECONDS`), and a trial without one for `GRACE_SECONDS`
is failed by any other worker, or by the next `mmoe tune` with the same --storage/--study, which
then goes on until the total is reached. A worker whose trial was failed that way while it was
still training (it was suspended, say) finds out when it reports the result, and drops it: the
storage refuses to change a finished trial, so the slot is counted once. Without a crash the
finished trials are numbered exactly 0 … total − 1. (Optuna never declares dead a trial that has
no heartbeat at all; a worker records one right after creating its trial, so only a kill in that
instant would leave a slot held for good; mark such a trial failed with Optuna's API.)
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
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

SAMPLERS = ("gp", "tpe")
LEARNING_RATES = (1e-4, 1e-2)  # the learning rate's search range (log scale), for every model
PAPER_MAX_UNITS = 2048
# States in which a trial holds one of the study's `total` slots; only "failed" gives it back.
SLOT_STATES = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60  # generous: a live worker on a loaded machine must never be declared dead
POLL_SECONDS = 2.0  # how often a worker with nothing to train looks at the study again
IDENTITY_ATTR = "mmoe_tune"  # the study's user attribute that holds what it tunes (see open_study)


# -- the search space and one trial, shared with the census study ---------------------------------
def suggest(trial: optuna.Trial, model: str, max_units: int) -> dict[str, Any]:
    """The model's hyperparameters for one trial (units as one-layer tuples), within the caps."""
    hp: dict[str, Any] = {}
    if model in ("omoe", "mmoe"):
        experts = trial.suggest_int("num_experts", 2, 16)
        units = trial.suggest_int("expert_units", 4, max(4, max_units), log=True)
        # The paper's limit: experts × units per expert ≤ the cap.
        hp = {"num_experts": experts, "expert_units": (max(1, min(units, max_units // experts)),)}
    else:
        hidden = trial.suggest_int("hidden_units", 8, max(8, max_units), log=True)
        hp = {"hidden_units": (hidden,)}
        if model == "l2-constrained":
            hp["l2_alpha"] = trial.suggest_float("l2_alpha", 1e-6, 1e-1, log=True)
        if model == "tensor-factorization":
            r1 = trial.suggest_int("r1", 2, 64, log=True)
            r2 = trial.suggest_int("r2", 2, 64, log=True)
            r3 = trial.suggest_int("r3", 1, 2)
            hp["ranks"] = (r1, min(r2, hidden), r3)
    return hp


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


def train_trial(trial: optuna.Trial, data: MultiTaskData, model: str, training: TrainConfig, max_units: int,
                on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrialOutcome:
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
    return MmoeError(f"--sampler {name!r}: unknown sampler; expected one of: gp (Gaussian process, the paper's "
                     f"choice), tpe (tree-structured Parzen estimator)")


def make_pruner(prune: bool) -> optuna.pruners.BasePruner:
    """MedianPruner: after 5 finished trials, a trial whose validation metric at an epoch is below
    the median of the earlier trials at that epoch stops there. NopPruner when pruning is off."""
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if prune else optuna.pruners.NopPruner()


class EpochPruning:
    """The trainer's `on_epoch` callback for a trial: reports the epoch's main validation score to
    the trial (step = epoch) and, when the study's pruner finds the trial hopeless, ends training by
    raising optuna.TrialPruned (it propagates out of `fit`, and the worker records the trial as
    pruned, with its last reported score as its value)."""

    def __init__(self, trial: optuna.Trial, main_task: Task,
                 then: Callable[[dict[str, Any]], None] | None = None) -> None:
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


# -- storage and study ------------------------------------------------------------------------------
def shown_url(url: str) -> str:
    """The storage URL with its password hidden (it goes into messages and the written config)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can parse: nothing that looks like a password to hide
        return url


def open_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage at `url`, with heartbeats (see the module docstring). Workers started
    at the same moment on a new database race to create its tables and version rows; the loser
    gets an error, and a retry finds everything in place, so failures are retried a few times.
    MmoeError when the URL cannot be opened."""
    import sqlalchemy.exc

    shown = shown_url(url)
    expected = "expected an SQLAlchemy URL such as sqlite:///tune.db or postgresql://user:password@host/database"
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Workers of one SQLite file queue for its write lock; Python's default 5 s wait is too
        # short when a peer writes a trial's results.
        engine_kwargs["connect_args"] = {"timeout": 60}
        database = url.split("///", 1)[1] if "///" in url else ""
        if database and database != ":memory:" and not Path(database).parent.is_dir():
            raise MmoeError(f"--storage {shown}: the folder {Path(database).parent} does not exist; {expected}")
    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
        except (ImportError, sqlalchemy.exc.ArgumentError, ValueError) as error:  # no driver, not a URL
            raise MmoeError(f"--storage {shown}: optuna cannot open it ({_first_line(error)}); {expected}") from None
        except Exception as error:
            if attempt == attempts:
                raise MmoeError(f"--storage {shown}: optuna cannot open it ({_first_line(error)}); "
                                f"{expected}") from None
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("not reached")


def open_study(storage: optuna.storages.BaseStorage, name: str, identity: dict[str, Any],
               sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner,
               shown_storage: str = "memory") -> optuna.Study:
    """The study `name` in `storage`, created when it does not exist yet (by whichever worker comes
    first). `identity` (model, data set, search caps, training options) is stored with a new study
    and compared when an existing one is joined: trials of another model or data set must not mix,
    so a difference is an MmoeError naming it."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                    pruner=pruner, load_if_exists=True)
    except ValueError as error:  # e.g. an existing multi-objective or minimising study of that name
        raise MmoeError(f"--study {name} in {shown_storage}: {_first_line(error)}; expected a study made by "
                        f"`mmoe tune` or a new name") from None
    identity = to_jsonable(identity)
    saved = study.user_attrs.get(IDENTITY_ATTR)
    if saved is None and not study.get_trials(deepcopy=False):
        study.set_user_attr(IDENTITY_ATTR, identity)
        # Read back: a worker that started at the same moment may have written its own first.
        saved = study.user_attrs.get(IDENTITY_ATTR)
    if study.directions != [optuna.study.StudyDirection.MAXIMIZE] or saved != identity:
        differences = "; ".join(_differences(saved, identity)[:3]) if isinstance(saved, dict) else ""
        raise MmoeError(f"--study {name} in {shown_storage} tunes something else "
                        f"({differences or 'not a study of mmoe tune'}); expected the same model, data set, "
                        f"--max-units and training options, or a new --study name")
    return study


# -- the worker loop ----------------------------------------------------------------------------------
def claim_slot(study: optuna.Study, trial_number: int, total: int) -> bool:
    """Whether the trial numbered `trial_number` may train: True when fewer than `total` trials
    numbered below it hold a slot (waiting, running, complete or pruned). Trials are numbered in
    creation order, so those are exactly the trials that were created before it and have not
    failed; see the module docstring for why this makes the total exact."""
    earlier = sum(1 for t in study.get_trials(deepcopy=False, states=SLOT_STATES) if t.number < trial_number)
    return earlier < total


@dataclass
class WorkerReport:
    """What one worker did: trials it finished (complete or pruned), trials it created but gave
    back because every slot was taken (surplus), and trials it trained whose slot another worker
    had already given away (declared dead after `GRACE_SECONDS` without a heartbeat; result dropped)."""

    finished: int = 0
    surplus: int = 0
    dropped: int = 0
    # The study's trials as fetched when the worker returned (at least `total` of them finished):
    # what callers need of the study at the end, without fetching its trials once more.
    trials: list[FrozenTrial] = field(default_factory=list, repr=False)


def run_worker(study: optuna.Study, total: int, objective: Callable[[optuna.Trial], float], *,
               on_finished: Callable[[FrozenTrial, list[FrozenTrial]], None] | None = None,
               on_wait: Callable[[int, int], None] | None = None,
               heartbeat: optuna.storages.RDBStorage | None = None,
               poll_seconds: float = POLL_SECONDS) -> WorkerReport:
    """Runs trials of `study` until `total` of them are finished, counting every worker's.

    objective(trial) returns the value to maximise, or raises optuna.TrialPruned. on_finished(trial,
    trials) receives each trial this worker finished, with the study's trials as fetched right after
    it was told; on_wait(running, finished) is called while the remaining slots are held by
    `running` trials of other workers, `finished` trials being finished. heartbeat: the RDB storage
    to send heartbeats to while a trial trains (None: an in-memory study, one process). Any other
    exception from the objective (KeyboardInterrupt included) marks the trial failed, which gives
    its slot back, and propagates.

    The study's trials are fetched from storage once per look at the study (a full read of its
    trial table on a shared RDB) and once more per trial to claim its slot; the callbacks and the
    returned report get what was fetched, so that a finished trial costs two fetches in all."""
    report = WorkerReport()
    trials = _look(study)
    while True:
        finished = sum(t.state in FINISHED_STATES for t in trials)
        if finished >= total:
            report.trials = trials
            return report
        held = sum(t.state in SLOT_STATES for t in trials)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if held >= total and not waiting:  # the last slots are training in other workers
            if on_wait is not None:
                on_wait(held - finished, finished)
            time.sleep(poll_seconds)
            trials = _look(study)
            continue
        with warnings.catch_warnings():
            # Optuna's note that heartbeats are meant for Study.optimize: this loop sends its own (_heartbeat).
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            trial = study.ask()
        try:
            outcome, told = _run_trial(study, trial, total, objective, heartbeat)
        except BaseException:
            # Whatever went wrong (KeyboardInterrupt included), the trial must not keep its slot.
            with contextlib.suppress(Exception):
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        setattr(report, outcome, getattr(report, outcome) + 1)
        # The next look at the study, after the trial was told: it both decides whether to go on
        # and is what on_finished reports from (counts, the best trial) without a fetch of its own.
        trials = _look(study)
        if outcome == "finished" and on_finished is not None:
            on_finished(told, trials)


def _look(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials, fresh from storage, after failing those of dead workers."""
    _fail_stale_trials(study)
    return study.get_trials(deepcopy=False)


def _run_trial(study: optuna.Study, trial: optuna.Trial, total: int, objective: Callable[[optuna.Trial], float],
               heartbeat: optuna.storages.RDBStorage | None) -> tuple[str, FrozenTrial | None]:
    """Claims a slot for the trial just asked for and trains it: ("surplus", None) when the slot
    was taken, ("finished", trial) when it completed or was pruned, ("dropped", None) when another
    worker declared it dead meanwhile (its slot went to another trial; the result is not written)."""
    with _heartbeat(heartbeat, trial):
        if not claim_slot(study, trial.number, total):
            # Another worker took the last slot between our count and ask(): give the trial back.
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            return "surplus", None
        state, value = TrialState.COMPLETE, None
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except optuna.exceptions.UpdateFinishedTrialError:  # report() or set_user_attr() found it failed
            return "dropped", None
        try:
            told = study.tell(trial, value if state == TrialState.COMPLETE else None, state=state,
                              skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:  # failed by a peer between tell's check and its write
            return "dropped", None
    return ("finished", told) if told.state in FINISHED_STATES else ("dropped", None)


@contextlib.contextmanager
def _heartbeat(storage: optuna.storages.RDBStorage | None, trial: optuna.Trial) -> Iterator[None]:
    """Records the trial's heartbeat now and every HEARTBEAT_SECONDS until the block ends."""
    if storage is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is harmless; the grace period is long
                storage.record_heartbeat(trial._trial_id)
            if stop.wait(HEARTBEAT_SECONDS):
                return

    storage.record_heartbeat(trial._trial_id)  # at once: a trial without any heartbeat is never declared dead
    thread = threading.Thread(target=beat, name=f"mmoe-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _fail_stale_trials(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


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
    training = {key: value for key, value in options.training.to_dict().items()
                if key not in ("learning_rate", "threads", "eval_batch_size", "restore_best")}
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
    study = open_study(storage, name, study_identity(options),
                       make_sampler(options.sampler, options.sampler_seed, options.trials),
                       make_pruner(options.prune), shown)
    data = load_dataset(options.dataset)
    main_task = data.tasks[0]
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        drawn = draw_trial(trial, options.model, options.training, options.max_units)
        for key, value in (("worker", worker), ("hyperparameters", to_jsonable(drawn.hyperparameters)),
                           ("seed", drawn.config.seed)):
            trial.set_user_attr(key, value)
        try:
            result = fit(data, options.model, drawn.config, on_epoch=EpochPruning(trial, main_task),
                         **drawn.hyperparameters)
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
    bar = tqdm(total=options.trials, initial=min(finished_before, options.trials), desc=f"tuning {options.model}",
               unit="trial", disable=options.quiet, file=sys.stderr, dynamic_ncols=True)
    if not options.quiet and finished_before:
        bar.write(f"study {name} in {shown}: {finished_before} trials finished before, going on to {options.trials}",
                  file=sys.stderr)

    # Per finished trial, the progress, the trial's line and best.json all come from the one list of
    # trials run_worker fetched after telling it (its best trial included); nothing is fetched here.
    def on_finished(trial: FrozenTrial, trials: list[FrozenTrial]) -> None:
        bar.n = min(_count_finished(trials), options.trials)
        bar.set_postfix_str("")
        bar.refresh()
        if not options.quiet:
            bar.write(_trial_line(trial, best_complete(trials, direction), main_task, options.trials),
                      file=sys.stderr)
        write_best(trials)

    def on_wait(running: int, finished: int) -> None:
        bar.n = min(finished, options.trials)
        bar.set_postfix_str(f"waiting for {running} trial(s) of other workers")
        bar.refresh()

    with bar:
        report = run_worker(study, options.trials, objective, on_finished=on_finished, on_wait=on_wait,
                            heartbeat=storage)
        bar.n = min(_count_finished(report.trials), options.trials)
        bar.set_postfix_str("")
    document = write_best(report.trials)
    if document is None:
        raise MmoeError(f"study {name} in {shown}: none of its {options.trials} trials completed (all pruned); "
                        f"expected at least one: rerun with a larger --trials (the study goes on), or a new --study "
                        f"with --no-prune")
    _print_summary(document, report, out / "best.json")
    return document


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
    return pick(complete, key=lambda t: t.value)  # max/min keep the first of equals: the lowest number


def best_config(best: FrozenTrial, trials: list[FrozenTrial], options: TuneOptions, main_task: Task,
                shown_storage: str, name: str) -> dict[str, Any]:
    """train_config_document's arguments for the study's best complete trial `best` (see
    best_complete), with the complete and pruned counts of `trials`, the study's trials as fetched:
    its model, hyperparameters, learning rate and seed, epochs = its best epoch (the paper's tuned
    training steps; patience 0, so that exactly those are trained), the other training options and
    the data set as tuned. Trained with these, a model repeats the trial's best epoch."""
    attrs = best.user_attrs
    if "hyperparameters" not in attrs:
        raise MmoeError(f"study {name} in {shown_storage}: its best trial {best.number} was not made by "
                        f"`mmoe tune` (no hyperparameters recorded); expected a study of `mmoe tune`")
    training = options.training
    states = [t.state for t in trials]
    counts = {state.name.lower(): states.count(state) for state in (TrialState.COMPLETE, TrialState.PRUNED)}
    metric = main_metric_name(main_task)
    return {
        "model": options.model,
        # A copy: the fetched trials are the storage cache's own objects (fetched without deepcopy).
        "hyperparameters": copy.deepcopy(attrs["hyperparameters"]),
        "training": {"learning_rate": best.params["learning_rate"], "batch_size": training.batch_size,
                     "epochs": int(attrs["best_epoch"]), "weight_decay": training.weight_decay, "patience": 0,
                     "task_weights": training.task_weights, "seed": int(attrs["seed"])},
        "dataset": options.dataset,
        "tuned": {"study": name, "storage": shown_storage, "trial": best.number,
                  "validation": {"task": main_task.name, "metric": metric,
                                 "value": best.value if metric == "auc" else -best.value},
                  "trials": counts, "sampler": options.sampler, "max_units": options.max_units,
                  "max_epochs": training.epochs, "tuning_patience": training.patience},
    }


def _count_finished(trials: list[FrozenTrial]) -> int:
    return sum(t.state in FINISHED_STATES for t in trials)


def _trial_line(trial: FrozenTrial, best: FrozenTrial | None, main_task: Task, total: int) -> str:
    """One line per finished trial: its number, outcome, score (and the study's best complete trial
    `best`, from trials fetched after this one was told), what it trained, time."""
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else float("nan")
    # The hyperparameters as trained (the drawn expert_units is capped by experts × units ≤ max_units).
    settings = {"learning_rate": trial.params.get("learning_rate"), **trial.user_attrs.get("hyperparameters", {})}
    params = "  ".join(f"{key} {value:.3g}" if isinstance(value, float) else
                       f"{key} {','.join(map(str, value))}" if isinstance(value, list) else f"{key} {value}"
                       for key, value in settings.items())
    if trial.state == TrialState.PRUNED:
        epochs = max(trial.intermediate_values, default=0)
        outcome = f"pruned after epoch {epochs}" if "diverged" not in trial.user_attrs else "diverged"
    else:
        outcome = describe_score(main_task, trial.value)
        outcome += "  (best so far)" if best is None or best.number == trial.number else \
            f"  (best: trial {best.number}, {describe_score(main_task, best.value).split()[-1]})"
    return f"trial {trial.number:>3} of {total}: {outcome}  {params}  [{seconds:.1f}s]"


def _print_summary(document: dict[str, Any], report: WorkerReport, path: Path) -> None:
    tuned = document["tuned"]
    settings = ", ".join(f"{key} {value}" for key, value in document["hyperparameters"].items())
    training = document["training"]
    print(f"study {tuned['study']}: {tuned['trials']['complete']} complete + {tuned['trials']['pruned']} pruned trials "
          f"({report.finished} by this worker)")
    print(f"best: trial {tuned['trial']}, validation {tuned['validation']['task']} {tuned['validation']['metric']} "
          f"{tuned['validation']['value']:.4f}; {document['model']} {settings}, learning rate "
          f"{training['learning_rate']:.3g}, {training['epochs']} epochs")
    print(f"wrote {path}; train it with: mmoe train --config {path} --out runs/{document['model']}-tuned")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


def _differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """"key.sub: X there, Y now" for every value that differs, descending into objects."""
    lines = []
    for key in sorted(set(saved) | set(wanted)):
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            lines.append(f"{prefix}{key}: {_brief(old)} there, {_brief(new)} now")
    return lines


def _brief(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
