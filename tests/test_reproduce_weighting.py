"""`mmoe reproduce --study weighting` at tiny size: the study runs, writes its results, figure and
report section, reruns from the cache, and its verdict rule says what it must on hand-made numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmoe.experiments import synthetic_runs, weighting_study
from mmoe.experiments.context import StudyContext
from mmoe.experiments.scale import get_scale
from mmoe.experiments.studies import STUDIES
from mmoe.report.reproduce import reproduce
from mmoe.report.weighting_section import render

TINY = get_scale("tiny")


def _context(out: Path, data_dir: Path) -> StudyContext:
    return StudyContext(out=out, scale=TINY, data_dir=data_dir, show_progress=False)


@pytest.fixture(scope="module")
def weighting_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The study without census files: synthetic and click-log cells, the census cells skipped."""
    out = tmp_path_factory.mktemp("report")
    return out, reproduce(_context(out, out / "no-census"), ["weighting"])


def test_the_study_is_registered() -> None:
    assert STUDIES["weighting"] == "mmoe.experiments.weighting_study"
    assert "fixed" not in weighting_study.METHODS and weighting_study.METHODS[0] == "ew"


def test_the_study_writes_results_figure_and_section(weighting_report: tuple[Path, dict]) -> None:
    out, results = weighting_report
    entry = results["studies"]["weighting"]
    assert entry["status"] == "done", entry.get("traceback") or entry.get("reason")
    result = entry["result"]
    methods = list(TINY.weighting_methods or ())
    assert result["methods"] == methods
    # Census cells are skipped with the reason; the others ran, every method on the same seeds.
    assert set(result["skipped"]) == {"census-1", "census-2"} and "census" in result["skipped"]["census-1"]
    assert set(result["cells"]) == {"synthetic-p0.5", "synthetic-p1", "clicklog"}
    for models in result["cells"].values():
        assert set(models) == {"mmoe", "shared-bottom"}
        for cell in models.values():
            assert set(cell["methods"]) == set(methods)
            seeds = {m: [r["seed"] for r in e["runs"]] for m, e in cell["methods"].items()}
            assert all(s == seeds["ew"] and len(s) == TINY.weighting_runs for s in seeds.values())
    clicklog_runs = result["cells"]["clicklog"]["mmoe"]["methods"]["uw"]["runs"]
    assert set(clicklog_runs[0]["test"]) == {"click", "purchase"}
    assert all(0.0 < r["score"] < 1.0 for r in clicklog_runs)  # a mean test AUC
    synthetic_cell = result["cells"]["synthetic-p1"]["mmoe"]
    assert synthetic_cell["setup"]["metric"] == "mse"
    assert synthetic_cell["setup"]["learning_rate"] in TINY.learning_rates  # the pilot's choice
    assert set(result["verdicts"]) == set(methods) - {"ew"}
    assert set(result["comparisons"]["pcgrad"]) == {
        f"{s}/{m}" for s in result["cells"] for m in ("mmoe", "shared-bottom")
    }
    saved = json.loads((out / "results.json").read_text())
    assert saved["studies"]["weighting"]["result"]["verdicts"] == result["verdicts"]
    assert (out / "weighting.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "## " + weighting_study.TITLE in report and "](weighting.png)" in report
    assert "### Verdicts" in report and "census-1** skipped" in report
    for method in ("uw", "pcgrad"):
        assert f"| {method} | **{result['verdicts'][method]}** |" in report


def test_rerun_reads_the_cache_and_trains_nothing(
    weighting_report: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, first = weighting_report

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached run was trained again")

    for module in (weighting_study, synthetic_runs):
        monkeypatch.setattr(module, "train_population", no_training)
    monkeypatch.setattr(weighting_study, "fit", no_training)
    context = _context(out, out / "no-census")
    again = reproduce(context, ["weighting"])
    assert again["studies"]["weighting"]["status"] == "done", again["studies"]["weighting"].get("traceback")
    assert context.cache.misses == 0 and context.cache.hits > 0
    assert again["studies"]["weighting"]["result"]["verdicts"] == first["studies"]["weighting"]["result"]["verdicts"]
    for setting, models in first["studies"]["weighting"]["result"]["cells"].items():
        for model, cell in models.items():
            rerun = again["studies"]["weighting"]["result"]["cells"][setting][model]
            assert [r["score"] for r in rerun["methods"]["uw"]["runs"]] == pytest.approx(
                [r["score"] for r in cell["methods"]["uw"]["runs"]]
            )


def test_census_cells_at_tiny_size(weighting_report: tuple[Path, dict], census_dir: Path, tmp_path: Path) -> None:
    out, first = weighting_report
    # The study's cache without census: its synthetic and click-log cells are read back, the census cells train.
    shutil.copytree(out / "cache", tmp_path / "report" / "cache")
    context = _context(tmp_path / "report", census_dir)
    results = reproduce(context, ["weighting"])
    result = results["studies"]["weighting"]["result"]
    assert not result["skipped"] and context.cache.hits > 0 and context.cache.misses > 0
    for setting, models in first["studies"]["weighting"]["result"]["cells"].items():
        assert result["cells"][setting] == models, setting
    census = result["cells"]["census-1"]["shared-bottom"]["methods"]["pcgrad"]["runs"]
    assert len(census) == TINY.weighting_runs and all(0.0 < r["score"] < 1.0 for r in census)
    assert "census-2/mmoe" in result["comparisons"]["uw"]


# ------------------------------------------------------------------------- the verdict rule


def _runs(scores: list[float]) -> list[dict]:
    return [{"seed": i, "score": s, "test": {"click": s}, "train_seconds": 1.0} for i, s in enumerate(scores)]


def test_paired_gains_pair_by_seed_and_orient_mse() -> None:
    reference = _runs([0.70, 0.80, 0.90])
    method = list(reversed(_runs([0.71, 0.82, 0.93])))  # order does not matter: seeds pair them
    assert weighting_study.paired_gains(method, reference, "auc") == pytest.approx([0.03, 0.02, 0.01])
    # MSE: lower is better, so a lower loss is a positive gain; a NaN (diverged) run drops its pair.
    gains = weighting_study.paired_gains(_runs([0.5, float("nan"), 0.7]), _runs([0.6, 0.6, 0.6]), "mse")
    assert gains == pytest.approx([0.1, -0.1])
    assert weighting_study.paired_gains(_runs([None, 0.5]), _runs([0.4, 0.4]), "auc") == pytest.approx([0.1])


def test_cell_outcome_uses_the_bonferroni_paired_interval() -> None:
    rng = np.random.default_rng(0)
    clear = 0.01 + rng.normal(0, 0.001, 20)  # a consistent gain of 0.01
    assert weighting_study.cell_outcome(clear, cells=10)["outcome"] == "better"
    assert weighting_study.cell_outcome(-clear, cells=10)["outcome"] == "worse"
    assert weighting_study.cell_outcome(rng.normal(0, 0.01, 20), cells=10)["outcome"] == "no difference"
    # A gain significant at 95% for one comparison but not after Bonferroni over 10 cells.
    borderline = np.array([0.5, 1.5, 0.2, 1.8, 0.9, 1.1, -0.4, 2.4])
    assert weighting_study.cell_outcome(borderline, cells=1)["outcome"] == "better"
    assert weighting_study.cell_outcome(borderline, cells=10)["outcome"] == "no difference"
    one = weighting_study.cell_outcome(np.array([0.3]), cells=1)  # one pair: no interval, no claim
    assert one["outcome"] == "no difference" and one["pairs"] == 1


def test_method_verdict_combines_the_cells() -> None:
    verdict = weighting_study.method_verdict
    assert verdict(["better", "no difference"]) == "beats ew"
    assert verdict(["worse", "no difference"]) == "worse than ew"
    assert verdict(["better", "worse"]) == "mixed"
    assert verdict(["no difference", "no difference"]) == "no significant difference"
    assert verdict([]) == "no significant difference"


def test_verdicts_and_section_from_hand_made_cells() -> None:
    """Two cells, three methods: pcgrad consistently better in one cell, uw worse in one."""
    base = [0.80, 0.82, 0.81, 0.79, 0.83, 0.80]
    jitter = [0.0005, -0.0004, 0.0003, -0.0002, 0.0001, -0.0003]

    def cell(gains: dict[str, float]) -> dict:
        runs = {"ew": _runs(base)}
        for method, gain in gains.items():
            runs[method] = _runs([b + gain + j for b, j in zip(base, jitter)])
        return {
            "setup": {"metric": "auc"},
            "methods": {m: {"runs": r, "summary": weighting_study.summarize_runs(r)} for m, r in runs.items()},
        }

    cells = {
        "clicklog": {"mmoe": cell({"uw": -0.02, "pcgrad": 0.02}), "shared-bottom": cell({"uw": 0.0, "pcgrad": 0.0})}
    }
    comparisons = weighting_study.compare_with_reference(cells)
    assert comparisons["pcgrad"]["clicklog/mmoe"]["outcome"] == "better"
    assert comparisons["pcgrad"]["clicklog/mmoe"]["gain"] == pytest.approx(0.02)
    assert comparisons["uw"]["clicklog/mmoe"]["outcome"] == "worse"
    assert comparisons["uw"]["clicklog/shared-bottom"]["outcome"] == "no difference"
    verdicts = {m: weighting_study.method_verdict([c["outcome"] for c in v.values()]) for m, v in comparisons.items()}
    assert verdicts == {"uw": "worse than ew", "pcgrad": "beats ew"}
    result = {
        "methods": ["ew", "uw", "pcgrad"],
        "settings": {"clicklog": {"data": "click log", "metric": "auc", "epochs": 1, "training": "defaults"}},
        "skipped": {},
        "runs_per_cell": len(base),
        "alpha": weighting_study.ALPHA,
        "cells": cells,
        "comparisons": comparisons,
        "verdicts": verdicts,
    }
    text = "\n".join(render(result))
    assert "1 of 2 methods beat equal weights: pcgrad." in text
    assert "| pcgrad | **beats ew** | 1 | 0 | +0.0200 ± " in text and "▲" in text and "▼" in text
