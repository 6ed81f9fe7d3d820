"""The paper's claims, each with a verdict (confirmed / not confirmed / inconclusive) from a named
statistical test on our runs. A verdict is whatever the test says: thresholds are fixed here,
before any run, and never adjusted to a result."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmoe.experiments import stats

CONFIRMED, NOT_CONFIRMED, INCONCLUSIVE = "confirmed", "not confirmed", "inconclusive"
ALPHA = 0.05
# Below this many runs per group a non-significant variance test says little: inconclusive.
MIN_RUNS_FOR_NULL = 30
# "Comparable" best runs: 5th percentiles within ±20% of the larger one.
EQUIVALENCE_MARGIN = 0.20


def evaluate_claims(studies: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per claim: claim, verdict, test, evidence (text), figure, details."""
    synthetic = _synthetic_runs(studies)
    census = studies.get("census", {})
    gates = studies.get("gates", {})
    return [
        _claim_gap_grows(synthetic),
        _claim_shared_bottom_variance(synthetic),
        _claim_omoe_robustness(synthetic),
        _claim_best_runs_comparable(synthetic),
        _claim_census_best(census.get("result") if census.get("status") == "done" else None, census),
        _claim_sparse_gate(gates.get("result") if gates.get("status") == "done" else None, gates),
        _claim_sparse_help(gates.get("result") if gates.get("status") == "done" else None, gates),
        *_beyond_claims(studies),
    ]


