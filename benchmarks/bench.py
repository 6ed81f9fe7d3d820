"""The speed benchmark: mmoe against torch-rechub and DeepCTR-Torch, population training, and how
cost grows. Prints a table and writes one JSON (default benchmarks/results/bench.json).

    pip install -c constraints.txt ".[bench]"       # the peers are an optional extra
    python benchmarks/bench.py                       # every section
    python benchmarks/bench.py --sections peers --epochs 2 --repeats 3

Sections:
  peers       census group 1, the same split and model (MMoE, 8 experts × 16, towers of 8, Adam
              lr 1e-3, batch 1024) trained for E epochs by each contender through its own API,
              each run in a fresh process (so its peak memory is its own), contenders alternating
              so that drift hits all alike. Samples/s over whole epochs, test AUC, peak RSS.
              With lightgbm installed, also mmoe's LightGBM baseline (`--model lightgbm`: one
              booster per task, its defaults, early-stopped on mmoe's validation split, the same
              test split): test AUC and seconds of the whole fit (rows/s = training rows / those).
  population  the paper's synthetic setting (d = 100; MMoE/OMoE 8 × 16, towers of 8; Shared-Bottom
              of equal size), N replicas with fresh data each: completed runs per minute of
              `train_population` against runs one after another with `fit`.
  scaling     mmoe's time per epoch on census against rows (resampled training file) and
              against the number of experts, with the fitted log-log exponents.

Ratios are measured side by side in one run; the machine's load average is recorded with each
measurement, since a busy neighbour costs torch's OpenMP threads far more than its share.
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
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import PEERS, PeerData, _result, _TrainWindow  # noqa: E402

CONTENDERS = ("mmoe", *PEERS, "lightgbm")
PEER_MODULES = {"rechub": "torch_rechub", "deepctr": "deepctr_torch", "lightgbm": "lightgbm"}


# -- the mmoe contender (runs in its own process, like the peers) --------------------------------
def run_mmoe(data: PeerData, epochs: int, batch_size: int = 1024, lr: float = 1e-3, seed: int = 0,
             threads: int | None = None) -> dict[str, Any]:
    """mmoe's MMoE on PeerData through its public API (`mmoe.runs.fit`), the same shape as the peers'.
    No early stopping and the last epoch's weights, as the peers do."""
    import torch

    from mmoe.data.dataset import InputSpec, MultiTaskData, Split, Task
    from mmoe.runs import fit
    from mmoe.train.metrics import to_predictions
    from mmoe.train.trainer import TrainConfig, predict_outputs

    spec = InputSpec(tuple(data.dense_names), tuple(data.sparse_names), tuple(int(v) for v in data.vocab_sizes))
    offsets = np.asarray(spec.offsets, dtype=np.int64)

    def split(dense: np.ndarray, sparse: np.ndarray, labels: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)),
                     torch.from_numpy(np.ascontiguousarray(sparse + offsets)),
                     torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32)))

    tasks = [Task(name, "binary") for name in data.task_names]
    test = split(data.dense_test, data.sparse_test, data.labels_test)
    dataset = MultiTaskData(tasks, spec, split(data.dense_train, data.sparse_train, data.labels_train), test, test)
    config = TrainConfig(learning_rate=lr, batch_size=batch_size, epochs=epochs, patience=0, seed=seed,
                         threads=threads, restore_best=False)
    window = _TrainWindow()
    window.start()
    cpu_before = time.process_time()
    result = fit(dataset, "mmoe", config)
    cpu_seconds = time.process_time() - cpu_before
    memory = window.stop()
    probabilities = to_predictions(tasks, predict_outputs(result.model, test)).numpy()
    from mmoe import __version__

    return {**_result("mmoe", "mmoe", data, [entry["seconds"] for entry in result.history], [cpu_seconds],
                      probabilities, memory), "version": __version__}


