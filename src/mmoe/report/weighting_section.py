"""The weighting study's part of report.md and its figure (`mmoe.experiments.weighting_study`).

`render(result)` gives the section's lines (the verdict per method, then each method's paired
gain over equal weights per cell); `figure(result, path)` draws the gains with their intervals,
one panel per (setting, model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

FIGURE_NAME = "weighting.png"
MARK = {"better": "▲", "worse": "▼", "no difference": ""}
METRIC_TEXT = {"auc": "mean test AUC over the tasks (higher is better)", "mse": "mean test MSE (lower is better)"}


def _f(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _signed(value: Any, digits: int = 4) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:+.{digits}f}"


def render(result: dict[str, Any]) -> list[str]:
    cells = result["cells"]
    keys = [f"{setting}/{model}" for setting, models in cells.items() for model in models]
    count = len(keys)
    lines = [
        f"{len(result['methods']) - 1} methods of `mmoe weightings` ({', '.join(result['methods'][1:])}; `fixed` "
        "is left out: it needs hand-chosen task weights) against equal weights (`ew`), "
        f"{result['runs_per_cell']} paired runs per (setting, model, method): run i has the same "
        "data and initialisation seed under every method. Census and click-log cells train with `TrainConfig`'s "
        "defaults and the models' defaults, **untuned** (tuning every method × model is out of reach); synthetic "
        "cells with the synthetic studies' protocol and the learning rate their equal-weights pilot chose. "
        "Score per run: " + "; ".join(f"{k}: {v}" for k, v in METRIC_TEXT.items()) + ".",
        "",
        f"Verdict rule (fixed before running): per cell, the paired t-interval of the mean gain over `ew` at "
        f"confidence 1 − {result['alpha']:g}/{count} (Bonferroni over the method's {count} cells); ▲ above 0 "
        "(better), ▼ below 0 (worse). **beats ew**: better somewhere, worse nowhere; **worse than ew**: the "
        "reverse; **mixed**: both; **no significant difference**: neither (with few runs, weak evidence of "
        "equality).",
        "",
    ]
    for setting, reason in result.get("skipped", {}).items():
        lines += [f"- **{setting}** skipped: {reason}"]
    if result.get("skipped"):
        lines.append("")
    lines += ["### Settings", "", "| setting | data | metric | training |", "| --- | --- | --- | --- |"]
    for setting, d in result["settings"].items():
        rows = d.get("train_rows", d.get("config", {}).get("rows"))
        size = f", {rows:,} rows" if isinstance(rows, int) else ", all rows" if "train_rows" in d else ""
        lines.append(f"| {setting} | {d['data']}{size}, {d['epochs']} epochs | {d['metric']} | {d['training']} |")
    beating = [m for m, v in result["verdicts"].items() if v == "beats ew"]
    lines += [
        "",
        "### Verdicts",
        "",
        f"{len(beating)} of {len(result['verdicts'])} methods beat equal weights"
        + (f": {', '.join(beating)}." if beating else "."),
        "",
        "| method | verdict | cells better | cells worse | " + " | ".join(keys) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in keys) + " |",
    ]
    for method, verdict in result["verdicts"].items():
        comparison = result["comparisons"][method]
        better = sum(c["outcome"] == "better" for c in comparison.values())
        worse = sum(c["outcome"] == "worse" for c in comparison.values())
        entries = []
        for key in keys:
            c = comparison.get(key)
            if c is None:
                entries.append("–")
                continue
            low, high = c["ci"]
            half = (high - low) / 2 if low is not None and high is not None and np.isfinite(high - low) else None
            entries.append(f"{_signed(c['gain'])} ± {_f(half)} {MARK[c['outcome']]}".strip())
        lines.append(f"| {method} | **{verdict}** | {better} | {worse} | " + " | ".join(entries) + " |")
    lines += [
        "",
        "Cells: mean paired gain over `ew` (AUC points, or MSE reduction) ± the Bonferroni interval's half-width.",
        "",
        "### Means per method",
        "",
        "Mean score with its 95% t-interval half-width; seconds: mean training-loop seconds per run (in "
        "synthetic cells a run's replica reports its whole population's time); failed: runs with a "
        "non-finite score.",
        "",
        "| method | " + " | ".join(keys) + " | seconds per run | failed |",
        "| --- | " + " | ".join("---" for _ in keys) + " | --- | --- |",
    ]
    for method in result["methods"]:
        entries, seconds, failed = [], [], 0
        for models in cells.values():
            for model in models:
                s = models[model]["methods"].get(method, {}).get("summary")
                if s is None:
                    entries.append("–")
                    continue
                half = s["ci_high"] - s["mean"] if s["ci_high"] is not None else None
                entries.append(f"{_f(s['mean'])} ± {_f(half)}")
                seconds.append(s["train_seconds"])
                failed += s["failed"]
        mean_seconds = float(np.mean(seconds)) if seconds else None
        lines.append(f"| {method} | " + " | ".join(entries) + f" | {_f(mean_seconds, 2)} | {failed} |")
    return lines


def figure(result: dict[str, Any], path: Path) -> Path:
    """One row per setting, one column per model: each method's mean paired gain over ew with its
    Bonferroni interval (green: better, red: worse)."""
    cells = result["cells"]
    models = list(dict.fromkeys(model for by_model in cells.values() for model in by_model)) or ["-"]
    settings = list(cells) or ["-"]
    methods = list(result["comparisons"])
    rows, columns = len(settings), len(models)
    fig, grid = plt.subplots(rows, columns, figsize=(4.6 * columns, (0.22 * len(methods) + 0.9) * rows), squeeze=False)
    keys = [f"{setting}/{model}" for setting in settings for model in models]
    axes = grid.ravel()
    for axis, key in zip(axes, keys):
        for i, method in enumerate(methods):
            c = result["comparisons"][method].get(key)
            if c is None or c["gain"] is None or not np.isfinite(c["gain"]):
                continue
            low, high = c["ci"]
            color = {"better": "tab:green", "worse": "tab:red"}.get(c["outcome"], "k")
            if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
                axis.plot([low, high], [i, i], color=color, linewidth=1.5)
            axis.plot([c["gain"]], [i], "o", color=color, markersize=4)
        axis.axvline(0.0, color="grey", linestyle=":", linewidth=1)
        axis.set_yticks(range(len(methods)), methods, fontsize=7)
        axis.invert_yaxis()
        axis.set_title(key, fontsize=9)
        axis.tick_params(axis="x", labelsize=7)
    for axis, key in zip(axes, keys):
        setting, model = key.split("/", 1)
        if model not in cells.get(setting, {}):  # a setting without this model: an empty panel
            axis.set_visible(False)
    fig.suptitle("Gain over equal weights (paired; > 0 better; green/red: Bonferroni interval excludes 0)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.5 / fig.get_figheight()))  # room for the title
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
