"""`mmoe reproduce` at tiny sizes: every study runs, the report has its parts, reruns use the
cache, and the statistics behind the verdicts are right on known inputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmoe.cli import main
from mmoe.experiments import stats
from mmoe.experiments.context import StudyContext
from mmoe.experiments.scale import get_scale
from mmoe.report.reproduce import reproduce

SYNTHETIC_STUDIES = ["correlation", "shared-bottom", "synthetic", "trainability"]


def _context(out: Path, data_dir: Path | None = None, workers: int = 1, **sizes: Any) -> StudyContext:
    scale = replace(get_scale("tiny"), **sizes)
    return StudyContext(out=out, scale=scale, data_dir=data_dir, workers=workers, show_progress=False)


# The census studies at tiny size with fewer rows and one tuning trial: the same code paths (two
# repeats, the spread needs them). In this process, not in workers: each worker process would load
# and encode both census groups again, and the groups loaded here serve the other census tests
# (`census_data.load_group` keeps them); the workers are tested on the synthetic studies.
CENSUS_SIZES: dict[str, Any] = {
    "census_trials": 1,
    "census_tune_rows": 1000,
    "census_train_rows": 2000,
    "census_eval_rows": 2000,
}


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report")
    return out, reproduce(_context(out), SYNTHETIC_STUDIES)


def test_synthetic_studies_write_a_complete_report(synthetic_report: tuple[Path, dict]) -> None:
    out, results = synthetic_report
    report = (out / "report.md").read_text()
    for heading in (
        "## Claims",
        "## Settings the paper leaves open",
        "(Figure 2)",
        "(Figure 3)",
        "(Figure 4)",
        "(Figure 5)",
    ):
        assert heading in report
    for png in ("fig2_correlation.png", "fig3_shared_bottom.png", "fig4_synthetic.png", "fig5_trainability.png"):
        assert (out / png).stat().st_size > 1000
        assert f"]({png})" in report
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == {"meta", "studies", "claims"}
    assert {"versions", "scale", "seed", "command", "seconds"} <= set(saved["meta"])
    assert {"torch", "numpy", "mmoe"} <= set(saved["meta"]["versions"])
    assert all(saved["studies"][s]["status"] == "done" for s in SYNTHETIC_STUDIES)
    runs = saved["studies"]["synthetic"]["result"]["per_p"]["0.5"]["mmoe"]["runs"]
    assert len(runs) == get_scale("tiny").synthetic_runs
    assert {"data_seed", "seed", "train_loss", "final_loss", "test_mse"} <= set(runs[0])
    verdicts = {c["verdict"] for c in results["claims"]}
    assert verdicts <= {"confirmed", "not confirmed", "inconclusive", "not run"}
    # The census claims did not run here and say so.
    assert "not run" in report


def test_rerun_reads_the_cache_and_trains_nothing(
    synthetic_report: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, first = synthetic_report
    from mmoe.experiments import synthetic_runs

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(synthetic_runs, "train_population", no_training)
    context = _context(out)
    again = reproduce(context, SYNTHETIC_STUDIES)
    assert context.cache.misses == 0 and context.cache.hits > 0
    assert again["studies"]["synthetic"]["result"]["per_p"] == first["studies"]["synthetic"]["result"]["per_p"]


def test_worker_processes_give_the_same_runs_as_one_process(
    synthetic_report: tuple[Path, dict], tmp_path: Path
) -> None:
    _, first = synthetic_report
    context = _context(tmp_path / "report", workers=2)
    again = reproduce(context, ["shared-bottom"])
    assert context.cache.misses > 0 and context.cache.hits == 0  # trained anew, in the workers
    assert again["studies"]["shared-bottom"]["result"] == first["studies"]["shared-bottom"]["result"]


def test_census_and_gates_are_skipped_with_the_reason_without_data(tmp_path: Path) -> None:
    results = reproduce(_context(tmp_path / "report", data_dir=tmp_path / "empty"), ["census", "gates"])
    for study in ("census", "gates"):
        assert results["studies"][study]["status"] == "skipped"
        assert "census" in results["studies"][study]["reason"]
    assert "**skipped**" in (tmp_path / "report" / "report.md").read_text()


def test_census_and_gates_studies_at_tiny_size(census_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    context = _context(out, census_dir, **CENSUS_SIZES)
    results = reproduce(context, ["census", "gates"])
    assert results["studies"]["census"]["status"] == "done", results["studies"]["census"].get("reason")
    assert results["studies"]["gates"]["status"] == "done", results["studies"]["gates"].get("reason")
    report = (out / "report.md").read_text()
    assert "### Table 1" in report and "### Table 2" in report and "(0.9359)" in report
    assert (out / "census_auc.png").is_file() and (out / "fig6_gates.png").is_file()
    tuned = json.loads((out / "tuned" / "1-mmoe.json").read_text())
    assert {"hyperparameters", "learning_rate", "epochs", "trials"} <= set(tuned)
    group = results["studies"]["census"]["result"]["groups"]["1"]["models"]["mmoe"]
    assert len(group["runs"]) == context.scale.census_repeats
    # Beside the paper's configuration, MMoE at mmoe's defaults (periodic numeric vectors, early
    # stopping), on the same seeds, in a table of its own.
    defaults = results["studies"]["census"]["result"]["groups"]["2"]["defaults"]["mmoe"]
    assert defaults["configuration"]["numeric_embedding"] == "periodic"
    assert defaults["configuration"]["training"]["epochs"] == 20 and defaults["configuration"]["training"]["patience"]
    assert [run["seed"] for run in defaults["runs"]] == [run["seed"] for run in group["runs"]]
    assert 0.5 < defaults["summary"]["education"]["mean"] <= 1
    assert "**Improved configuration**" in report
    assert f"| mmoe (defaults) | {defaults['summary']['education']['mean']:.4f} |" in report


def test_cli_help_lists_the_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = capsys.readouterr().out
    for option in ("--quick", "--study", "--repeats", "--trials", "--out", "--data-dir", "--seed", "--tuned"):
        assert option in text
    assert "--tiny" not in text


def test_cli_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["reproduce", "--tiny", "--repeats", "1", "--out", str(tmp_path)]) == 2
    assert "--repeats" in capsys.readouterr().err


def test_brown_forsythe_matches_scipy_and_detects_a_variance_difference() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 200), rng.normal(0, 3, 200)
    statistic, p_value = stats.brown_forsythe(a, b)
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.levene(a, b, center="median")
    assert statistic == pytest.approx(expected.statistic) and p_value == pytest.approx(expected.pvalue)
    assert p_value < 1e-6
    assert stats.brown_forsythe(a, rng.normal(5, 1, 200))[1] > 0.01  # a shift in mean is not a variance change
    assert stats._incomplete_beta(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-4)


def test_bootstrap_and_t_intervals_cover_the_truth() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1, 400), rng.normal(0.0, 1, 400)
    estimate, low, high = stats.bootstrap_difference_ci(a, b)
    assert low < 1.0 < high and low > 0.7 and high < 1.3
    mean, t_low, t_high = stats.t_interval(b)
    assert t_low < 0 < t_high and t_high - t_low == pytest.approx(2 * 1.966 / 20, rel=0.1)


def test_equal_parameter_width_matches_mmoe() -> None:
    from mmoe.data.dataset import InputSpec
    from mmoe.experiments.sizing import matching_width, parameter_count

    spec = InputSpec(numeric=tuple(f"x{j}" for j in range(100)))
    target = parameter_count("mmoe", spec, 2)
    width, count = matching_width("shared-bottom", target, spec, 2)
    assert abs(count - target) / target < 0.011
    others = [parameter_count("shared-bottom", spec, 2, hidden_units=(w,)) for w in (width - 1, width + 1)]
    assert all(abs(count - target) <= abs(o - target) for o in others)


def test_the_studies_beyond_the_paper_run_only_when_asked_for() -> None:
    from mmoe.experiments.studies import BEYOND_PAPER, PAPER_STUDIES
    from mmoe.report.reproduce import chosen_studies

    assert chosen_studies(None, False) == list(PAPER_STUDIES)
    assert "census" in PAPER_STUDIES and not set(BEYOND_PAPER) & set(PAPER_STUDIES)
    assert chosen_studies(None, True) == list(PAPER_STUDIES) + list(BEYOND_PAPER)
    assert chosen_studies(["weighting"], False) == ["weighting"]