def run_lightgbm(data: PeerData, data_dir: str | None, seed: int = 0, threads: int | None = None) -> dict[str, Any]:
    """mmoe's LightGBM baseline (`mmoe.baselines.fit_baseline`) on census group 1: trained on the
    training file, early-stopped on mmoe's validation split, measured on its test split (PeerData's
    test rows). One "epoch": the whole fit, every task's booster."""
    from mmoe.baselines import fit_baseline
    from mmoe.data.census import load_census
    from mmoe.predict import predictions_of

    census = load_census(1, data_dir)
    window = _TrainWindow()
    window.start()
    cpu_before = time.process_time()
    result = fit_baseline(census, "lightgbm", seed=seed, threads=threads)
    cpu_seconds = time.process_time() - cpu_before
    memory = window.stop()
    probabilities = predictions_of(result.model, census.tasks, census.test)
    return {**_result("lightgbm", "lightgbm", data, [result.train_seconds], [cpu_seconds], probabilities, memory),
            "best_rounds": result.best_rounds, "options": result.model.hyperparameters,
            "note": "one fit of every task's booster: train_seconds is its time, samples/s = training rows / it"}


def census_peer_data(data_dir: str | None) -> PeerData:
    """Census group 1 in the form every contender reads: standardised dense columns, per-column
    category codes (slot 0 = unseen), train = the training file, test = mmoe's test split."""
    from mmoe.data.census import load_census

    data = load_census(1, data_dir)
    offsets = np.asarray(data.input_spec.offsets, dtype=np.int64)
    return PeerData(
        dense_train=data.train.numeric.numpy(), dense_test=data.test.numeric.numpy(),
        sparse_train=data.train.categorical.numpy() - offsets, sparse_test=data.test.categorical.numpy() - offsets,
        vocab_sizes=list(data.input_spec.cardinalities), dense_names=list(data.input_spec.numeric),
        sparse_names=list(data.input_spec.categorical), labels_train=data.train.labels.numpy(),
        labels_test=data.test.labels.numpy(), task_names=data.task_names)


