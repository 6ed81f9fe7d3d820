"""The loss-weighting benchmark: each method's per-step cost on census MMoE, against equal weights.
Prints a table and writes one JSON (default benchmarks/results/weighting.json).

    PYTHONPATH=src python benchmarks/weighting.py --threads 2 --repeats 3    # census group 1
    PYTHONPATH=src python benchmarks/weighting.py --smoke --out /tmp/w.json  # seconds: synthetic rows

What is timed: `mmoe.runs.fit` of the census experiments' MMoE (8 experts × 16, towers of 8, Adam
lr 1e-3, batch 1024) for --epochs epochs with each weighting (`mmoe.train.weighting.WEIGHTINGS`),
no early stopping. A step's time is the epochs' training-loop seconds (the history's `seconds`,
without the validation pass) over the steps taken. The methods alternate: repeat r runs them in
an order rotated by r, so that a drift of the machine's speed hits every method alike; before
anything is timed one untimed `fit` warms the process (the first `fit` imports torch._dynamo).
Reported per method: the median seconds per step over the repeats, the overhead against "ew"
(the ratio of medians, and the difference in ms), the last repeat's test AUC per task (informative
only: one seed, a few epochs, no study), and the 1-minute load average around each run, since a
busy neighbour slows torch's threads far more than its share.

--smoke: 2,000 synthetic rows (two regression tasks), batches of 256, one epoch, one repeat:
every method runs once through the same code, for the test suite (no census files needed).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODEL = {"num_experts": 8, "expert_units": (16,), "tower_units": (8,)}


def load_data(smoke: bool, data_dir: str | None) -> Any:
    if smoke:
        from mmoe.data.synthetic import SyntheticConfig, load_synthetic

        return load_synthetic(SyntheticConfig(rows=2000, dim=20, seed=0))
    from mmoe.data.census import load_census

    return load_census(1, data_dir)


def run_method(data: Any, weighting: str, epochs: int, batch_size: int, seed: int, threads: int | None) -> dict:
    """One `fit` with `weighting`; its seconds per step, test metrics and load averages."""
    from mmoe.runs import fit
    from mmoe.train.trainer import TrainConfig

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=1e-3,
        patience=0,
        seed=seed,
        threads=threads,
        restore_best=False,
        weighting=weighting,
    )
    load_before = os.getloadavg()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(data, "mmoe", config, **MODEL)
    steps_per_epoch = math.ceil(len(data.train) / batch_size)
    seconds = sum(entry["seconds"] for entry in result.history)
    test = result.metrics.get("test", {})
    return {
        "weighting": weighting,
        "seconds_per_step": seconds / (steps_per_epoch * len(result.history)),
        "epochs": len(result.history),
        "steps": steps_per_epoch * len(result.history),
        "train_loss": result.history[-1]["train_loss"],
        "test": {task: {k: v for k, v in values.items() if k in ("auc", "mse", "r2")} for task, values in test.items()},
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def summarise(runs: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """Per method: median seconds per step, and its overhead against ew."""
    medians = {m: statistics.median(r["seconds_per_step"] for r in runs if r["weighting"] == m) for m in methods}
    base = medians.get("ew")
    summary = {}
    for method in methods:
        last = [r for r in runs if r["weighting"] == method][-1]
        summary[method] = {
            "ms_per_step_median": 1000 * medians[method],
            "ratio_to_ew": medians[method] / base if base else None,
            "overhead_ms_per_step": 1000 * (medians[method] - base) if base is not None else None,
            "test": last["test"],
        }
    return summary


def print_table(report: dict[str, Any]) -> None:
    print(f"{'weighting':<13}{'ms/step':>9}{'× ew':>8}{'+ms':>8}  test")
    for method, row in report["summary"].items():
        test = ", ".join(
            f"{task} {name} {value:.4f}" for task, values in row["test"].items() for name, value in values.items()
        )
        ratio = f"{row['ratio_to_ew']:.2f}" if row["ratio_to_ew"] is not None else "-"
        extra = f"{row['overhead_ms_per_step']:+.2f}" if row["overhead_ms_per_step"] is not None else "-"
        print(f"{method:<13}{row['ms_per_step_median']:>9.2f}{ratio:>8}{extra:>8}  {test}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--methods", help="comma-separated weightings (default: all of WEIGHTINGS but fixed)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method, in rotated order")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--data-dir", default=os.environ.get("MMOE_DATA_DIR"), help="census files")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "weighting.json", help="JSON output")
    parser.add_argument("--smoke", action="store_true", help="seconds: synthetic rows, one epoch, one repeat")
    args = parser.parse_args(argv)

    import torch

    from mmoe.io import atomic_write_json
    from mmoe.train.weighting import WEIGHTINGS

    methods = args.methods.split(",") if args.methods else [m for m in WEIGHTINGS if m != "fixed"]
    unknown = [m for m in methods if m not in WEIGHTINGS or m == "fixed"]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; expected names of `mmoe weightings` (fixed excluded)")
    if "ew" not in methods:
        methods.insert(0, "ew")  # the reference
    if args.smoke:
        args.epochs, args.repeats, args.batch_size = 1, 1, 256
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(args.smoke, args.data_dir)
    run_method(data, "ew", 1, args.batch_size, args.seed, args.threads)  # untimed: warms the process
    runs = []
    for repeat in range(args.repeats):
        shift = repeat % len(methods)
        for method in methods[shift:] + methods[:shift]:
            print(f"  repeat {repeat + 1}/{args.repeats}: {method} ...", file=sys.stderr, flush=True)
            runs.append(
                {**run_method(data, method, args.epochs, args.batch_size, args.seed, args.threads), "repeat": repeat}
            )
    report = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
        "smoke": args.smoke,
        "data": "synthetic 2,000 rows" if args.smoke else "census group 1",
        "train_rows": len(data.train),
        "model": "MMoE 8 experts x 16, towers 8, Adam 1e-3",
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "threads": args.threads or torch.get_num_threads(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "runs": runs,
        "summary": summarise(runs, methods),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
