"""`mmoe tune`: workers sharing one study finish exactly --trials trials, pruning, the best
configuration trained by `mmoe train --config`, a rerun that continues, and bad input.

Everything trains on 2,000 synthetic rows for one or two epochs with tiny models and one thread."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import mmoe.tune
import mmoe.tune_workers
from mmoe.cli import build_parser, main
from mmoe.data.dataset import Task
from mmoe.models import MODELS
from mmoe.train.trainer import TrainConfig
from mmoe.tune import EpochPruning, best_complete, make_pruner, suggest
from mmoe.tune_workers import claim_slot, run_worker

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = ("--dataset", "synthetic", "--rows", "2000")
SMALL = ("--max-units", "16", "--threads", "1", "--quiet")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def finished_numbers(url: str, name: str) -> list[int]:
    study = optuna.load_study(study_name=name, storage=url)
    return sorted(t.number for t in study.get_trials(states=FINISHED))


def test_two_processes_share_one_sqlite_study_and_finish_exactly_the_requested_trials(tmp_path: Path) -> None:
    trials, url = 6, f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mmoe",
                "tune",
                *SYNTHETIC,
                *SMALL,
                "--epochs",
                "1",
                "--trials",
                str(trials),
                "--sampler",
                "tpe",
                "--storage",
                url,
                "--study",
                "shared",
                "--out",
                str(tmp_path / f"worker{w}"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err

    # Exactly `trials` finished, numbered 0..trials-1 (none lost, none twice); nothing left running;
    # any failed trial is a surplus one given back in the race for the last slot.
    assert finished_numbers(url, "shared") == list(range(trials))
    study = optuna.load_study(study_name="shared", storage=url)
    others = [t for t in study.get_trials() if t.state not in FINISHED]
    assert all(t.state == TrialState.FAIL and t.user_attrs.get("surplus") for t in others), others
    assert all({"worker", "hyperparameters"} <= set(t.user_attrs) for t in study.get_trials(states=FINISHED))
    # Each worker returns only once the study is complete, so both wrote the same best configuration.
    best = [json.loads((tmp_path / f"worker{w}" / "best.json").read_text()) for w in range(2)]
    assert best[0] == best[1] and sum(best[0]["tuned"]["trials"].values()) == trials


def test_the_worker_that_loses_the_race_for_the_last_slot_gives_its_trial_back(tmp_path: Path) -> None:
    """Both workers counted one free slot; A created its trial first, so B's trial is surplus: B marks
    it failed without training, waits for A's trial, and ends with the study at exactly the total."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study_a = optuna.create_study(study_name="race", storage=url, direction="maximize")
    study_b = optuna.load_study(study_name="race", storage=url)  # another process's view of the same study
    study_a.tell(study_a.ask(), 0.5)  # one of the two trials is already finished
    taken: list[optuna.Trial] = []
    ask_of_b = study_b.ask

    def a_wins_the_race() -> optuna.Trial:
        taken.append(study_a.ask())  # A creates its trial between B's count and B's ask
        return ask_of_b()

    def a_finishes(running: int, finished: int) -> None:
        assert (running, finished) == (1, 1)
        study_a.tell(taken[0], 0.7)

    study_b.ask = a_wins_the_race  # type: ignore[method-assign]
    trained: list[int] = []
    report = run_worker(
        study_b, 2, lambda trial: trained.append(trial.number) or 1.0, on_wait=a_finishes, poll_seconds=0.01
    )
    assert trained == [] and (report.finished, report.surplus) == (0, 1)
    assert finished_numbers(url, "race") == [0, 1]
    surplus = [t for t in study_a.get_trials() if t.state == TrialState.FAIL]
    assert [t.number for t in surplus] == [2] and surplus[0].user_attrs["surplus"] is True
    # The rule itself: a trial trains when fewer than `total` trials numbered below it hold a slot.
    assert claim_slot(study_a, 1, 2) and not claim_slot(study_a, 2, 2) and claim_slot(study_a, 2, 3)


def test_a_failing_trial_gives_its_slot_back_and_pruned_trials_count_towards_the_total() -> None:
    study = optuna.create_study(direction="maximize")
    calls = []

    def objective(trial: optuna.Trial) -> float:
        calls.append(trial.number)
        if trial.number == 1:
            raise KeyboardInterrupt  # a worker stopped mid-trial: its trial fails, its slot is free again
        if trial.number % 2 == 0:
            raise optuna.TrialPruned()
        return float(trial.number)

    with pytest.raises(KeyboardInterrupt):
        run_worker(study, 4, objective)
    report = run_worker(study, 4, objective)  # the rerun goes on to the total
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.PRUNED, TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE, TrialState.PRUNED]
    assert report.finished == 3 and calls == [0, 1, 2, 3, 4]


