"""Claims beyond the paper (issue 13), each with its test and threshold fixed here before any run,
in the style of `claims`: a verdict is whatever the test says.

Listed only when their study was asked for (run, skipped or failed), so that a report of the
paper's studies alone is what it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmoe.experiments import stats
from mmoe.experiments.claims import CONFIRMED, INCONCLUSIVE, NOT_CONFIRMED, _combine, _interval_verdict, _not_run

# Relatedness: an arm is "insensitive" when the 95% interval of its sensitivity (below) lies
# within ±SENSITIVITY_MARGIN AUC, "sensitive" when it lies wholly outside; else undecided.
SENSITIVITY_MARGIN = 0.01
SUCCESSORS = ("ple", "cgc", "dselect-k")


def evaluate_beyond_claims(studies: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims of the beyond-the-paper studies present in `studies` (results.json's "studies")."""
    claims = []
    if "census-beyond" in studies:
        claims.append(claim_successors_beat_mmoe(*_done(studies, "census-beyond")))
    if "synthetic-beyond" in studies:
        claims.append(claim_ple_keeps_advantage(*_done(studies, "synthetic-beyond")))
    if "selection-bias" in studies:
        claims.append(claim_relatedness(*_done(studies, "selection-bias")))
        claims.append(claim_entire_space(*_done(studies, "selection-bias")))
    return claims


def _done(studies: dict[str, Any], name: str) -> tuple[dict[str, Any] | None, str]:
    study = studies[name]
    if study.get("status") == "done":
        return study["result"], ""
    return None, study.get("reason", f"the {name} study did not run")


def claim_successors_beat_mmoe(result: dict[str, Any] | None, reason: str = "") -> dict[str, Any]:
    claim = "PLE, CGC and DSelect-k improve on MMoE's mean main-task test AUC on census"
    test = "95% bootstrap CI of the difference of mean main-task test AUC, each successor − MMoE, per group"
    figure = "census_beyond_auc.png"
    if result is None:
        return _not_run(claim, test, figure, reason)
    details, verdicts, parts = {}, [], []
    for group, group_result in result["groups"].items():
        main, models = group_result["tasks"][0], group_result["models"]
        if "mmoe" not in models:
            continue
        mmoe = [r["test"][main]["auc"] for r in models["mmoe"]["runs"]]
        for model in SUCCESSORS:
            if model not in models:
                continue
            values = [r["test"][main]["auc"] for r in models[model]["runs"]]
            estimate, low, high = stats.bootstrap_difference_ci(values, mmoe)
            details[f"{group}/{model}"] = {"difference": estimate, "ci": [low, high]}
            verdicts.append(_interval_verdict(low, high))
            parts.append(f"group {group} {model} − MMoE: {estimate:+.4f} [{low:+.4f}, {high:+.4f}]")
    return _entry(claim, _combine(verdicts) if verdicts else "not run", test, figure, "; ".join(parts), details)


def claim_ple_keeps_advantage(result: dict[str, Any] | None, reason: str = "") -> dict[str, Any]:
    claim = "PLE keeps MMoE's advantage at low task correlation (synthetic, lowest p)"
    test = (
        "at the lowest p, per-run paired gap (baseline − PLE final loss, same data); 95% percentile-bootstrap "
        "CI of the mean gap above 0 for both Shared-Bottom and OMoE (MMoE's gaps shown beside)"
    )
    figure = "synthetic_beyond.png"
    if result is None:
        return _not_run(claim, test, figure, reason)
    low_p = min(result["per_p"], key=float)
    runs = {m: np.array([r["final_loss"] for r in v["runs"]]) for m, v in result["per_p"][low_p].items()}
    details, verdicts, parts = {"p": low_p}, [], []
    for baseline in ("shared-bottom", "omoe"):
        gap = runs[baseline] - runs["ple"]
        estimate, low, high = stats.bootstrap_mean_ci(gap)
        mmoe_gap = float(np.mean(runs[baseline] - runs["mmoe"]))
        details[baseline] = {"gap": estimate, "ci": [low, high], "mmoe_gap": mmoe_gap}
        verdicts.append(_interval_verdict(low, high))
        parts.append(f"p={low_p} {baseline} − PLE {estimate:+.4f} [{low:+.4f}, {high:+.4f}] (− MMoE {mmoe_gap:+.4f})")
    ple_mmoe, low, high = stats.bootstrap_mean_ci(runs["ple"] - runs["mmoe"])
    details["ple_minus_mmoe"] = {"difference": ple_mmoe, "ci": [low, high]}
    parts.append(f"PLE − MMoE {ple_mmoe:+.4f} [{low:+.4f}, {high:+.4f}]")
    return _entry(claim, _combine(verdicts), test, figure, "; ".join(parts), details)


