"""`mmoe reproduce`: runs the studies (`mmoe.experiments`), writes results.json, the figures and report.md.

Each study's result is collected into results.json as it finishes (so a partial run still leaves
a readable report); the work inside a study is cached per finished unit (see `cache`), so a
rerun continues where an interrupted one stopped.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mmoe.errors import MmoeError
from mmoe.experiments.context import StudyContext, quiet_warnings
from mmoe.experiments.scale import get_scale
from mmoe.experiments.studies import BEYOND_PAPER, NEEDS_CENSUS, PAPER_STUDIES, STUDIES, load_study
from mmoe.io import atomic_write_json, atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `mmoe reproduce`."""
    parser.add_argument("--quick", action="store_true", help="every study at reduced size (minutes)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # CI smoke size
    parser.add_argument(
        "--study",
        action="append",
        choices=list(STUDIES),
        metavar="NAME",
        help=f"run only this study (repeatable): {', '.join(STUDIES)} (default: the paper's six)",
    )
    parser.add_argument(
        "--beyond",
        action="store_true",
        help=f"also the studies beyond the paper: {', '.join(BEYOND_PAPER)} (hours at standard size)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="census: runs per tuned model (default: 4 quick, 20 standard; the paper: 400)",
    )
    parser.add_argument(
        "--trials", type=int, default=None, help="census: tuning trials per model (default: 4 quick, 15 standard)"
    )
    parser.add_argument(
        "--tuned",
        type=Path,
        default=None,
        help="reuse the tuned census configurations in this folder (a report's tuned/)",
    )
    parser.add_argument("--out", type=Path, default=Path("report"), help="report folder")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the census files (default: $MMOE_DATA_DIR, then the user cache)",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of every study")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per process (1 is fastest for these small models)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=_cpus(),
        help="processes training independent runs side by side (default: the CPUs available)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def chosen_studies(named: list[str] | None, beyond: bool) -> list[str]:
    """The studies `--study` names (default: the paper's), and with `--beyond` those beyond it."""
    return list(named or PAPER_STUDIES) + (list(BEYOND_PAPER) if beyond else [])


def command_reproduce(args: argparse.Namespace) -> int:
    """The handler of `mmoe reproduce`."""
    scale_name = "tiny" if args.tiny else "quick" if args.quick else "standard"
    scale = get_scale(scale_name).with_overrides(repeats=args.repeats, trials=args.trials)
    if args.tuned is not None:
        from mmoe.experiments.tuning import check_tuned_dir  # here: the module imports optuna

        check_tuned_dir(args.tuned)
    if args.seed < 0 or args.threads < 1 or args.workers < 1:
        raise MmoeError(
            f"--seed must be >= 0, --threads and --workers >= 1; got --seed {args.seed}, "
            f"--threads {args.threads}, --workers {args.workers}"
        )
    ctx = StudyContext(
        out=args.out,
        scale=scale,
        seed=args.seed,
        data_dir=args.data_dir,
        threads=args.threads,
        workers=args.workers,
        tuned_dir=args.tuned,
        show_progress=not args.quiet,
    )
    command = "mmoe reproduce " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["reproduce"] else "mmoe reproduce"
    results = reproduce(ctx, chosen_studies(args.study, args.beyond), command=command)
    verdicts = ", ".join(f"{c['verdict']}" for c in results["claims"])
    print(f"report: {ctx.out / 'report.md'} ({results['meta']['seconds']:.0f} s); claims: {verdicts}")
    return 0


def reproduce(ctx: StudyContext, studies: list[str], command: str = "reproduce") -> dict[str, Any]:
    """Runs `studies` in the order of STUDIES; writes results.json, figures and report.md into ctx.out."""
    import torch

    from mmoe.experiments.claims import evaluate_claims
    from mmoe.report.plots import draw_figure
    from mmoe.report.report import render_report

    unknown = sorted(set(studies) - set(STUDIES))
    if unknown:
        raise MmoeError(f"unknown study {', '.join(unknown)}; expected {', '.join(STUDIES)}")
    ctx.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(ctx.threads)
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(ctx, command), "studies": {}, "claims": []}
    census_reason = None
    if any(s in studies for s in NEEDS_CENSUS):
        from mmoe.experiments.census_data import census_unavailable_reason

        census_reason = census_unavailable_reason(ctx.data_dir)
    order = [s for s in STUDIES if s in studies]
    with quiet_warnings(), ctx.bar(order, desc="studies", unit="study", leave=True) as bar:
        for name in bar:
            bar.set_postfix_str(name)
            module = load_study(name)
            entry: dict[str, Any] = {"title": module.TITLE}
            study_started = time.perf_counter()
            if name in NEEDS_CENSUS and census_reason:
                entry.update(status="skipped", reason=f"census data not available: {census_reason}")
            else:
                try:
                    entry["result"] = module.run(ctx)
                    entry["status"] = "done"
                    entry["figure"] = draw_figure(name, entry["result"], ctx.out)
                except MmoeError as error:
                    entry.update(status="failed", reason=str(error))
                except Exception as error:  # keep the other studies' results; the report names the failure
                    entry.update(
                        status="failed", reason=f"{type(error).__name__}: {error}", traceback=traceback.format_exc()
                    )
            entry["seconds"] = time.perf_counter() - study_started
            results["studies"][name] = entry
            _write(ctx, results, started, evaluate_claims, render_report)
    return results


def _write(
    ctx: StudyContext, results: dict[str, Any], started: float, evaluate_claims: Any, render_report: Any
) -> None:
    results["claims"] = evaluate_claims(results["studies"])
    results["meta"]["seconds"] = time.perf_counter() - started
    results["meta"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    results["meta"]["cache"] = {"hits": ctx.cache.hits, "computed": ctx.cache.misses}
    atomic_write_json(ctx.out / "results.json", results)
    atomic_write_text(ctx.out / "report.md", render_report(results))


def _meta(ctx: StudyContext, command: str) -> dict[str, Any]:
    import numpy
    import optuna
    import torch

    from mmoe import __version__

    return {
        "command": command,
        "scale": ctx.scale.to_dict(),
        "seed": ctx.seed,
        "threads": ctx.threads,
        "workers": ctx.workers,
        "data_dir": str(ctx.data_dir) if ctx.data_dir else None,
        "versions": {
            "mmoe": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "optuna": optuna.__version__,
        },
        "machine": f"{platform.machine()}, {_cpus()} CPUs, "
        f"{ctx.workers} worker processes × {ctx.threads} torch threads",
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "seconds": 0.0,
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


__all__ = ["add_arguments", "command_reproduce", "reproduce"]