def test_a_finished_trial_costs_two_fetches_of_the_study_trials(
    tmp_path: Path, capsys, monkeypatch, one_torch_thread: None
) -> None:
    """On a shared RDB every read of the study's trials is a query over its trial table, and
    `study.best_trial` another query: per finished trial `mmoe tune` reads the trials once to claim
    its slot and once after telling it, and takes the counts, its progress line, the best trial and
    best.json from that read. The reads Optuna makes for its sampler and pruner are not counted."""
    tune_files = {os.path.abspath(module.__file__) for module in (mmoe.tune, mmoe.tune_workers)}
    optunas_own = ("ask", "tell", "report", "should_prune")  # sampler and pruner reads, on Optuna's account
    fetches: collections.Counter[str] = collections.Counter()

    def counted(method):  # one round-trip to the database, attributed to the optuna call mmoe.tune(_workers) made
        def wrapper(self, *args, **kwargs):
            frame, entry = sys._getframe(1), None
            while frame is not None and os.path.abspath(frame.f_code.co_filename) not in tune_files:
                frame, entry = frame.f_back, frame.f_code.co_name
            if frame is not None and entry not in optunas_own and not entry.startswith("suggest_"):
                fetches[f"{frame.f_code.co_name}->{entry}"] += 1
            return method(self, *args, **kwargs)

        return wrapper

    for name in ("_get_trials", "_get_best_trial_id"):  # what get_trials and best_trial query with
        monkeypatch.setattr(optuna.storages.RDBStorage, name, counted(getattr(optuna.storages.RDBStorage, name)))
    url, out = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "tune"
    # Not --quiet: the progress line of every trial is written too, with the best trial so far.
    options = (
        *SYNTHETIC,
        "--max-units",
        "16",
        "--threads",
        "1",
        "--epochs",
        "1",
        "--sampler",
        "tpe",
        "--storage",
        url,
        "--study",
        "s",
        "--out",
        out,
    )
    assert run_cli(capsys, "tune", *options, "--trials", "1")[0] == 0
    fetches.clear()
    code, stdout, err = run_cli(capsys, "tune", *options, "--trials", "4")  # 3 more trials
    assert code == 0, err
    assert err.count(" of 4: validation y1 mse") == 3 and "(3 by this worker)" in stdout
    # Once at the start (the trials finished before), once for the first look at the study, then
    # two per finished trial: its slot, and the look after it (which also says the total is reached).
    assert sum(fetches.values()) == 2 + 2 * 3, dict(fetches)
    assert fetches["claim_slot->get_trials"] == 3 and fetches["_look->get_trials"] == 1 + 3, dict(fetches)

    # What was picked from the fetched trials is what Optuna's storage names the best trial.
    study = optuna.load_study(study_name="s", storage=url)
    best = json.loads((out / "best.json").read_text())
    assert (
        best["tuned"]["trial"] == study.best_trial.number
        and best["tuned"]["validation"]["value"] == pytest.approx(-study.best_value)
        and best["tuned"]["trials"] == {"complete": 4, "pruned": 0}
    )
    assert f"best: trial {study.best_trial.number}," in stdout


def test_the_best_trial_is_picked_from_fetched_trials_as_optuna_picks_it() -> None:
    """Only complete trials count, by the study's direction, the lowest number on a tie (as Optuna's
    storages do); no complete trial: None, where study.best_trial raises ValueError."""
    for direction, values in (("maximize", [0.3, 0.7, 0.2, 0.7, 0.5]), ("minimize", [0.3, 0.1, 0.2, 0.1, 0.5])):
        for storage in (None, "sqlite:///:memory:"):
            study = optuna.create_study(direction=direction, storage=storage)
            assert best_complete(study.get_trials(), study.direction) is None
            study.tell(study.ask(), state=TrialState.PRUNED)
            study.tell(study.ask(), state=TrialState.FAIL)
            study.ask()  # running
            assert best_complete(study.get_trials(), study.direction) is None
            with pytest.raises(ValueError):
                _ = study.best_trial
            for value in values:
                study.tell(study.ask(), value)
            best = best_complete(study.get_trials(deepcopy=False), study.direction)
            assert best is not None and best.number == study.best_trial.number == 4, (direction, storage)
            pruned = study.ask()
            pruned.report(1e9 if direction == "maximize" else -1e9, step=1)  # a pruned trial's value never counts
            study.tell(pruned, state=TrialState.PRUNED)
            assert best_complete(study.get_trials(), study.direction).number == study.best_trial.number == 4


