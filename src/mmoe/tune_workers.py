"""The protocol with which many `mmoe tune` processes, on one machine or many, work on one
Optuna study and together finish exactly the trials asked for: the storage (`open_storage`), the
study (`open_study`), and the worker loop (`run_worker`, `claim_slot`). What a trial does is the
caller's objective (`mmoe.tune`).

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
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mmoe.errors import MmoeError
from mmoe.io import to_jsonable

# States in which a trial holds one of the study's `total` slots; only "failed" gives it back.
SLOT_STATES = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60  # generous: a live worker on a loaded machine must never be declared dead
POLL_SECONDS = 2.0  # how often a worker with nothing to train looks at the study again
IDENTITY_ATTR = "mmoe_tune"  # the study's user attribute that holds what it tunes (see open_study)


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
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
                )
        except (ImportError, sqlalchemy.exc.ArgumentError, ValueError) as error:  # no driver, not a URL
            raise MmoeError(f"--storage {shown}: optuna cannot open it ({_first_line(error)}); {expected}") from None
        except Exception as error:
            if attempt == attempts:
                raise MmoeError(
                    f"--storage {shown}: optuna cannot open it ({_first_line(error)}); {expected}"
                ) from None
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("not reached")


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    identity: dict[str, Any],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    shown_storage: str = "memory",
) -> optuna.Study:
    """The study `name` in `storage`, created when it does not exist yet (by whichever worker comes
    first). `identity` (model, data set, search caps, training options) is stored with a new study
    and compared when an existing one is joined: trials of another model or data set must not mix,
    so a difference is an MmoeError naming it."""
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True
        )
    except ValueError as error:  # e.g. an existing multi-objective or minimising study of that name
        raise MmoeError(
            f"--study {name} in {shown_storage}: {_first_line(error)}; expected a study made by "
            f"`mmoe tune` or a new name"
        ) from None
    identity = to_jsonable(identity)
    saved = study.user_attrs.get(IDENTITY_ATTR)
    if saved is None and not study.get_trials(deepcopy=False):
        study.set_user_attr(IDENTITY_ATTR, identity)
        # Read back: a worker that started at the same moment may have written its own first.
        saved = study.user_attrs.get(IDENTITY_ATTR)
    if study.directions != [optuna.study.StudyDirection.MAXIMIZE] or saved != identity:
        differences = "; ".join(_differences(saved, identity)[:3]) if isinstance(saved, dict) else ""
        raise MmoeError(
            f"--study {name} in {shown_storage} tunes something else "
            f"({differences or 'not a study of mmoe tune'}); expected the same model, data set, "
            f"--max-units and training options, or a new --study name"
        )
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


def run_worker(
    study: optuna.Study,
    total: int,
    objective: Callable[[optuna.Trial], float],
    *,
    on_finished: Callable[[FrozenTrial, list[FrozenTrial]], None] | None = None,
    on_wait: Callable[[int, int], None] | None = None,
    heartbeat: optuna.storages.RDBStorage | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> WorkerReport:
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
        if outcome == "finished" and on_finished is not None and told is not None:
            on_finished(told, trials)


def _look(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials, fresh from storage, after failing those of dead workers."""
    _fail_stale_trials(study)
    return study.get_trials(deepcopy=False)


def _run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    total: int,
    objective: Callable[[optuna.Trial], float],
    heartbeat: optuna.storages.RDBStorage | None,
) -> tuple[str, FrozenTrial | None]:
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
            told = study.tell(
                trial, value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True
            )
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


def _differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """ "key.sub: X there, Y now" for every value that differs, descending into objects."""
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
