"""Streaming benchmark: one epoch of MMoE on a large synthetic Parquet table, read in batches
(`mmoe train --streaming`) against loaded whole (`mmoe train`), each in a fresh process.

    python benchmarks/streaming.py                        # 5,000,000 rows (about 1 GB of Parquet)
    python benchmarks/streaming.py --rows 200000          # a quick try
    python benchmarks/streaming.py --workdir /data/bench  # keep the table there (reused when present)

The table: 10 numeric columns (normal, 2% missing), 10 text categorical columns of 3 to 1,000
distinct values (1% missing), and two tasks from one hidden score (a linear part, category
effects and a sine), `clicked` (binary) and `spent` (regression), so the two tasks are related but
not identical. It is written chunk by chunk with pyarrow's ParquetWriter (row groups of
--row-group-rows rows), so the writer's memory does not grow with --rows.

Each path runs `mmoe train` (MMoE defaults, batch 1024, 1 epoch, --threads, no early stopping)
through `mmoe.cli.main` in a child process of its own. Reported per path: peak RSS (VmHWM from
/proc/self/status at the end of the child: the whole process, loading and evaluation included;
ru_maxrss is not used because a child inherits its parent's), the peak when the data was loaded,
seconds to load the data, training samples/s (rows / seconds of the epoch loop, as
config.json's samples_per_second), the child's wall seconds, test metrics, and the 1-minute load
average before and after. Writes benchmarks/results/streaming.json (atomically) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
TASKS = "clicked:binary,spent:regression"
CARDINALITIES = (3, 5, 8, 12, 20, 40, 80, 150, 400, 1_000)
NUMERIC = 10
PATHS = ("streaming", "memory")
MEMORY_LIMIT_MB = 2048


# -- the table ----------------------------------------------------------------------------------------
def write_table(path: Path, rows: int, row_group_rows: int = 100_000, chunk_rows: int = 250_000,
                seed: int = 0) -> dict[str, Any]:
    """Writes the synthetic table to `path` chunk by chunk (atomically); returns its description."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mmoe.io import atomic_write

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=NUMERIC) / np.sqrt(NUMERIC)
    effects = [rng.normal(scale=0.5, size=cardinality) for cardinality in CARDINALITIES]
    names = [pa.array([f"c{j}_{v:05d}" for v in range(cardinality)]) for j, cardinality in enumerate(CARDINALITIES)]
    schema = pa.schema([*(pa.field(f"n{j}", pa.float64()) for j in range(NUMERIC)),
                        *(pa.field(f"c{j}", pa.string()) for j in range(len(CARDINALITIES))),
                        pa.field("clicked", pa.int8()), pa.field("spent", pa.float64())])

    def chunk(index: int, size: int) -> pa.Table:
        local = np.random.default_rng([seed, index])
        numeric = local.normal(size=(size, NUMERIC))
        score = numeric @ weights + np.sin(2.0 * numeric[:, 0])
        columns: list[pa.Array] = []
        for j in range(NUMERIC):
            values = numeric[:, j].copy()
            values[local.random(size) < 0.02] = np.nan   # stored as null (pandas reads both as missing)
            columns.append(pa.array(values, from_pandas=True))
        for j, cardinality in enumerate(CARDINALITIES):
            # Zipf-like frequencies: a few common values and a long tail, as real ids have.
            codes = np.minimum((local.pareto(1.2, size) * cardinality / 20).astype(np.int64), cardinality - 1)
            score += effects[j][codes]
            text = names[j].take(pa.array(codes))
            missing = pa.array(local.random(size) < 0.01)
            columns.append(pc.if_else(missing, pa.scalar(None, pa.string()), text))
        probability = 1.0 / (1.0 + np.exp(-(score - 0.5)))
        columns.append(pa.array((local.random(size) < probability).astype(np.int8)))
        columns.append(pa.array(5.0 + 2.0 * score + 0.3 * numeric[:, 1] ** 2 + local.normal(scale=1.0, size=size)))
        return pa.Table.from_arrays(columns, schema=schema)

    def write(temp: Path) -> None:
        with pq.ParquetWriter(temp, schema) as writer:
            for index, start in enumerate(range(0, rows, chunk_rows)):
                writer.write_table(chunk(index, min(chunk_rows, rows - start)), row_group_size=row_group_rows)

    started = time.perf_counter()
    atomic_write(path, write)
    return describe_table(path, seconds=time.perf_counter() - started)


def describe_table(path: Path, seconds: float | None = None) -> dict[str, Any]:
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    return {"path": str(path), "rows": metadata.num_rows, "row_groups": metadata.num_row_groups,
            "columns": metadata.num_columns, "bytes": path.stat().st_size, "write_seconds": seconds,
            "numeric": NUMERIC, "categorical_cardinalities": list(CARDINALITIES), "tasks": TASKS}


# -- one path, in a child process ---------------------------------------------------------------
def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def run_child(path: str, table: Path, out: Path, threads: int, batch_size: int, epochs: int) -> dict[str, Any]:
    """`mmoe train` on `table` in this process; what it cost."""
    import mmoe.data
    from mmoe.cli import main

    loading: dict[str, float | None] = {}
    load_dataset = mmoe.data.load_dataset

    def timed_load(spec: dict[str, Any]) -> Any:
        # The CLI imports load_dataset when the command runs, so this wrapper is what it calls.
        started = time.perf_counter()
        data = load_dataset(spec)
        loading.update(seconds=time.perf_counter() - started, peak_rss_mb=_status_mb("VmHWM"),
                       rss_mb=_status_mb("VmRSS"))
        return data

    mmoe.data.load_dataset = timed_load
    argv = ["train", "--data", str(table), "--tasks", TASKS, "--model", "mmoe", "--epochs", str(epochs),
            "--batch-size", str(batch_size), "--threads", str(threads), "--patience", "0", "--quiet",
            "--out", str(out)] + (["--streaming"] if path == "streaming" else [])
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    status = main(argv)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(status)
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return {"path": path, "peak_rss_mb": _status_mb("VmHWM"), "load": loading,
            "samples_per_second": config["samples_per_second"], "train_seconds": config["train_seconds"],
            "wall_seconds": wall, "rows": config["data_info"]["rows"],
            "test": {"clicked_auc": metrics["test"]["clicked"]["auc"], "spent_r2": metrics["test"]["spent"]["r2"]},
            "train_metrics_rows": metrics.get("train", {}).get("clicked", {}).get("rows"),
            "threads": threads, "loadavg_before": load_before, "loadavg_after": os.getloadavg()[0]}


