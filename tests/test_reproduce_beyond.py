"""The studies beyond the paper (issue 13) at tiny size: each runs, writes its results, figure and
report section, reruns from the cache; and the verdicts' logic on hand-made numbers."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from mmoe.experiments import beyond_claims, selection_bias
from mmoe.experiments.claims import evaluate_claims
from mmoe.experiments.context import StudyContext
from mmoe.experiments.scale import get_scale
from mmoe.report.reproduce import reproduce
from tests.test_reproduce import CENSUS_SIZES

BEYOND = ["synthetic-beyond", "selection-bias"]


def _context(out: Path, data_dir: Path | None = None, workers: int = 1, **sizes: Any) -> StudyContext:
    scale = replace(get_scale("tiny"), **sizes)
    return StudyContext(out=out, scale=scale, data_dir=data_dir, workers=workers, show_progress=False)


@pytest.fixture(scope="module")
def beyond_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("beyond")
    return out, reproduce(_context(out, workers=2), BEYOND)


def test_synthetic_beyond_and_selection_bias_write_results_figures_and_sections(
    beyond_report: tuple[Path, dict],
) -> None:
    out, results = beyond_report
    saved = json.loads((out / "results.json").read_text())
    for study in BEYOND:
        assert saved["studies"][study]["status"] == "done", saved["studies"][study].get("reason")
    report = (out / "report.md").read_text()
    assert "## Beyond the paper: PLE beside MMoE" in report and "## Beyond the paper: selection bias" in report
    assert "*entire-space+ipw* adds ESCM²'s inverse-propensity weighted loss" in report
    for png in ("synthetic_beyond.png", "selection_bias.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in report
    tiny = get_scale("tiny")
    synthetic = saved["studies"]["synthetic-beyond"]["result"]
    assert set(synthetic["per_p"]["0.5"]) == {"shared-bottom", "omoe", "mmoe", "ple"}
    assert len(synthetic["per_p"]["0.5"]["ple"]["runs"]) == tiny.synthetic_runs
    # PLE at MMoE's size: within 5% of its parameter count.
    counts = synthetic["parameters"]
    assert abs(counts["ple"] - counts["mmoe"]) / counts["mmoe"] < 0.05
    selection = saved["studies"]["selection-bias"]["result"]
    assert set(selection["arms"]) == set(selection_bias.ARMS)
    for arm in selection["arms"].values():
        assert list(arm["per_r"]) == [str(r) for r in tiny.selection_relatedness]
        runs = arm["per_r"]["0.0"]["runs"]
        assert len(runs) == tiny.selection_repeats and len(arm["tuning_trials"]) == tiny.selection_trials
        assert {"click", "conditional", "joint"} <= set(runs[0]["test"]) and 0.5 < runs[0]["bayes"]["joint"] < 1
    # The runs pair across arms: the same seeds, the same Bayes AUCs (the same logs).
    bayes = {label: [r["bayes"] for r in a["per_r"]["1.0"]["runs"]] for label, a in selection["arms"].items()}
    assert all(b == bayes["mmoe"] for b in bayes.values())
    claims = {c["claim"]: c for c in results["claims"]}
    assert len(claims) == 7 + 3  # the paper's seven, PLE's, and the two of the selection-bias study
    assert all(c["verdict"] in {"confirmed", "not confirmed", "inconclusive"} for c in results["claims"][7:])


def test_beyond_studies_rerun_from_the_cache(beyond_report: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    out, first = beyond_report
    from mmoe.experiments import synthetic_runs

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(synthetic_runs, "train_population", no_training)
    monkeypatch.setattr(selection_bias, "fit", no_training)
    context = _context(out)
    again = reproduce(context, BEYOND)
    assert context.cache.misses == 0 and context.cache.hits > 0
    for study in BEYOND:
        assert again["studies"][study]["result"] == first["studies"][study]["result"]


def test_synthetic_beyond_reads_the_synthetic_studys_runs(beyond_report: tuple[Path, dict]) -> None:
    out, first = beyond_report
    context = _context(out)
    again = reproduce(context, ["synthetic"])
    assert context.cache.misses == 0  # Figure 4's three models were trained by synthetic-beyond already
    for model in ("shared-bottom", "omoe", "mmoe"):
        ours = first["studies"]["synthetic-beyond"]["result"]["per_p"]["0.5"][model]
        assert again["studies"]["synthetic"]["result"]["per_p"]["0.5"][model] == ours


def test_the_paper_only_report_lists_no_claim_beyond_it() -> None:
    assert len(evaluate_claims({})) == 7
    skipped = evaluate_claims({"census-beyond": {"status": "skipped", "reason": "census data not available"}})
    assert skipped[-1]["verdict"] == "not run" and "census data" in skipped[-1]["evidence"]


def test_census_beyond_is_skipped_with_the_reason_without_data(tmp_path: Path) -> None:
    results = reproduce(_context(tmp_path / "report", data_dir=tmp_path / "empty"), ["census-beyond"])
    assert results["studies"]["census-beyond"]["status"] == "skipped"
    assert "census" in results["studies"]["census-beyond"]["reason"]


def test_census_beyond_reuses_the_census_studys_rows(census_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    # One group, MMoE alone in the census study, and tests.test_reproduce's smaller census sizes, in
    # this process (whose loaded census groups the other census tests share).
    sizes = {"census_groups": (1,), "census_models": ("mmoe",), **CENSUS_SIZES}
    census = reproduce(_context(out, census_dir, **sizes), ["census"])
    assert census["studies"]["census"]["status"] == "done", census["studies"]["census"].get("reason")
    context = _context(out, census_dir, **sizes)
    results = reproduce(context, ["census-beyond"])
    study = results["studies"]["census-beyond"]
    assert study["status"] == "done", study.get("reason")
    models = study["result"]["groups"]["1"]["models"]
    assert list(models) == ["mmoe", "ple", "cgc", "dselect-k"]
    assert [models[m]["source"] for m in models] == ["cache", "trained", "trained", "trained"]
    assert models["mmoe"]["runs"] == census["studies"]["census"]["result"]["groups"]["1"]["models"]["mmoe"]["runs"]
    assert len(models["ple"]["runs"]) == context.scale.census_repeats
    assert (out / "tuned" / "1-dselect-k.json").is_file() and (out / "census_beyond_auc.png").is_file()
    report = (out / "report.md").read_text()
    assert "### Group 1" in report and "| **ple** | trained |" in report
    assert "PLE, CGC and DSelect-k improve on MMoE" in report


def test_clicklog_arms_see_the_labels_of_their_training(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    conditional = selection_bias.clicklog_data(ctx, 0.5, 3, "conditional")
    funnel = selection_bias.clicklog_data(ctx, 0.5, 3, "funnel")
    assert conditional.tasks[1].given == "click" and funnel.tasks[1].given is None
    click, purchase = conditional.train.labels.unbind(1)
    assert torch.isnan(purchase[click == 0]).all() and not torch.isnan(purchase[click == 1]).any()
    # The funnel's purchase: click ∧ purchase on every impression.
    expected = torch.nan_to_num(purchase, nan=0.0) * click
    assert torch.equal(funnel.train.labels[:, 1], expected) and torch.equal(funnel.train.labels[:, 0], click)
    # Each arm's training: ESMM's loss for the entire-space arms, with ESCM²'s IPW term for escm2-ipw only.
    options = {
        label: (config.entire_space, config.counterfactual_weight)
        for label, (_, training) in selection_bias.ARMS.items()
        for config in [selection_bias.train_config(ctx, training, 1e-3, 0)]
    }
    assert options["escm2-ipw"] == (True, selection_bias.COUNTERFACTUAL_WEIGHT) and options["esmm"] == (True, 0.0)
    assert options["mmoe"] == (False, 0.0) and options["aitm"] == (None, 0.0)


# -- the verdicts on hand-made numbers ---------------------------------------------------------------
def _selection_result(shifts: dict[str, list[float]]) -> dict[str, Any]:
    """A selection-bias result: per arm, 6 runs at r = 0 and r = 1; regret at r = 0 is the one at
    r = 1 plus the arm's shift of that run (its sensitivity samples)."""
    arms = {}
    for arm, shift in shifts.items():
        per_r = {}
        for r in ("0.0", "1.0"):
            runs = []
            for seed, s in enumerate(shift):
                regret = 0.05 + (s if r == "0.0" else 0.0)
                bayes = {"click": 0.75, "conditional": 0.8, "joint": 0.85}
                test = {k: v - regret for k, v in bayes.items()}
                runs.append({"seed": seed, "bayes": bayes, "test": test})
            per_r[r] = {"runs": runs}
        arms[arm] = {"per_r": per_r}
    return {"arms": arms}


