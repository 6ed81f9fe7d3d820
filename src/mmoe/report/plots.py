"""The report's figures as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mmoe.experiments import paper
from mmoe.report import beyond, weighting_section

COLORS = {"shared-bottom": "tab:blue", "omoe": "tab:orange", "mmoe": "tab:green"}


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def correlation_figure(result: dict[str, Any], path: Path) -> Path:
    summary = result["summary"]
    p = np.array([s["p"] for s in summary])
    mean = np.array([s["mean"] for s in summary])
    std = np.array([s["std"] for s in summary])
    figure, axis = plt.subplots(figsize=(5.5, 4))
    axis.plot(p, mean, "o-", label="ours: mean over trials")
    axis.fill_between(p, mean - 2 * std, mean + 2 * std, alpha=0.25, label="ours: ± 2·std")
    axis.plot(list(paper.FIGURE2), list(paper.FIGURE2.values()), "kx", markersize=9, label="paper (read off Fig. 2)")
    axis.set(xlabel="weight cosine p", ylabel="label Pearson correlation", title="Figure 2")
    axis.legend()
    return _save(figure, path)


def _curves(axis: Any, models: dict[str, Any], steps_per_epoch: int) -> None:
    for label, result in models.items():
        losses = np.array([r["train_loss"] for r in result["runs"]])
        steps = np.arange(1, losses.shape[1] + 1) * steps_per_epoch
        mean = losses.mean(0)
        half = 1.96 * losses.std(0, ddof=1) / np.sqrt(len(losses)) if len(losses) > 1 else np.zeros_like(mean)
        color = COLORS.get(label)
        axis.plot(steps, mean, color=color, label=f"{label} (lr {result['learning_rate']:g})")
        axis.fill_between(steps, mean - half, mean + half, color=color, alpha=0.25)
    axis.set_yscale("log")
    axis.set_xlabel("training steps")


def shared_bottom_figure(result: dict[str, Any], path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(5.5, 4))
    steps = result["training"]["steps_per_epoch"]
    for p, models in result["per_p"].items():
        runs = models["shared-bottom"]
        losses = np.array([r["train_loss"] for r in runs["runs"]])
        x = np.arange(1, losses.shape[1] + 1) * steps
        mean = losses.mean(0)
        half = 1.96 * losses.std(0, ddof=1) / np.sqrt(len(losses)) if len(losses) > 1 else 0 * mean
        (line,) = axis.plot(x, mean, label=f"p = {p} (lr {runs['learning_rate']:g})")
        axis.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.25)
    axis.set(
        yscale="log",
        xlabel="training steps",
        ylabel="training loss (MSE per task)",
        title="Figure 3: Shared-Bottom (band: 95% CI of the mean)",
    )
    axis.legend()
    return _save(figure, path)


def synthetic_figure(result: dict[str, Any], path: Path) -> Path:
    per_p = result["per_p"]
    figure, axes = plt.subplots(1, len(per_p), figsize=(4.5 * len(per_p), 4), sharey=True)
    for axis, (p, models) in zip(np.atleast_1d(axes), per_p.items()):
        _curves(axis, models, result["training"]["steps_per_epoch"])
        for label, value in paper.FIGURE4.get(float(p), {}).items():
            axis.axhline(value, color=COLORS[label], linestyle=":", linewidth=1)
        axis.set_title(f"p = {p}")
        axis.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("training loss (MSE per task)")
    figure.suptitle("Figure 4 (dotted: the paper's final losses; band: 95% CI of the mean)")
    return _save(figure, path)


def trainability_figure(result: dict[str, Any], path: Path) -> Path:
    per_p = result["per_p"]
    models = list(next(iter(per_p.values())))
    figure, axes = plt.subplots(len(models), len(per_p), figsize=(4 * len(per_p), 2.6 * len(models)), squeeze=False)
    for column, (p, by_model) in enumerate(per_p.items()):
        values = [v for m in models for v in by_model[m]["final_loss"]]
        bins = np.linspace(min(values), max(values), 21) if max(values) > min(values) else 10
        for row, model in enumerate(models):
            axis = axes[row][column]
            entry = by_model[model]
            axis.hist(entry["final_loss"], bins=bins, color=COLORS.get(model))
            axis.set_title(f"{model}, p = {p}: var {entry['variance']:.2g}", fontsize=9)
            axis.set_xlabel("final training loss", fontsize=8)
    figure.suptitle("Figure 5: final loss over runs")
    return _save(figure, path)


def census_figure(result: dict[str, Any], path: Path) -> Path:
    groups = result["groups"]
    figure, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for axis, (group, group_result) in zip(axes[0], groups.items()):
        main = group_result["tasks"][0]
        names = [m for m in group_result["models"] if m != "tensor-factorization"] or list(group_result["models"])
        for i, model in enumerate(names):
            s = group_result["models"][model]["summary"][main]
            axis.errorbar(
                [s["mean"]],
                [i],
                xerr=[[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]] if np.isfinite(s["ci_low"]) else None,
                fmt="o",
                color="tab:green" if model == "mmoe" else "k",
            )
            reference = paper.TABLES.get(int(group), {}).get(model)
            if reference:
                axis.plot([reference[1]], [i], "rx")
        for baseline, b in group_result.get("baselines", {}).items():  # LightGBM: a line to beat
            axis.axvline(b["summary"][main]["mean"], ls="--", color="tab:orange", label=f"{baseline} (baseline)")
            axis.legend(fontsize=8, loc="lower right")
        axis.set_yticks(range(len(names)), names)
        axis.set(xlabel=f"mean test AUC, {main} (x: paper)", title=f"Group {group} (95% CI)")
    figure.suptitle("Tables 1 and 2 (Tensor-Factorization left out of the plot: far lower)")
    return _save(figure, path)


def gates_figure(result: dict[str, Any], path: Path) -> Path:
    conditions = result["conditions"]
    figure, axes = plt.subplots(1, len(conditions), figsize=(5.5 * len(conditions), 3.8), sharey=True, squeeze=False)
    for axis, (condition, models) in zip(axes[0], conditions.items()):
        runs = models["mmoe"]
        tasks = list(runs[0]["mean_gate"])
        width = 0.8 / len(tasks)
        for k, task in enumerate(tasks):
            # Experts are interchangeable between runs: rank them within each run, then average.
            ranked = np.array([sorted(r["mean_gate"][task], reverse=True) for r in runs]).mean(0)
            axis.bar(np.arange(len(ranked)) + k * width, ranked, width, label=task)
        axis.set(
            xlabel="expert (ranked by weight within each run)",
            ylabel="mean gate weight",
            title=f"MMoE gates, {condition} labels"
            + (f" ({result['sparse_task']} {result['sparse_fraction']:.0%})" if condition == "sparse" else ""),
        )
        axis.legend()
    return _save(figure, path)


FIGURES = {
    "correlation": ("fig2_correlation.png", correlation_figure),
    "shared-bottom": ("fig3_shared_bottom.png", shared_bottom_figure),
    "synthetic": ("fig4_synthetic.png", synthetic_figure),
    "trainability": ("fig5_trainability.png", trainability_figure),
    "census": ("census_auc.png", census_figure),
    "gates": ("fig6_gates.png", gates_figure),
    # beyond the paper (issue 13): census-beyond draws as the census study
    "census-beyond": ("census_beyond_auc.png", census_figure),
    **beyond.FIGURES,
    "weighting": (weighting_section.FIGURE_NAME, weighting_section.figure),  # issue 15: its own module
}


def draw_figure(study: str, result: dict[str, Any], out: Path) -> str:
    """Draws the study's figure into `out`; returns its file name."""
    name, draw = FIGURES[study]
    draw(result, out / name)
    return name