def spawn(path: str, table: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", path, "--table", str(table),
                   "--json", str(result), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
                   "--epochs", str(args.epochs), "--run-dir", str(Path(scratch) / "run")]
        # The same thread budget for every library a path may use (torch, OpenMP, pyarrow's pool).
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, env=env)
        if completed.returncode != 0 or not result.exists():
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
            return {"path": path, "error": " | ".join(tail), "returncode": completed.returncode,
                    "seconds": time.perf_counter() - started}
        return json.loads(result.read_text())


# -- the driver -----------------------------------------------------------------------------------
def print_table(report: dict[str, Any]) -> None:
    table = report["table"]
    print(f"\n{table['rows']:,} rows, {table['row_groups']} row groups, {table['bytes'] / 2**20:,.0f} MB of Parquet; "
          f"MMoE, batch {report['settings']['batch_size']}, {report['settings']['epochs']} epoch, "
          f"{report['settings']['threads']} torch thread(s)")
    print(f"{'path':<10} {'peak RSS':>10} {'at load':>9} {'load s':>7} {'samples/s':>10} {'train s':>8} "
          f"{'wall s':>7} {'test AUC':>9} {'test R2':>8} {'loadavg':>11}")
    for run in report["runs"]:
        if "error" in run:
            print(f"{run['path']:<10} failed: {run['error']}")
            continue
        print(f"{run['path']:<10} {run['peak_rss_mb']:>8,.0f}MB {run['load']['peak_rss_mb']:>7,.0f}MB "
              f"{run['load']['seconds']:>7.1f} {run['samples_per_second']:>10,.0f} {run['train_seconds']:>8.1f} "
              f"{run['wall_seconds']:>7.1f} {run['test']['clicked_auc']:>9.4f} {run['test']['spent_r2']:>8.4f} "
              f"{run['loadavg_before']:>5.2f}/{run['loadavg_after']:<5.2f}")
    summary = report.get("summary", {})
    if "streaming_within_limit" in summary:
        print(f"streaming peak {'within' if summary['streaming_within_limit'] else 'ABOVE'} "
              f"{MEMORY_LIMIT_MB:,} MB")
    if "speed_ratio_streaming_over_memory" in summary:
        print(f"samples/s, streaming / in memory: {summary['speed_ratio_streaming_over_memory']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the synthetic table")
    parser.add_argument("--row-group-rows", type=int, default=100_000, help="rows per Parquet row group")
    parser.add_argument("--workdir", type=Path,
                        help="folder for the table (kept and reused when it has the same rows); default: a "
                             "temporary folder, removed at the end")
    parser.add_argument("--paths", default=",".join(PATHS), help="which paths to run, in this order")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each child")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic table")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "streaming.json", help="JSON output")
    # Internal: one path in this process (the driver spawns these).
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = run_child(args.child, args.table, args.run_dir, args.threads, args.batch_size, args.epochs)
        args.json.write_text(json.dumps(result, indent=2))
        return 0

    import torch

    from mmoe import __version__
    from mmoe.io import atomic_write_json

    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}; expected {', '.join(PATHS)}")
    scratch = None
    if args.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="mmoe-streaming-bench-")
        workdir = Path(scratch.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        table = workdir / f"synthetic-{args.rows}-rg{args.row_group_rows}-s{args.seed}.parquet"
        if table.exists():
            print(f"reusing {table}", file=sys.stderr, flush=True)
            description = describe_table(table)
        else:
            print(f"writing {args.rows:,} rows to {table} ...", file=sys.stderr, flush=True)
            description = write_table(table, args.rows, args.row_group_rows, seed=args.seed)
        report: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__, "mmoe": __version__},
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "settings": {"model": "mmoe (defaults: 8 experts x 16, towers 8)", "batch_size": args.batch_size,
                         "epochs": args.epochs, "threads": args.threads, "patience": 0},
            "table": description, "runs": []}
        for path in paths:
            print(f"  {path} ...", file=sys.stderr, flush=True)
            report["runs"].append(spawn(path, table, args))
            atomic_write_json(args.out, report)   # keep what is done if a later path fails
        done = {run["path"]: run for run in report["runs"] if "error" not in run}
        summary: dict[str, Any] = {"memory_limit_mb": MEMORY_LIMIT_MB}
        if "streaming" in done:
            summary["streaming_within_limit"] = done["streaming"]["peak_rss_mb"] <= MEMORY_LIMIT_MB
        if "memory" in done:
            summary["memory_within_limit"] = done["memory"]["peak_rss_mb"] <= MEMORY_LIMIT_MB
        if len(done) == 2:
            summary["speed_ratio_streaming_over_memory"] = (done["streaming"]["samples_per_second"]
                                                            / done["memory"]["samples_per_second"])
        report["summary"] = summary
        atomic_write_json(args.out, report)
    finally:
        if scratch is not None:
            scratch.cleanup()
    print_table(report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