STILL = [0.001, -0.001, 0.002, -0.002, 0.0, 0.001]
MOVES = [0.05, 0.06, 0.055, 0.045, 0.05, 0.052]


def test_sensitivity_is_the_paired_regret_change_with_its_interval() -> None:
    result = _selection_result({"mmoe": MOVES})
    measured = beyond_claims.sensitivity(result, "mmoe")
    assert measured["sensitivity"] == pytest.approx(sum(MOVES) / len(MOVES))
    assert measured["runs"] == 6 and measured["ci"][0] < measured["sensitivity"] < measured["ci"][1]
    assert measured["r"] == [0.0, 1.0]


def test_sensitivity_verdicts_against_the_margin() -> None:
    margin = beyond_claims.SENSITIVITY_MARGIN
    verdict = beyond_claims.sensitivity_verdict
    assert verdict(-margin / 2, margin / 2, "insensitive") == "confirmed"
    assert verdict(-margin / 2, margin / 2, "sensitive") == "not confirmed"
    assert verdict(2 * margin, 3 * margin, "sensitive") == "confirmed"
    assert verdict(-3 * margin, -2 * margin, "sensitive") == "confirmed"  # worse when related counts too
    assert verdict(2 * margin, 3 * margin, "insensitive") == "not confirmed"
    assert verdict(0.0, 2 * margin, "insensitive") == "inconclusive"
    assert verdict(0.0, 2 * margin, "sensitive") == "inconclusive"
    assert verdict(math.nan, math.nan, "sensitive") == "inconclusive"


