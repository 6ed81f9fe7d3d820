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
    # beyond the paper (issue 13)
    "census-beyond": "mmoe.experiments.census_beyond",
    "synthetic-beyond": "mmoe.experiments.synthetic_beyond",
    "selection-bias": "mmoe.experiments.selection_bias",
    "weighting": "mmoe.experiments.weighting_study",  # issue 15: loss weighting vs equal weights
}
NEEDS_CENSUS = ("census", "gates", "census-beyond")  # skipped, with the reason, when the census files are not available


def load_study(name: str) -> ModuleType:
    """The module of the study `name` (a key of STUDIES), imported on first use: the census studies
    import optuna, which the synthetic ones do not need."""
    return importlib.import_module(STUDIES[name])


__all__ = ["NEEDS_CENSUS", "STUDIES", "load_study"]
