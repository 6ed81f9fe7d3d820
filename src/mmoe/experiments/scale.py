"""How big each study is: one `Scale` per size (tiny for CI, quick, standard), every knob in one place.

The paper's own sizes (200 synthetic runs per pair, 400 census repeats, thousands of tuning
trials) are out of reach on a small machine; `--repeats` and `--trials` raise the census study to
paper scale, and every size used is written into results.json and the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mmoe.errors import MmoeError

# p values of Figure 2 (the paper plots the whole range; 0.95 is one of its quoted points).
FIGURE2_CORRELATIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
TRAINING_CORRELATIONS = (0.5, 0.9, 1.0)
CENSUS_MODELS = (
    "single-task",
    "shared-bottom",
    "l2-constrained",
    "cross-stitch",
    "tensor-factorization",
    "omoe",
    "mmoe",
)
# -- beyond the paper (issue 13): the models compared with MMoE today, beside the paper's seven --
BEYOND_CENSUS_MODELS = ("ple", "cgc", "dselect-k")


@dataclass(frozen=True)
class Scale:
    """Sizes of every study. Rows counts include the 10% validation and 10% test splits."""

    name: str
    # correlation (Figure 2)
    correlation_trials: int
    correlation_rows: int
    correlation_values: tuple[float, ...]
    # synthetic training studies (Figures 3-5)
    synthetic_rows: int
    synthetic_runs: int
    synthetic_epochs: int
    synthetic_batch_size: int
    pilot_runs: int  # runs per learning rate when choosing it from the paper's grid
    synthetic_chunk: int  # runs per cached unit of work
    # census (Tables 1, 2)
    census_trials: int
    census_tune_rows: int | None  # training rows per tuning trial (None: all)
    census_tune_epochs: int
    census_max_units: int  # cap on hidden units per layer (the paper's is 2048)
    census_repeats: int
    census_train_rows: int | None  # training rows of the repeats (None: all, as the paper)
    census_eval_rows: int | None  # validation/test rows (None: all)
    census_chunk: int
    census_models: tuple[str, ...] = CENSUS_MODELS
    census_groups: tuple[int, ...] = (1, 2)
    # gates (Figure 6 and the sparse-label experiment)
    gates_runs: int = 4
    gates_epochs: int = 3
    gates_sparse_fraction: float = 0.1
    learning_rates: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    # -- beyond the paper (issue 13): census-beyond (the census_* sizes above, these models
    # beside census_models), synthetic-beyond (the synthetic_* sizes), selection-bias (below;
    # defaults are the standard size, tiny and quick replace them after SCALES) --
    beyond_census_models: tuple[str, ...] = BEYOND_CENSUS_MODELS
    selection_rows: int = 300_000  # impressions per generated log (train + test)
    selection_users: int = 30_000
    selection_items: int = 6_000
    selection_relatedness: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    selection_repeats: int = 10
    selection_trials: int = 10
    selection_epochs: int = 4
    selection_max_units: int = 256
    selection_chunk: int = 5
    # -- end of beyond the paper --
    # --- weighting study (issue 15: every loss-weighting method against equal weights) ---
    # Synthetic cells use the synthetic_* sizes above; census and clicklog cells these.
    weighting_runs: int = 2  # paired seeds per (setting, model, method)
    weighting_methods: tuple[str, ...] | None = None  # None: every method but "fixed"
    weighting_census_train_rows: int | None = 4000  # None: all
    weighting_census_eval_rows: int | None = 4000  # None: all
    weighting_census_epochs: int = 1
    weighting_clicklog_rows: int = 4000  # impressions per run's log (train + test)
    weighting_clicklog_epochs: int = 1
    # --- end weighting study ---
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, repeats: int | None = None, trials: int | None = None) -> Scale:
        """This scale with the census repeats / tuning trials replaced (command-line overrides)."""
        changes: dict[str, Any] = {}
        if repeats is not None:
            if repeats < 2:
                raise MmoeError(f"--repeats must be at least 2 (a spread needs two runs), got {repeats}")
            changes["census_repeats"] = repeats
        if trials is not None:
            if trials < 1:
                raise MmoeError(f"--trials must be at least 1, got {trials}")
            changes["census_trials"] = trials
        return replace(self, **changes) if changes else self


SCALES: dict[str, Scale] = {
    # CI smoke test: every code path, seconds per study, numbers meaningless.
    "tiny": Scale(
        "tiny",
        correlation_trials=3,
        correlation_rows=2000,
        correlation_values=(0.0, 0.5, 1.0),
        synthetic_rows=500,
        synthetic_runs=4,
        synthetic_epochs=2,
        synthetic_batch_size=128,
        pilot_runs=1,
        synthetic_chunk=2,
        census_trials=2,
        census_tune_rows=3000,
        census_tune_epochs=1,
        census_max_units=32,
        census_repeats=2,
        census_train_rows=4000,
        census_eval_rows=4000,
        census_chunk=2,
        gates_runs=2,
        gates_epochs=1,
        # weighting study: three methods (one from the losses, one from the gradients), every setting
        weighting_runs=2,
        weighting_methods=("ew", "uw", "pcgrad"),
        weighting_census_train_rows=2000,
        weighting_census_eval_rows=2000,
        weighting_census_epochs=1,
        weighting_clicklog_rows=2000,
        weighting_clicklog_epochs=1,
    ),
    # Every study at reduced size: about 14 minutes on 2 cores, 9.5 of them the census study (its
    # improved-configuration rows train on the full data, up to 20 epochs).
    "quick": Scale(
        "quick",
        correlation_trials=20,
        correlation_rows=10_000,
        correlation_values=FIGURE2_CORRELATIONS,
        synthetic_rows=4000,
        synthetic_runs=32,
        synthetic_epochs=20,
        synthetic_batch_size=128,
        pilot_runs=2,
        synthetic_chunk=32,
        census_trials=4,
        census_tune_rows=40_000,
        census_tune_epochs=2,
        census_max_units=128,
        census_repeats=4,
        census_train_rows=None,
        census_eval_rows=None,
        census_chunk=4,
        gates_runs=3,
        gates_epochs=2,
        # weighting study
        weighting_runs=4,
        weighting_census_train_rows=20_000,
        weighting_census_eval_rows=20_000,
        weighting_census_epochs=3,
        weighting_clicklog_rows=40_000,
        weighting_clicklog_epochs=3,
    ),
    # The standard size: 200 synthetic runs per pair (the paper's count), census at 20 repeats.
    "standard": Scale(
        "standard",
        correlation_trials=100,
        correlation_rows=10_000,
        correlation_values=FIGURE2_CORRELATIONS,
        synthetic_rows=5000,
        synthetic_runs=200,
        synthetic_epochs=25,
        synthetic_batch_size=128,
        pilot_runs=4,
        synthetic_chunk=50,
        census_trials=15,
        census_tune_rows=60_000,
        census_tune_epochs=3,
        census_max_units=512,
        census_repeats=20,
        census_train_rows=None,
        census_eval_rows=None,
        census_chunk=10,
        gates_runs=8,
        gates_epochs=4,
        # weighting study
        weighting_runs=20,
        weighting_census_train_rows=None,
        weighting_census_eval_rows=None,
        weighting_census_epochs=10,
        weighting_clicklog_rows=400_000,
        weighting_clicklog_epochs=5,
    ),
}


# -- beyond the paper (issue 13): the selection-bias study's sizes at tiny and quick --
SCALES["tiny"] = replace(
    SCALES["tiny"],
    selection_rows=3000,
    selection_users=300,
    selection_items=100,
    selection_relatedness=(0.0, 1.0),
    selection_repeats=2,
    selection_trials=2,
    selection_epochs=1,
    selection_max_units=16,
    selection_chunk=2,
)
SCALES["quick"] = replace(
    SCALES["quick"],
    selection_rows=60_000,
    selection_users=6000,
    selection_items=1500,
    selection_relatedness=(0.0, 0.5, 1.0),
    selection_repeats=4,
    selection_trials=4,
    selection_epochs=3,
    selection_max_units=64,
    selection_chunk=4,
)
# -- end of beyond the paper --


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise MmoeError(f"unknown scale {name!r}; expected one of {', '.join(SCALES)}")
    return SCALES[name]