def _run_contender(contender: str, data_path: Path, epochs: int, threads: int | None, seed: int,
                   data_dir: str | None = None) -> dict[str, Any]:
    """One contender in a fresh process; returns its JSON result (or the error it died with)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.json"
        if contender in ("mmoe", "lightgbm"):
            command = [sys.executable, str(Path(__file__).resolve()), "--contender", contender]
            if contender == "lightgbm" and data_dir is not None:
                command += ["--data-dir", data_dir]
        else:
            command = [sys.executable, str(HERE / "peers.py"), "--peer", contender]
        command += ["--data", str(data_path), "--epochs", str(epochs), "--seed", str(seed), "--json", str(out)]
        if threads:
            command += ["--threads", str(threads)]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0 or not out.exists():
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
            return {"contender": contender, "error": " | ".join(tail)}
        return {"contender": contender, **json.loads(out.read_text())}


def _installed(contender: str) -> bool:
    if contender == "mmoe":
        return True
    import importlib.util

    return importlib.util.find_spec(PEER_MODULES[contender]) is not None


def section_peers(args: argparse.Namespace) -> dict[str, Any]:
    contenders = [c for c in CONTENDERS if _installed(c)]
    missing = [c for c in CONTENDERS if c not in contenders]
    if missing:
        print(f"peers not installed: {', '.join(missing)} (pip install -c constraints.txt '.[bench]')", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        data_path = Path(scratch) / "census-g1.npz"
        census_peer_data(args.data_dir).save(data_path)
        runs: list[dict[str, Any]] = []
        for repeat in range(args.repeats):
            shift = repeat % len(contenders)  # rotate the order: drift hits every contender alike
            for contender in contenders[shift:] + contenders[:shift]:
                print(f"  peers: repeat {repeat + 1}/{args.repeats}, {contender} ...", file=sys.stderr, flush=True)
                # Seed per repeat, the same for every contender: AUCs are compared over the same seeds.
                result = _run_contender(contender, data_path, args.epochs, args.threads, args.seed + repeat,
                                        args.data_dir)
                result["repeat"] = repeat
                runs.append(result)
    summary: dict[str, Any] = {}
    for contender in contenders:
        ok = [r for r in runs if r["contender"] == contender and "error" not in r]
        if not ok:
            summary[contender] = {"error": next(r["error"] for r in runs if r["contender"] == contender)}
            continue
        rates = [r["samples_per_second"] for r in ok]
        summary[contender] = {
            "version": ok[0]["version"], "samples_per_second_median": float(np.median(rates)),
            "samples_per_second_runs": rates,
            "test_auc_mean": {task: float(np.mean([r["test_auc"][task] for r in ok])) for task in ok[0]["test_auc"]},
            "test_auc_runs": {task: [r["test_auc"][task] for r in ok] for task in ok[0]["test_auc"]},
            "peak_rss_mb_max": float(max(r["peak_rss_mb"] for r in ok)),
            "train_seconds_median": float(np.median([r["train_seconds"] for r in ok])),
        }
    ratios, auc_differences = {}, {}
    if "mmoe" in summary and "error" not in summary["mmoe"]:
        mine = summary["mmoe"]
        for peer in (*PEERS, "lightgbm"):
            if peer in summary and "error" not in summary[peer]:
                if peer in PEERS:  # LightGBM's rows/s count one whole fit, not epochs: no speed ratio
                    ratios[f"mmoe/{peer}"] = (mine["samples_per_second_median"]
                                              / summary[peer]["samples_per_second_median"])
                # mmoe's mean test AUC minus the peer's, per task (the target: none below 0)
                auc_differences[f"mmoe-{peer}"] = {task: mine["test_auc_mean"][task] - auc
                                                   for task, auc in summary[peer]["test_auc_mean"].items()}
    return {"epochs": args.epochs, "repeats": args.repeats, "model": "MMoE 8 experts x 16, towers 8, Adam 1e-3, "
            "batch 1024", "not_installed": missing, "runs": runs, "summary": summary, "speed_ratios": ratios,
            "seeds": [args.seed + repeat for repeat in range(args.repeats)], "test_auc_differences": auc_differences,
            "targets": {"mmoe/rechub": 10.0, "mmoe/deepctr": 5.0, "peak_rss_mb": 2048}}


# -- population training ---------------------------------------------------------------------------
def section_population(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mmoe.data.synthetic import SyntheticConfig, load_synthetic
    from mmoe.runs import fit
    from mmoe.train.population import train_population
    from mmoe.train.trainer import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    models = {"mmoe": {}, "omoe": {}, "shared-bottom": {"hidden_units": (125,)}}  # 125 units: equal size
    config = TrainConfig(epochs=args.population_epochs, batch_size=128, learning_rate=1e-3, patience=0)
    largest = max(args.replicas)
    datasets = [load_synthetic(SyntheticConfig(correlation=0.5, seed=seed)) for seed in range(largest)]
    results = []
    for model, options in models.items():
        sizes = args.replicas if model == "mmoe" else [largest]
        sequential_runs = min(args.sequential_runs, largest)
        # One untimed run of each path first: the first `fit` in a process imports torch._dynamo
        # (through torch.optim) and more, ≈ 1 s that would otherwise be charged to the sequential
        # rate and inflate the speed-up.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(datasets[0], model, replace(config, epochs=1), **options)
            train_population(model, datasets[:2], replace(config, epochs=1), seeds=[0, 1], **options)
        started = time.perf_counter()
        for seed in range(sequential_runs):
            fit(datasets[seed], model, replace(config, seed=seed), **options)
        sequential_per_run = (time.perf_counter() - started) / sequential_runs
        for replicas in sizes:
            print(f"  population: {model}, N = {replicas} ...", file=sys.stderr, flush=True)
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                train_population(model, datasets[:replicas], config, seeds=list(range(replicas)), **options)
            seconds = time.perf_counter() - started
            floor = _first_layer_seconds(model, options, datasets[0], config, replicas)
            results.append({"model": model, "replicas": replicas, "population_seconds": seconds,
                            "population_runs_per_minute": 60 * replicas / seconds,
                            "sequential_seconds_per_run": sequential_per_run,
                            "sequential_runs_measured": sequential_runs,
                            "sequential_runs_per_minute": 60 / sequential_per_run,
                            "speedup": sequential_per_run * replicas / seconds,
                            "first_layer_seconds": floor,
                            "speedup_ceiling": sequential_per_run * replicas / floor,
                            "loadavg_before": load_before})
    return {"setting": {"dim": 100, "rows": 10_000, "train_rows": 8_000, "epochs": config.epochs, "batch_size": 128,
                        "warm_up": "one untimed fit and one untimed 2-replica population per model",
                        "learning_rate": 1e-3, "models": {m: o or "defaults (8 experts x 16, towers 8)"
                                                          for m, o in models.items()}},
            "results": results, "target": {"replicas": 200, "speedup": 10.0},
            "note": "speedup_ceiling: one-by-one time over the first layer's products alone (fp32), "
                    "the speed-up if every other part of population training took no time"}


def _first_layer_seconds(model: str, options: dict[str, Any], data: Any, config: Any, replicas: int) -> float:
    """The part of a population run no implementation in fp32 avoids, timed alone: the first
    layer's batched products (forward and weight gradient at every step, forward over every row
    evaluated: the validation split after each epoch, then all three splits). Its inverse bounds
    the speed-up: sequential time / this = the speed-up if everything else took no time."""
    import torch

    from mmoe.models import build_model
    from mmoe.models.layers import SparseLinear
    from mmoe.train.trainer import TrainConfig

    assert isinstance(config, TrainConfig)
    network = build_model(model, data.input_spec, len(data.tasks), **options)
    width = next(m for m in network.modules() if isinstance(m, SparseLinear)).out_features
    dim, batch = data.input_spec.num_numeric, config.batch_size
    steps = config.epochs * -(-len(data.train) // batch)
    evaluated = config.epochs * len(data.validation) + len(data.train) + len(data.validation) + len(data.test)
    chunk = max(1, config.eval_batch_size // replicas)  # rows per replica per evaluation pass, as population.py
    weight = torch.randn(replicas, dim, width)
    x, grad, rows = torch.randn(replicas, batch, dim), torch.randn(replicas, batch, width), torch.randn(replicas, chunk, dim)

    def median_seconds(work: Any) -> float:
        work()
        times = []
        for _ in range(7):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return float(np.median(times))

    step = median_seconds(lambda: (torch.bmm(x, weight), torch.bmm(x.transpose(1, 2), grad)))
    return step * steps + median_seconds(lambda: torch.bmm(rows, weight)) * evaluated / chunk


# -- how cost grows --------------------------------------------------------------------------------
def _epoch_seconds(data: Any, epochs: int, **hyperparameters: Any) -> float:
    from mmoe.runs import fit
    from mmoe.train.trainer import TrainConfig

    result = fit(data, "mmoe", TrainConfig(epochs=epochs, patience=0), **hyperparameters)
    return float(np.median([entry["seconds"] for entry in result.history]))


def _exponent(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def section_scaling(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mmoe.data.census import load_census
    from mmoe.data.dataset import MultiTaskData

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_census(1, args.data_dir)
    rng = np.random.default_rng(args.seed)
    rows_table = []
    for rows in (50_000, 100_000, 200_000, 400_000):
        print(f"  scaling: {rows:,} rows ...", file=sys.stderr, flush=True)
        index = torch.from_numpy(rng.integers(0, len(data.train), rows))
        resampled = MultiTaskData(data.tasks, data.input_spec, data.train.subset(index), data.validation, data.test)
        rows_table.append({"rows": rows, "epoch_seconds": _epoch_seconds(resampled, args.scaling_epochs)})
    experts_table = []
    for experts in (2, 4, 8, 16, 32, 64):
        print(f"  scaling: {experts} experts ...", file=sys.stderr, flush=True)
        experts_table.append({"experts": experts,
                              "epoch_seconds": _epoch_seconds(data, args.scaling_epochs, num_experts=experts)})
    return {"rows": rows_table, "rows_exponent": _exponent([r["rows"] for r in rows_table],
                                                           [r["epoch_seconds"] for r in rows_table]),
            "experts": experts_table,
            "experts_exponent": _exponent([r["experts"] for r in experts_table],
                                          [r["epoch_seconds"] for r in experts_table]),
            "note": "exponent = slope of log(epoch seconds) against log(rows or experts); 1 is linear"}


# -- output -----------------------------------------------------------------------------------------
def print_tables(report: dict[str, Any]) -> None:
    peers = report.get("peers")
    if peers:
        print(f"\ncensus group 1, {peers['epochs']} epochs, {peers['repeats']} runs each (seeds "
              f"{', '.join(map(str, peers.get('seeds', [])))}): median samples/s, mean test AUC")
        print(f"{'contender':<10} {'version':<8} {'samples/s':>11} {'income AUC':>11} {'marital AUC':>12} "
              f"{'peak RSS':>9}")
        for name, row in peers["summary"].items():
            if "error" in row:
                print(f"{name:<10} failed: {row['error']}")
                continue
            auc = row["test_auc_mean"]
            print(f"{name:<10} {row['version']:<8} {row['samples_per_second_median']:>11,.0f} "
                  f"{auc.get('income', float('nan')):>11.4f} {auc.get('marital', float('nan')):>12.4f} "
                  f"{row['peak_rss_mb_max']:>7,.0f}MB")
        lightgbm = peers["summary"].get("lightgbm", {})
        if "train_seconds_median" in lightgbm:
            print(f"  lightgbm (mmoe's --model lightgbm baseline, one booster per task, early-stopped on the "
                  f"validation split): {lightgbm['train_seconds_median']:.1f}s per fit of every task; samples/s = "
                  f"training rows / that")
        for ratio, value in peers["speed_ratios"].items():
            print(f"  {ratio}: {value:.1f}x (target {peers['targets'][ratio]:.0f}x)")
        for pair, differences in peers.get("test_auc_differences", {}).items():
            print(f"  test AUC {pair.replace('-', ' - ')}: "
                  + ", ".join(f"{task} {value:+.4f}" for task, value in differences.items()) + " (target: >= 0)")
    population = report.get("population")
    if population:
        print("\npopulation training (synthetic, d = 100, "
              f"{population['setting']['epochs']} epochs per run): runs per minute")
        print(f"{'model':<14} {'N':>4} {'population':>11} {'one by one':>11} {'speed-up':>9} {'ceiling':>8}")
        for row in population["results"]:
            print(f"{row['model']:<14} {row['replicas']:>4} {row['population_runs_per_minute']:>11.1f} "
                  f"{row['sequential_runs_per_minute']:>11.1f} {row['speedup']:>8.1f}x {row['speedup_ceiling']:>7.1f}x")
        print("  ceiling: the speed-up if only the first layer's fp32 products took time")
    scaling = report.get("scaling")
    if scaling:
        print("\ntime per epoch (census, MMoE)")
        print("  rows:    " + ", ".join(f"{r['rows']:,}: {r['epoch_seconds']:.2f}s" for r in scaling["rows"])
              + f"  -> exponent {scaling['rows_exponent']:.2f}")
        print("  experts: " + ", ".join(f"{r['experts']}: {r['epoch_seconds']:.2f}s" for r in scaling["experts"])
              + f"  -> exponent {scaling['experts_exponent']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sections", default="peers,population,scaling", help="comma-separated sections to run")
    parser.add_argument("--epochs", type=int, default=2, help="peers: epochs per run")
    parser.add_argument("--repeats", type=int, default=2, help="peers: runs per contender")
    parser.add_argument("--replicas", type=lambda s: [int(v) for v in s.split(",")], default=[1, 10, 50, 200],
                        help="population: replica counts")
    parser.add_argument("--population-epochs", type=int, default=5, help="population: epochs per run")
    parser.add_argument("--sequential-runs", type=int, default=10,
                        help="population: runs timed one by one to get the sequential rate")
    parser.add_argument("--scaling-epochs", type=int, default=2, help="scaling: epochs per point (median taken)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="census folder (default: $MMOE_DATA_DIR, then the cache)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench.json", help="JSON output")
    # Internal: one contender in this process (the driver spawns these).
    parser.add_argument("--contender", choices=["mmoe", "lightgbm"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.contender == "lightgbm":
        result = run_lightgbm(PeerData.load(args.data), args.data_dir, seed=args.seed, threads=args.threads)
        args.json.write_text(json.dumps(result, indent=2))
        return 0
    if args.contender:
        result = run_mmoe(PeerData.load(args.data), args.epochs, seed=args.seed, threads=args.threads)
        args.json.write_text(json.dumps(result, indent=2))
        return 0

    import torch

    from mmoe import __version__
    from mmoe.io import atomic_write_json

    sections = {"peers": section_peers, "population": section_population, "scaling": section_scaling}
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in sections]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; expected {', '.join(sections)}")
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version(), "torch": torch.__version__,
                                          "torch_threads": args.threads or torch.get_num_threads(),
                                          "mmoe": __version__},
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name in wanted:
        print(f"section {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        report[name] = sections[name](args)
        report[name]["seconds"] = time.perf_counter() - started
        atomic_write_json(args.out, report)  # keep what is done if a later section fails
    print_tables(report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
