"""Study `selection-bias` (beyond the paper): purchase after a click, on the click-log generator.

The question ESMM (Ma et al., SIGIR 2018) was written for: a purchase is only observed after a
click, so a conversion model trained on clicked impressions learns from a biased sample. And
the claim often made for MMoE (and the reason the paper studies task correlation): its gates
make it insensitive to how related the tasks are, where models that share everything (OMoE) or
tie the purchase to the click (ESMM) are not.

The data: `mmoe.data.clicklog` with `purchase_relatedness` r varied over
`scale.selection_relatedness` (0: purchase has drivers independent of click's; 1: the same drivers).
Its Bayes-optimal AUCs are known, so each run is measured by its regret, Bayes AUC − model AUC,
on the same test rows (a change of r changes how hard the task is; the regret does not mix the two).

The arms (ARMS: label -> model, training):
    conditional   tasks click, purchase given click; purchase trained on clicked rows (naive CVR)
    entire-space  the same tasks trained ESMM's way: click ∧ purchase over every impression
    entire-space+ipw  ESMM's way plus ESCM²'s counterfactual term (Wang et al., SIGIR 2022): purchase's
                  own loss on clicked impressions weighted by 1 / P̂(click), with weight
                  COUNTERFACTUAL_WEIGHT (`mmoe.train.loss.MultiTaskLoss`)
    funnel        AITM's own setting: tasks click, purchase over every impression, purchase's
                  label click ∧ purchase (0 where not clicked), so that its calibrator's
                  P(purchase) ≤ P(click) holds; its P(purchase | click) is σ(o_p) / σ(o_c)
Measured per run on the test rows, from the predicted P(click), P(purchase | click) and their
product P(click ∧ purchase): the purchase AUC over clicked impressions ("conditional", P(purchase
| click) against purchase) and over all impressions ("joint", P(click ∧ purchase) against click ∧
purchase), each with its Bayes AUC and regret.

Protocol (as the census study's, with the synthetic study's fixed training length): per arm,
`selection_trials` trials of Optuna's GP sampler over the learning rate and the model's own
`search_space` (≤ `selection_max_units` units), on a log of the middle relatedness with a seed
disjoint from the repeats', maximising the conditional purchase AUC on the validation split after
`selection_epochs` epochs; then `selection_repeats` runs of the tuned configuration at every r,
run i on the log of seed i (the same impressions and clicks at every r: the generator changes only
the purchase labels with r) from initialisation seed i, so runs pair across arms and across r.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import optuna
import torch

from mmoe.data.clicklog import ClickLogConfig, auc, load_clicklog
from mmoe.data.dataset import MultiTaskData, Split
from mmoe.experiments import stats
from mmoe.experiments.context import StudyContext, map_units
from mmoe.io import to_jsonable
from mmoe.models import hyperparameter_options
from mmoe.runs import fit
from mmoe.spec import Task
from mmoe.train.trainer import TrainConfig, TrainResult, predict_outputs
from mmoe.tune import draw_trial, make_sampler

NAME = "selection-bias"
TITLE = "Beyond the paper: selection bias and task relatedness on the click-log generator"
ARMS: dict[str, tuple[str, str]] = {
    "esmm": ("esmm", "entire-space"),
    "aitm": ("aitm", "funnel"),
    "mmoe": ("mmoe", "conditional"),
    "mmoe-entire-space": ("mmoe", "entire-space"),
    "escm2-ipw": ("esmm", "entire-space+ipw"),
    "ple": ("ple", "conditional"),
    "omoe": ("omoe", "conditional"),
}
MEASURES = ("conditional", "joint")  # the purchase AUC over clicked impressions, over all impressions
BATCH_SIZE = 512
TUNE_SEED_OFFSET = 1_000_000  # the tuning log's seed: disjoint from the repeats' logs
TUNE_RELATEDNESS = 0.5
# ESCM²'s IPW term beside the joint loss, 1:1 (PaddleRec's ESCM² weighs them 0.5 and 0.5).
COUNTERFACTUAL_WEIGHT = 1.0


def generator_config(ctx: StudyContext, relatedness: float, seed: int) -> ClickLogConfig:
    scale = ctx.scale
    return ClickLogConfig(
        rows=scale.selection_rows,
        users=scale.selection_users,
        items=scale.selection_items,
        purchase_relatedness=relatedness,
        seed=seed,
    )


def clicklog_data(ctx: StudyContext, relatedness: float, seed: int, training: str) -> MultiTaskData:
    """The log of `seed` at `relatedness` with the tasks of the arm's `training` (module docstring):
    purchase given click, or (funnel) purchase over every impression labelled click ∧ purchase."""
    data = load_clicklog(generator_config(ctx, relatedness, seed), split_seed=seed)
    click, purchase = data.tasks
    if training != "funnel":
        return replace(data, tasks=[click, replace(purchase, given="click")])

    def funnel(split: Split) -> Split:
        labels = split.labels.clone()
        labels[:, 1] = torch.nan_to_num(labels[:, 1], nan=0.0) * labels[:, 0]
        return replace(split, labels=labels)

    return replace(
        data,
        tasks=[click, Task(purchase.name, "binary")],
        train=funnel(data.train),
        validation=funnel(data.validation),
        test=funnel(data.test),
    )


def train_config(ctx: StudyContext, training: str, learning_rate: float, seed: int) -> TrainConfig:
    """Fixed length (patience 0, the last epoch's weights): early stopping would follow click, the main task."""
    return TrainConfig(
        learning_rate=learning_rate,
        batch_size=BATCH_SIZE,
        epochs=ctx.scale.selection_epochs,
        patience=0,
        restore_best=False,
        seed=seed,
        threads=ctx.threads,
        entire_space=training in ("entire-space", "entire-space+ipw") if training != "funnel" else None,
        counterfactual_weight=COUNTERFACTUAL_WEIGHT if training == "entire-space+ipw" else 0.0,
    )


def purchase_aucs(result: TrainResult, split: Split, training: str) -> dict[str, float]:
    """{"click", "conditional", "joint"}: the AUCs of the model of `result` on `split` (module docstring)."""
    with torch.no_grad():
        outputs = predict_outputs(result.model, split).double()
    p_click = torch.sigmoid(outputs[:, 0])
    second = torch.sigmoid(outputs[:, 1])
    if training == "funnel":
        p_joint, p_conditional = second, second / p_click.clamp_min(1e-12)
    else:
        p_joint, p_conditional = p_click * second, second
    labels = split.labels.double()
    click = labels[:, 0] == 1
    joint_label = torch.nan_to_num(labels[:, 1], nan=0.0) * labels[:, 0]  # click ∧ purchase on every row
    return {
        "click": auc(labels[:, 0].numpy(), p_click.numpy()),
        "conditional": auc(joint_label[click].numpy(), p_conditional[click].numpy()),
        "joint": auc(joint_label.numpy(), p_joint.numpy()),
    }


def bayes_aucs(data: MultiTaskData) -> dict[str, float]:
    """The generator's Bayes-optimal test AUCs under this study's measure names."""
    bayes = data.info["bayes_auc"]
    return {"click": bayes["click"], "conditional": bayes["purchase"], "joint": bayes["click_and_purchase"]}


def tune(ctx: StudyContext, label: str) -> dict[str, Any]:
    """The arm's tuned configuration {"hyperparameters", "learning_rate", "validation_auc", "trials"} (cached)."""
    model, training = ARMS[label]
    scale = ctx.scale
    seed = ctx.seed * 100_000 + TUNE_SEED_OFFSET
    spec = {
        "arm": label,
        "model": model,
        "training": training,
        "trials": scale.selection_trials,
        "max_units": scale.selection_max_units,
        "generator": asdict(generator_config(ctx, TUNE_RELATEDNESS, seed)),
        "train": train_config(ctx, training, 1e-3, seed).to_dict() | {"learning_rate": None, "threads": None},
    }

    def compute() -> dict[str, Any]:
        torch.set_num_threads(ctx.threads)
        data = clicklog_data(ctx, TUNE_RELATEDNESS, seed, training)
        optuna.logging.set_verbosity(logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=make_sampler("gp", ctx.seed, scale.selection_trials))
        records: list[dict[str, Any]] = []
        base = train_config(ctx, training, 1e-3, seed)

        def objective(trial: optuna.Trial) -> float:
            outcome = draw_trial(trial, model, base, scale.selection_max_units)
            result = fit(data, model, outcome.config, **outcome.hyperparameters)
            score = purchase_aucs(result, data.validation, training)["conditional"]
            records.append(
                {
                    "trial": trial.number,
                    "learning_rate": outcome.learning_rate,
                    "hyperparameters": to_jsonable(outcome.hyperparameters),
                    "validation_auc": score,
                }
            )
            return score if np.isfinite(score) else -1.0

        study.optimize(objective, n_trials=scale.selection_trials)
        best = max(records, key=lambda r: r["validation_auc"] if np.isfinite(r["validation_auc"]) else -1.0)
        return {**{k: best[k] for k in ("hyperparameters", "learning_rate", "validation_auc")}, "trials": records}

    return ctx.cache.get_or_compute("selection-tuning", spec, compute)


def repeats(ctx: StudyContext, label: str, tuned: dict[str, Any], relatedness: float) -> list[dict[str, Any]]:
    """selection_repeats runs of the tuned arm at `relatedness`, run i on log seed and init seed
    seed·100000 + i, in cached chunks. A run: {"seed", "test": AUCs, "bayes": Bayes AUCs}."""
    model, training = ARMS[label]
    scale = ctx.scale
    options = hyperparameter_options()
    hp = {name: options[name].parse(value) for name, value in tuned["hyperparameters"].items()}
    base = ctx.seed * 100_000
    runs: list[dict[str, Any]] = []
    for start in range(0, scale.selection_repeats, scale.selection_chunk):
        seeds = list(range(base + start, base + min(start + scale.selection_chunk, scale.selection_repeats)))
        spec = {
            "arm": label,
            "model": model,
            "training": training,
            "hyperparameters": tuned["hyperparameters"],
            "train": train_config(ctx, training, tuned["learning_rate"], 0).to_dict() | {"seed": None, "threads": None},
            "generator": asdict(generator_config(ctx, relatedness, 0)),
            "seeds": seeds,
        }

        def compute() -> list[dict[str, Any]]:
            torch.set_num_threads(ctx.threads)
            done = []
            for seed in seeds:  # noqa: B023 (called at once, inside this iteration)
                data = clicklog_data(ctx, relatedness, seed, training)
                config = train_config(ctx, training, tuned["learning_rate"], seed)
                result = fit(data, model, config, **hp)
                done.append(
                    {"seed": seed, "test": purchase_aucs(result, data.test, training), "bayes": bayes_aucs(data)}
                )
            return done

        runs.extend(ctx.cache.get_or_compute("selection-runs", spec, compute))
    return runs


def study_arm(ctx: StudyContext, label: str) -> dict[str, Any]:
    """One arm: tuned, then its repeats at every relatedness, each with its summary."""
    model, training = ARMS[label]
    tuned = tune(ctx, label)
    per_r = {}
    for relatedness in ctx.scale.selection_relatedness:
        runs = repeats(ctx, label, tuned, relatedness)
        per_r[str(relatedness)] = {"runs": runs, "summary": summarize(runs)}
    return {
        "model": model,
        "training": training,
        "tuned": {k: v for k, v in tuned.items() if k != "trials"},
        "tuning_trials": tuned["trials"],
        "per_r": per_r,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per measure (click, conditional, joint): mean test AUC and its 95% t-interval, mean Bayes
    AUC, mean regret (Bayes − model) and its 95% t-interval."""
    summary: dict[str, Any] = {"runs": len(runs)}
    for measure in ("click", *MEASURES):
        values = [r["test"][measure] for r in runs]
        regrets = [r["bayes"][measure] - r["test"][measure] for r in runs]
        mean, low, high = stats.t_interval(values)
        regret, regret_low, regret_high = stats.t_interval(regrets)
        summary[measure] = {
            "mean": mean,
            "ci_low": low,
            "ci_high": high,
            "bayes": float(np.mean([r["bayes"][measure] for r in runs])),
            "regret": regret,
            "regret_ci": [regret_low, regret_high],
        }
    return summary


def run(ctx: StudyContext) -> dict[str, Any]:
    scale = ctx.scale
    labels = list(ARMS)
    weights = [scale.selection_trials + scale.selection_repeats * len(scale.selection_relatedness)] * len(labels)
    studied = map_units(ctx, study_arm, labels, desc=NAME, weights=weights)
    first = generator_config(ctx, 0.0, 0)
    return {
        "generator": asdict(first) | {"purchase_relatedness": "varied", "seed": "run index"},
        "relatedness": list(scale.selection_relatedness),
        "training": {
            "optimizer": "Adam",
            "batch_size": BATCH_SIZE,
            "epochs": scale.selection_epochs,
            "repeats": scale.selection_repeats,
            "trials": scale.selection_trials,
            "max_units": scale.selection_max_units,
            "tune_relatedness": TUNE_RELATEDNESS,
            "counterfactual_weight": COUNTERFACTUAL_WEIGHT,
        },
        "arms": dict(zip(labels, studied)),
    }