def _beyond_claims(studies: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 13's claims beyond the paper (`beyond_claims`; it imports this module's helpers)."""
    from mmoe.experiments.beyond_claims import evaluate_beyond_claims

    return evaluate_beyond_claims(studies)


def _synthetic_runs(studies: dict[str, Any]) -> dict[str, Any] | None:
    study = studies.get("synthetic")
    if study and study.get("status") == "done":
        return {
            p: {m: [r["final_loss"] for r in v["runs"]] for m, v in models.items()}
            for p, models in study["result"]["per_p"].items()
        }
    study = studies.get("trainability")
    if study and study.get("status") == "done":
        return {p: {m: v["final_loss"] for m, v in models.items()} for p, models in study["result"]["per_p"].items()}
    return None


def _not_run(claim: str, test: str, figure: str, reason: str) -> dict[str, Any]:
    return {
        "claim": claim,
        "verdict": "not run",
        "test": test,
        "figure": figure,
        "evidence": f"not run: {reason}",
        "details": {},
    }


def _interval_verdict(low: float, high: float) -> str:
    """The verdict of a 95% interval of "claim's effect": above 0 confirms, below 0 refutes."""
    return CONFIRMED if low > 0 else NOT_CONFIRMED if high < 0 else INCONCLUSIVE


def _interval_claim(
    claim: str, test: str, figure: str, estimate: float, low: float, high: float, evidence: str
) -> dict[str, Any]:
    """A claim decided by one 95% interval of its effect (see `_interval_verdict`)."""
    return {
        "claim": claim,
        "verdict": _interval_verdict(low, high),
        "test": test,
        "figure": figure,
        "evidence": evidence,
        "details": {"difference": estimate, "ci": [low, high]},
    }


def _claim_gap_grows(runs: dict[str, Any] | None) -> dict[str, Any]:
    claim = "MMoE's advantage grows as the task correlation falls (Figure 4)"
    test = (
        "per-run paired gap (baseline − MMoE final loss, same data) at p = 0.5 minus at p = 1; "
        "95% percentile-bootstrap CI of that difference of mean gaps, for Shared-Bottom and OMoE"
    )
    figure = "fig4_synthetic.png"
    if runs is None:
        return _not_run(claim, test, figure, "the synthetic study did not run")
    details, parts, verdicts = {}, [], []
    for baseline in ("shared-bottom", "omoe"):
        gaps = {p: np.asarray(runs[p][baseline]) - np.asarray(runs[p]["mmoe"]) for p in runs}
        estimate, low, high = stats.bootstrap_difference_ci(gaps["0.5"], gaps["1.0"])
        details[baseline] = {
            "gap": {p: float(np.mean(g)) for p, g in gaps.items()},
            "difference": estimate,
            "ci": [low, high],
        }
        verdicts.append(_interval_verdict(low, high))
        parts.append(
            f"vs {baseline}: gap {np.mean(gaps['0.5']):.4f} at p=0.5, {np.mean(gaps['1.0']):.4f} at p=1; "
            f"difference {estimate:+.4f} [{low:+.4f}, {high:+.4f}]"
        )
    return {
        "claim": claim,
        "verdict": _combine(verdicts),
        "test": test,
        "figure": figure,
        "evidence": "; ".join(parts),
        "details": details,
    }


def _variance_test(a: list[float], b: list[float]) -> dict[str, float]:
    statistic, p_value = stats.brown_forsythe(a, b)
    return {"variance_ratio": stats.variance_ratio(a, b), "statistic": statistic, "p_value": p_value}


def _claim_shared_bottom_variance(runs: dict[str, Any] | None) -> dict[str, Any]:
    claim = "Shared-Bottom has a larger variance of the final loss across runs than MMoE (Figure 5)"
    test = "Brown-Forsythe test of equal variances (Levene, median-centred), Shared-Bottom vs MMoE, at each p"
    figure = "fig5_trainability.png"
    if runs is None:
        return _not_run(claim, test, figure, "the synthetic study did not run")
    details, verdicts, parts = {}, [], []
    for p in runs:
        result = _variance_test(runs[p]["shared-bottom"], runs[p]["mmoe"])
        details[p] = result
        verdicts.append(_directional(result, len(runs[p]["mmoe"])))
        parts.append(f"p={p}: var ratio {result['variance_ratio']:.2f}, p-value {result['p_value']:.3g}")
    return {
        "claim": claim,
        "verdict": _combine(verdicts),
        "test": test,
        "figure": figure,
        "evidence": "; ".join(parts),
        "details": details,
    }


def _directional(result: dict[str, float], runs: int) -> str:
    """Confirmed: larger and significant; not confirmed: smaller and significant, or no significant
    difference with enough runs; else inconclusive."""
    significant = result["p_value"] < ALPHA
    if significant:
        return CONFIRMED if result["variance_ratio"] > 1 else NOT_CONFIRMED
    return NOT_CONFIRMED if runs >= MIN_RUNS_FOR_NULL else INCONCLUSIVE


def _claim_omoe_robustness(runs: dict[str, Any] | None) -> dict[str, Any]:
    claim = "OMoE is as robust as MMoE at p = 1 but less robust at p = 0.5 (Figure 5)"
    test = (
        "Brown-Forsythe test OMoE vs MMoE: at p = 1 no significant difference (α = 0.05), "
        "at p = 0.5 OMoE's variance significantly larger"
    )
    figure = "fig5_trainability.png"
    if runs is None:
        return _not_run(claim, test, figure, "the synthetic study did not run")
    at_one = _variance_test(runs["1.0"]["omoe"], runs["1.0"]["mmoe"])
    at_half = _variance_test(runs["0.5"]["omoe"], runs["0.5"]["mmoe"])
    n = len(runs["0.5"]["mmoe"])
    same_at_one = at_one["p_value"] >= ALPHA
    worse_at_half = _directional(at_half, n)
    if not same_at_one:
        verdict = NOT_CONFIRMED
    elif worse_at_half == CONFIRMED:
        verdict = CONFIRMED if n >= MIN_RUNS_FOR_NULL else INCONCLUSIVE
    else:
        verdict = worse_at_half
    evidence = (
        f"p=1: var ratio {at_one['variance_ratio']:.2f}, p-value {at_one['p_value']:.3g}; "
        f"p=0.5: var ratio {at_half['variance_ratio']:.2f}, p-value {at_half['p_value']:.3g}"
    )
    return {
        "claim": claim,
        "verdict": verdict,
        "test": test,
        "figure": figure,
        "evidence": evidence,
        "details": {"1.0": at_one, "0.5": at_half},
    }


def _claim_best_runs_comparable(runs: dict[str, Any] | None) -> dict[str, Any]:
    claim = "The best runs of Shared-Bottom, OMoE and MMoE are comparable (Figure 5)"
    test = (
        f"95% bootstrap CI of the difference of 5th-percentile final losses (each model − MMoE) at each p; "
        f"comparable when inside ±{EQUIVALENCE_MARGIN:.0%} of the larger 5th percentile"
    )
    figure = "fig5_trainability.png"
    if runs is None:
        return _not_run(claim, test, figure, "the synthetic study did not run")
    details, verdicts, parts = {}, [], []
    for p in runs:
        for model in ("shared-bottom", "omoe"):
            a, b = runs[p][model], runs[p]["mmoe"]
            estimate, low, high = stats.bootstrap_ci(
                lambda x, y: float(np.quantile(x, 0.05) - np.quantile(y, 0.05)), [a, b]
            )
            margin = EQUIVALENCE_MARGIN * max(np.quantile(a, 0.05), np.quantile(b, 0.05))
            inside = -margin <= low and high <= margin
            outside = low > margin or high < -margin
            verdicts.append(CONFIRMED if inside else NOT_CONFIRMED if outside else INCONCLUSIVE)
            details[f"{p}/{model}"] = {"difference": estimate, "ci": [low, high], "margin": margin}
            parts.append(f"p={p} {model}: {estimate:+.4f} [{low:+.4f}, {high:+.4f}] (margin ±{margin:.4f})")
    return {
        "claim": claim,
        "verdict": _combine(verdicts),
        "test": test,
        "figure": figure,
        "evidence": "; ".join(parts),
        "details": details,
    }


def _claim_census_best(result: dict[str, Any] | None, study: dict[str, Any]) -> dict[str, Any]:
    claim = "MMoE has the best mean main-task test AUC on census (Tables 1, 2)"
    test = "95% bootstrap CI of the difference of mean main-task test AUC, MMoE − each other model, per group"
    figure = "census_auc.png"
    if result is None:
        return _not_run(claim, test, figure, study.get("reason", "the census study did not run"))
    details, verdicts, parts = {}, [], []
    for group, group_result in result["groups"].items():
        main = group_result["tasks"][0]
        models = group_result["models"]
        if "mmoe" not in models:
            continue
        mmoe = [r["test"][main]["auc"] for r in models["mmoe"]["runs"]]
        for model, values in models.items():
            if model == "mmoe":
                continue
            other = [r["test"][main]["auc"] for r in values["runs"]]
            estimate, low, high = stats.bootstrap_difference_ci(mmoe, other)
            details[f"{group}/{model}"] = {"difference": estimate, "ci": [low, high]}
            verdicts.append(_interval_verdict(low, high))
            parts.append(f"group {group} vs {model}: {estimate:+.4f} [{low:+.4f}, {high:+.4f}]")
    return {
        "claim": claim,
        "verdict": _combine(verdicts) if verdicts else "not run",
        "test": test,
        "figure": figure,
        "evidence": "; ".join(parts),
        "details": details,
    }


def _claim_sparse_gate(result: dict[str, Any] | None, study: dict[str, Any]) -> dict[str, Any]:
    claim = "With sparse labels, the sparse task's gate concentrates on fewer experts (Section 6.4, Figure 6)"
    test = (
        "95% bootstrap CI of the difference of the sparse task's mean normalised gate entropy, "
        "full labels − sparse labels (positive: more concentrated when sparse)"
    )
    figure = "fig6_gates.png"
    if result is None:
        return _not_run(claim, test, figure, study.get("reason", "the gates study did not run"))
    task = result["sparse_task"]
    full = [r["gate_entropy"][task] for r in result["conditions"]["full"]["mmoe"]]
    sparse = [r["gate_entropy"][task] for r in result["conditions"]["sparse"]["mmoe"]]
    estimate, low, high = stats.bootstrap_difference_ci(full, sparse)
    evidence = (
        f"entropy {np.mean(full):.3f} (full) vs {np.mean(sparse):.3f} (sparse); difference "
        f"{estimate:+.3f} [{low:+.3f}, {high:+.3f}], {len(full)} runs each"
    )
    return _interval_claim(claim, test, figure, estimate, low, high, evidence)


def _claim_sparse_help(result: dict[str, Any] | None, study: dict[str, Any]) -> dict[str, Any]:
    claim = "MMoE helps a sparse task more than Shared-Bottom does (Section 6.4)"
    test = (
        "sparse-label condition: 95% bootstrap CI of the difference of the sparse task's mean test AUC, "
        "MMoE − Shared-Bottom (each model's help over Single-Task differs by exactly this)"
    )
    figure = "fig6_gates.png"
    if result is None:
        return _not_run(claim, test, figure, study.get("reason", "the gates study did not run"))
    task = result["sparse_task"]
    runs = result["conditions"]["sparse"]
    auc = {m: [r["test_auc"][task] for r in runs[m]] for m in runs}
    estimate, low, high = stats.bootstrap_difference_ci(auc["mmoe"], auc["shared-bottom"])
    single = float(np.mean(auc["single-task"]))
    evidence = (
        f"{task} AUC with {result['sparse_fraction']:.0%} labels: MMoE {np.mean(auc['mmoe']):.4f}, "
        f"Shared-Bottom {np.mean(auc['shared-bottom']):.4f}, Single-Task {single:.4f}; help over Single-Task "
        f"MMoE {np.mean(auc['mmoe']) - single:+.4f}, "
        f"Shared-Bottom {np.mean(auc['shared-bottom']) - single:+.4f}; "
        f"MMoE − Shared-Bottom {estimate:+.4f} [{low:+.4f}, {high:+.4f}]"
    )
    return _interval_claim(claim, test, figure, estimate, low, high, evidence)


def _combine(verdicts: list[str]) -> str:
    """All parts confirmed: confirmed; any part contradicted: not confirmed; else inconclusive."""
    if verdicts and all(v == CONFIRMED for v in verdicts):
        return CONFIRMED
    if any(v == NOT_CONFIRMED for v in verdicts):
        return NOT_CONFIRMED
    return INCONCLUSIVE