def test_relatedness_claim_on_hand_made_runs() -> None:
    holds = beyond_claims.claim_relatedness(_selection_result({"mmoe": STILL, "esmm": MOVES, "omoe": MOVES}))
    assert holds["verdict"] == "confirmed", holds["evidence"]
    reversed_ = beyond_claims.claim_relatedness(_selection_result({"mmoe": MOVES, "esmm": STILL, "omoe": MOVES}))
    assert reversed_["verdict"] == "not confirmed"
    assert reversed_["details"]["mmoe"]["verdict"] == "not confirmed"
    assert beyond_claims.claim_relatedness(None, "skipped")["verdict"] == "not run"


def test_entire_space_claim_on_hand_made_runs() -> None:
    result = _selection_result({"mmoe": STILL, "mmoe-entire-space": STILL})
    for runs in result["arms"]["mmoe-entire-space"]["per_r"].values():
        for i, run in enumerate(runs["runs"]):
            run["test"] = {**run["test"], "joint": run["test"]["joint"] + 0.02 + 0.001 * i}
    assert beyond_claims.claim_entire_space(result)["verdict"] == "confirmed"
    for runs in result["arms"]["mmoe-entire-space"]["per_r"].values():
        for run in runs["runs"]:
            run["test"]["joint"] -= 0.05
    assert beyond_claims.claim_entire_space(result)["verdict"] == "not confirmed"


def _synthetic_result(ple: list[float]) -> dict[str, Any]:
    losses = {"shared-bottom": [0.30, 0.32, 0.31, 0.29], "omoe": [0.20, 0.22, 0.21, 0.19], "mmoe": [0.1] * 4}
    models = {m: {"runs": [{"final_loss": v} for v in values]} for m, values in {**losses, "ple": ple}.items()}
    return {"per_p": {"0.5": models, "1.0": models}}


def test_ple_claim_on_hand_made_runs() -> None:
    assert beyond_claims.claim_ple_keeps_advantage(_synthetic_result([0.10, 0.11, 0.09, 0.1]))["verdict"] == "confirmed"
    worse = beyond_claims.claim_ple_keeps_advantage(_synthetic_result([0.25, 0.26, 0.27, 0.25]))
    assert worse["verdict"] == "not confirmed"  # beats Shared-Bottom, loses to OMoE
    assert worse["details"]["p"] == "0.5"


def test_successors_claim_on_hand_made_runs() -> None:
    def runs(values: list[float]) -> dict[str, Any]:
        return {"runs": [{"test": {"income": {"auc": v}}} for v in values]}

    mmoe = [0.93, 0.931, 0.932, 0.929]
    better = [v + 0.01 for v in mmoe]
    group = {"tasks": ["income", "marital"], "models": {"mmoe": runs(mmoe)}}
    group["models"].update({m: runs(better) for m in ("ple", "cgc", "dselect-k")})
    assert beyond_claims.claim_successors_beat_mmoe({"groups": {"1": group}})["verdict"] == "confirmed"
    group["models"]["cgc"] = runs([v - 0.01 for v in mmoe])
    assert beyond_claims.claim_successors_beat_mmoe({"groups": {"1": group}})["verdict"] == "not confirmed"