def test_pruning_stops_a_trial_below_the_median_of_earlier_trials_at_the_same_epoch() -> None:
    task = Task("income", "binary")
    study = optuna.create_study(direction="maximize", pruner=make_pruner(True))
    for _ in range(5):  # the pruner's startup trials, all at AUC 0.9 after epoch 1
        study.add_trial(optuna.trial.create_trial(value=0.9, intermediate_values={1: 0.9}))

    def epoch(auc: float) -> dict:
        return {"epoch": 1, "validation": {"income": {"auc": auc, "logloss": 0.3, "rows": 100}}}

    good, bad = study.ask(), study.ask()
    EpochPruning(good, task)(epoch(0.95))
    with pytest.raises(optuna.TrialPruned, match="validation income auc 0.6000"):
        EpochPruning(bad, task)(epoch(0.6))
    assert bad.storage.get_trial(bad._trial_id).intermediate_values == {1: 0.6}

    unpruned = optuna.create_study(direction="maximize", pruner=make_pruner(False))  # --no-prune
    for _ in range(5):
        unpruned.add_trial(optuna.trial.create_trial(value=0.9, intermediate_values={1: 0.9}))
    EpochPruning(unpruned.ask(), task)(epoch(0.6))


def test_the_tuned_configuration_trains_with_train_config_and_flags_override_it(
    tmp_path: Path, capsys, one_torch_thread: None
) -> None:
    out = tmp_path / "tune"
    code, stdout, err = run_cli(
        capsys, "tune", *SYNTHETIC, *SMALL, "--epochs", "2", "--trials", "2", "--seed", "5", "--out", out
    )
    assert code == 0, err
    assert (out / "study.db").is_file() and "best: trial" in stdout  # the default storage: a SQLite file in --out
    best = json.loads((out / "best.json").read_text())
    assert best["model"] == "mmoe" and best["training"]["seed"] == 5 + best["tuned"]["trial"]

    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--config", out / "best.json", "--threads", "1", "--quiet", "--out", run)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "mmoe" and config["dataset"] == best["dataset"]
    assert {k: config["hyperparameters"][k] for k in best["hyperparameters"]} == best["hyperparameters"]
    assert {k: config["training"][k] for k in best["training"]} == best["training"]
    # Same data, seed, hyperparameters and epochs: the run repeats the best trial's validation metric.
    validation = json.loads((run / "metrics.json").read_text())["validation"]["y1"]["mse"]
    assert validation == pytest.approx(best["tuned"]["validation"]["value"], rel=1e-5)

    # Flags given explicitly win, even when they repeat a default (--seed 0); the rest comes from the file.
    code, _, err = run_cli(
        capsys,
        "train",
        "--config",
        out / "best.json",
        "--seed",
        "0",
        "--epochs",
        "1",
        "--split-seed",
        "4",
        "--num-experts",
        "3",
        "--threads",
        "1",
        "--quiet",
        "--out",
        run,
    )
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["seed"] == 0 and config["training"]["epochs"] == 1
    assert config["training"]["learning_rate"] == best["training"]["learning_rate"]
    assert config["hyperparameters"]["num_experts"] == 3
    assert config["dataset"] == {**best["dataset"], "split_seed": 4}


def test_a_rerun_continues_the_study_up_to_the_new_total(tmp_path: Path, capsys, one_torch_thread: None) -> None:
    url, out = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "tune"
    options = (*SYNTHETIC, *SMALL, "--epochs", "1", "--storage", url, "--study", "s", "--out", out)
    assert run_cli(capsys, "tune", *options, "--trials", "1")[0] == 0
    assert run_cli(capsys, "tune", *options, "--trials", "3")[0] == 0
    assert finished_numbers(url, "s") == [0, 1, 2]
    code, stdout, _ = run_cli(capsys, "tune", *options, "--trials", "2")  # already there: no trial, same best
    assert code == 0 and "(0 by this worker)" in stdout and finished_numbers(url, "s") == [0, 1, 2]
    # Another model in the same study is refused before any training.
    code, _, err = run_cli(capsys, "tune", *options, "--trials", "3", "--model", "omoe")
    assert code == 2 and "model: 'mmoe' there, 'omoe' now" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (("--trials", "0"), ("--trials", "at least 1")),
        (("--sampler", "annealing"), ("--sampler", "'annealing'", "gp", "tpe")),
        (("--model", "gpt"), ("--model", "gpt", "mmoe")),
        (("--max-units", "0"), ("--max-units",)),
        (("--storage", "nosuchdb://somewhere/x"), ("--storage", "nosuchdb://somewhere/x", "optuna cannot open it")),
        (("--storage", "postgresql+nosuchdriver://me:secret@localhost/db"), ("--storage", "me:***@localhost")),
        (("--storage", "sqlite:////no/such/folder/study.db"), ("--storage", "/no/such/folder", "does not exist")),
    ],
)
def test_bad_tune_options_end_with_one_line(
    tmp_path: Path, capsys, args: tuple[str, ...], expect: tuple[str, ...]
) -> None:
    code, _, err = run_cli(capsys, "tune", *SYNTHETIC, *SMALL, "--out", tmp_path / "tune", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mmoe: error: "), err
    for fragment in expect:
        assert fragment in lines[0], (fragment, lines[0])
    assert "secret" not in err and not (tmp_path / "tune" / "best.json").exists()


@pytest.mark.parametrize(
    ("document", "expect"),
    [
        (None, ("no such file",)),
        ("{not json", ("not valid JSON",)),
        ({"model": "gpt"}, ('"model"', "gpt")),
        # The key in quotes: "learning_rat" alone is in every such line, as a prefix of the expected learning_rate.
        ({"model": "mmoe", "training": {"learning_rat": 0.1}}, ("training option 'learning_rat' = 0.1 cannot be set",)),
        ({"model": "mmoe", "training": {"epochs": "many"}}, ("'epochs'", "an integer")),
        ({"model": "mmoe", "hyperparameters": {"expert_units": [0]}}, ("'expert_units'", "positive integer")),
    ],
)
def test_bad_config_files_end_with_one_line(tmp_path: Path, capsys, document: object, expect: tuple[str, ...]) -> None:
    path = tmp_path / "config.json"
    if document is not None:
        path.write_text(document if isinstance(document, str) else json.dumps(document))
    code, _, err = run_cli(capsys, "train", "--config", path, "--out", tmp_path / "run")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"mmoe: error: --config {path}"), err
    for fragment in expect:
        assert fragment in lines[0], (fragment, lines[0])