def sensitivity(result: dict[str, Any], arm: str, measure: str = "conditional") -> dict[str, Any]:
    """An arm's sensitivity to task relatedness: per run i (the same impressions at every r),
    regret_i(lowest r) − regret_i(highest r), regret = Bayes AUC − test AUC of `measure`; its mean
    and 95% t-interval. Positive: the arm loses more to the Bayes optimum when the tasks are unrelated."""
    per_r = result["arms"][arm]["per_r"]
    low_r, high_r = min(per_r, key=float), max(per_r, key=float)

    def regrets(r: str) -> dict[int, float]:
        return {run["seed"]: run["bayes"][measure] - run["test"][measure] for run in per_r[r]["runs"]}

    at_low, at_high = regrets(low_r), regrets(high_r)
    differences = [at_low[seed] - at_high[seed] for seed in at_low if seed in at_high]
    mean, low, high = stats.t_interval(differences)
    return {"r": [float(low_r), float(high_r)], "sensitivity": mean, "ci": [low, high], "runs": len(differences)}


def sensitivity_verdict(low: float, high: float, expected: str) -> str:
    """`expected` "insensitive" or "sensitive", judged by the interval [low, high] against ±SENSITIVITY_MARGIN."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    inside = -SENSITIVITY_MARGIN < low and high < SENSITIVITY_MARGIN
    outside = low > SENSITIVITY_MARGIN or high < -SENSITIVITY_MARGIN
    if expected == "insensitive":
        return CONFIRMED if inside else NOT_CONFIRMED if outside else INCONCLUSIVE
    return CONFIRMED if outside else NOT_CONFIRMED if inside else INCONCLUSIVE


def claim_relatedness(result: dict[str, Any] | None, reason: str = "") -> dict[str, Any]:
    claim = "MMoE is insensitive to how related the tasks are, while ESMM and OMoE are sensitive (click log)"
    test = (
        "sensitivity = regret(lowest r) − regret(highest r) of the purchase AUC over clicked impressions "
        "(regret: Bayes AUC − ours; paired runs), 95% t-interval; insensitive: inside "
        f"±{SENSITIVITY_MARGIN} AUC, sensitive: wholly outside; MMoE must be insensitive, ESMM and OMoE sensitive"
    )
    figure = "selection_bias.png"
    if result is None:
        return _not_run(claim, test, figure, reason)
    details, verdicts, parts = {}, [], []
    for arm, expected in (("mmoe", "insensitive"), ("esmm", "sensitive"), ("omoe", "sensitive")):
        if arm not in result["arms"]:
            continue
        measured = sensitivity(result, arm)
        low, high = measured["ci"]
        verdict = sensitivity_verdict(low, high, expected)
        details[arm] = measured | {"expected": expected, "verdict": verdict}
        verdicts.append(verdict)
        parts.append(f"{arm}: {measured['sensitivity']:+.4f} [{low:+.4f}, {high:+.4f}] ({expected}? {verdict})")
    return _entry(claim, _combine(verdicts) if verdicts else "not run", test, figure, "; ".join(parts), details)


def claim_entire_space(result: dict[str, Any] | None, reason: str = "") -> dict[str, Any]:
    claim = "Entire-space training improves MMoE's purchase AUC over all impressions (ESMM's claim)"
    test = (
        "per relatedness r, paired per run: joint (click ∧ purchase) test AUC of MMoE entire-space − MMoE "
        "trained on clicked rows; 95% t-interval above 0 at every r"
    )
    figure = "selection_bias.png"
    if result is None:
        return _not_run(claim, test, figure, reason)
    if not {"mmoe", "mmoe-entire-space"} <= set(result["arms"]):
        return _not_run(claim, test, figure, "the MMoE arms did not run")
    details, verdicts, parts = {}, [], []
    naive, entire = result["arms"]["mmoe"]["per_r"], result["arms"]["mmoe-entire-space"]["per_r"]
    for r in naive:
        before = {run["seed"]: run["test"]["joint"] for run in naive[r]["runs"]}
        differences = [run["test"]["joint"] - before[run["seed"]] for run in entire[r]["runs"] if run["seed"] in before]
        mean, low, high = stats.t_interval(differences)
        details[r] = {"difference": mean, "ci": [low, high]}
        verdicts.append(_interval_verdict(low, high) if np.isfinite(low) else INCONCLUSIVE)
        parts.append(f"r={r}: {mean:+.4f} [{low:+.4f}, {high:+.4f}]")
    return _entry(claim, _combine(verdicts), test, figure, "; ".join(parts), details)


def _entry(claim: str, verdict: str, test: str, figure: str, evidence: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "claim": claim,
        "verdict": verdict,
        "test": test,
        "figure": figure,
        "evidence": evidence,
        "details": details,
    }


__all__ = [
    "SENSITIVITY_MARGIN",
    "claim_entire_space",
    "claim_ple_keeps_advantage",
    "claim_relatedness",
    "claim_successors_beat_mmoe",
    "evaluate_beyond_claims",
    "sensitivity",
    "sensitivity_verdict",
]
