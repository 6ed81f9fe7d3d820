"""The paper's studies by their `--study` name, in the order `mmoe reproduce` runs them.

Each study module has a TITLE and `run(ctx: StudyContext) -> dict` (its JSON-ready result); the
report (`mmoe.report.reproduce`) runs them, draws their figures and writes report.md.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STUDIES = {
    "correlation": "mmoe.experiments.correlation",
    "shared-bottom": "mmoe.experiments.shared_bottom",
    "synthetic": "mmoe.experiments.synthetic",
    "trainability": "mmoe.experiments.trainability",
    "census": "mmoe.experiments.census",
    "gates": "mmoe.experiments.gates",
    # beyond the paper: the successors (issue 13) and loss weighting (issue 15)
    "census-beyond": "mmoe.experiments.census_beyond",
    "synthetic-beyond": "mmoe.experiments.synthetic_beyond",
    "selection-bias": "mmoe.experiments.selection_bias",
    "weighting": "mmoe.experiments.weighting_study",
}
# Run only when asked for (`--beyond` or `--study NAME`): at standard size they take hours, where the
# paper's six take half an hour.
BEYOND_PAPER = ("census-beyond", "synthetic-beyond", "selection-bias", "weighting")
PAPER_STUDIES = tuple(name for name in STUDIES if name not in BEYOND_PAPER)
NEEDS_CENSUS = ("census", "gates", "census-beyond")  # skipped, with the reason, when the census files are not available


def load_study(name: str) -> ModuleType:
    """The module of the study `name` (a key of STUDIES), imported on first use: the census studies
    import optuna, which the synthetic ones do not need."""
    return importlib.import_module(STUDIES[name])


__all__ = ["BEYOND_PAPER", "NEEDS_CENSUS", "PAPER_STUDIES", "STUDIES", "load_study"]