def test_help_documents_tune_and_the_precedence_of_train_config() -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    tune_help = " ".join(subparsers.choices["tune"].format_help().split())
    for option in (
        "--trials",
        "--storage",
        "--study",
        "--sampler",
        "--no-prune",
        "--max-units",
        "--quiet",
        "(default: 100)",
    ):
        assert option in tune_help
    train_help = " ".join(subparsers.choices["train"].format_help().split())
    assert "--config FILE" in train_help
    assert "A flag given explicitly on this command line always wins over the file" in train_help


def paper_search_space(trial: optuna.Trial, model: str, max_units: int) -> dict:
    """The search space as `mmoe.tune.suggest` drew it before each model declared its own: the
    paper's limits (Section 6.2), the reference the models' `search_space` must keep to."""
    if model in ("omoe", "mmoe"):
        experts = trial.suggest_int("num_experts", 2, 16)
        units = trial.suggest_int("expert_units", 4, max(4, max_units), log=True)
        return {"num_experts": experts, "expert_units": (max(1, min(units, max_units // experts)),)}
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


# The paper's seven models, whose search space moved from tune.suggest to the models unchanged
# (paper_search_space is the old code); later models' spaces are tested beside them (test_ple.py).
@pytest.mark.parametrize("model", list(MODELS)[:7])
@pytest.mark.parametrize("max_units", [16, 2048])
def test_each_models_search_space_draws_what_the_papers_limits_drew(model: str, max_units: int) -> None:
    """Same names, distributions and order of draws: the same sampler seed gives the same trials."""
    studies = [
        optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=7, n_startup_trials=3))
        for _ in range(2)
    ]
    for number in range(6):
        drawn = []
        for study, space in zip(studies, (suggest, paper_search_space)):
            trial = study.ask()
            trial.suggest_float("learning_rate", *mmoe.tune.LEARNING_RATES, log=True)  # drawn first, as draw_trial does
            drawn.append((space(trial, model, max_units), trial.params, trial.distributions))
            study.tell(trial, float(number % 3))
        assert drawn[0] == drawn[1], (model, number)
        hyperparameters = drawn[0][0]
        if model in ("omoe", "mmoe"):
            assert hyperparameters["num_experts"] * hyperparameters["expert_units"][0] <= max_units
        else:
            assert hyperparameters["hidden_units"][0] <= max(8, max_units)


def test_the_gp_sampler_trains_every_trial_to_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna's GPSampler ignores pruned trials, so pruning under it would propose a pruned point
    again and again: `run_tune` gives it no pruner, and TPE the median pruner."""
    tune = mmoe.tune

    chosen: list[bool] = []
    real = tune.make_pruner
    monkeypatch.setattr(tune, "make_pruner", lambda prune: chosen.append(prune) or real(prune))
    for sampler in ("gp", "tpe"):
        options = tune.TuneOptions(
            model="shared-bottom",
            trials=1,
            dataset={"kind": "synthetic", "config": {"rows": 300, "dim": 4}, "split_seed": 0},
            training=TrainConfig(epochs=1, batch_size=64),
            out=tmp_path / sampler,
            sampler=sampler,
            sampler_seed=0,
            quiet=True,
        )
        tune.run_tune(options)
    assert chosen == [False, True]
