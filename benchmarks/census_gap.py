"""What the census gap to LightGBM is made of (issue 14), and the probes tried to close it.

Prints JSON lines and writes one JSON (default benchmarks/results/census-gap.json, atomically).

    PYTHONPATH=src MMOE_DATA_DIR=../shared/data python benchmarks/census_gap.py            # both sections
    PYTHONPATH=src MMOE_DATA_DIR=../shared/data python benchmarks/census_gap.py --section gap

Sections (census groups 1 and 2, the paper's split, one torch thread, seed --seed):
  gap     MMoE at mmoe's defaults (what `mmoe train --dataset census --group G` trains) and the
          LightGBM baseline (`--model lightgbm`), both through mmoe's pipeline: the main task's
          AUC on the training and test rows (does MMoE overfit, or fit less?), the test AUC of
          blends of their probabilities (do they make the same errors?), and the test AUC within
          segments of the zero-inflated numeric columns (rows where the column is above its
          minimum, usually 0, and the others: where is the gap?).
  probes  options mmoe does not have, measured by patching its layers in this process (MMoE at
          the defaults otherwise): dropout p after every hidden ReLU of the experts and towers;
          BatchNorm or LayerNorm before it; and sign(x)·log(1+|x|) on the heavy-tailed columns
          (the encoder's numeric_transform "log"). None was kept: see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

import mmoe.data.census as census
import mmoe.models.experts as experts
import mmoe.models.layers as layers
from mmoe.baselines import fit_baseline, outputs_of
from mmoe.data import with_numeric_embedding
from mmoe.runs import fit
from mmoe.train.trainer import TrainConfig

HERE = Path(__file__).resolve().parent
HEAVY_TAILED = ("wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks")
PROBES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "dropout 0.1": {"dropout": 0.1},
    "dropout 0.3": {"dropout": 0.3},
    "batchnorm": {"norm": "batch"},
    "layernorm": {"norm": "layer"},
    "log heavy-tailed columns": {"log": HEAVY_TAILED},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=("gap", "probes", "all"), default="all")
    parser.add_argument("--groups", default="1,2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "census-gap.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    groups = [int(g) for g in args.groups.split(",")]
    result: dict[str, Any] = {"seed": args.seed, "threads": 1, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if args.section in ("gap", "all"):
        result["gap"] = {str(g): gap(g, args.seed) for g in groups}
    if args.section in ("probes", "all"):
        result["probes"] = {
            str(g): {name: probe(g, args.seed, **options) for name, options in PROBES.items()} for g in groups
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False, suffix=".tmp") as handle:
        json.dump(result, handle, indent=2)
    os.replace(handle.name, args.out)
    print(f"wrote {args.out}")


def gap(group: int, seed: int) -> dict[str, Any]:
    """Train/test AUC of MMoE (defaults) and LightGBM, their blends, and AUC by segment (module docstring)."""
    raw = census.load_census(group)
    data = with_numeric_embedding(raw, "auto")
    network = fit(data, "mmoe", TrainConfig(threads=1, seed=seed)).model.eval()
    booster = fit_baseline(raw, "lightgbm", seed=seed, threads=1).model
    main = raw.tasks[0].name

    def probabilities(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            ours = torch.sigmoid(outputs_of(network, getattr(data, split))[:, 0]).numpy()
        theirs = torch.sigmoid(outputs_of(booster, getattr(raw, split))[:, 0]).numpy()
        return getattr(raw, split).labels[:, 0].numpy(), ours, theirs

    result: dict[str, Any] = {"task": main}
    for split in ("train", "test"):
        y, ours, theirs = probabilities(split)
        result[split] = {"mmoe": roc_auc_score(y, ours), "lightgbm": roc_auc_score(y, theirs)}
    y, ours, theirs = probabilities("test")
    result["blends"] = {f"{w:g} lightgbm": roc_auc_score(y, w * theirs + (1 - w) * ours) for w in (0.25, 0.5, 0.75)}
    result["rank_correlation"] = float(np.corrcoef(ours.argsort().argsort(), theirs.argsort().argsort())[0, 1])
    numeric = raw.test.numeric.numpy()
    segments = {}
    for j, column in enumerate(raw.input_spec.numeric):
        above = numeric[:, j] > numeric[:, j].min() + 1e-9
        if 0.01 < above.mean() < 0.6:  # zero-inflated: a minority of rows above the column's minimum
            for name, rows in ((f"{column} > min", above), (f"{column} = min", ~above)):
                segments[name] = {
                    "rows": int(rows.sum()),
                    "positives": int(y[rows].sum()),
                    "mmoe": roc_auc_score(y[rows], ours[rows]),
                    "lightgbm": roc_auc_score(y[rows], theirs[rows]),
                }
    result["segments"] = segments
    print(json.dumps({"section": "gap", "group": group, **result}, default=float), flush=True)
    return result


def probe(
    group: int, seed: int, dropout: float = 0.0, norm: str | None = None, log: tuple[str, ...] = ()
) -> dict[str, Any]:
    """MMoE at the defaults with one change patched in (module docstring); test and validation AUC."""
    encoder = functools.partial(census.TableEncoder, numeric_transform=dict.fromkeys(log, "log"))
    with patched(census, "TableEncoder", encoder if log else census.TableEncoder), regularised(dropout, norm):
        data = with_numeric_embedding(census.load_census(group), "auto")
        started = time.perf_counter()
        trained = fit(data, "mmoe", TrainConfig(threads=1, seed=seed))
    result = {
        "seconds": round(time.perf_counter() - started, 1),
        "best_epoch": trained.best_epoch,
        **{split: {t: m["auc"] for t, m in trained.metrics[split].items()} for split in ("validation", "test")},
    }
    print(
        json.dumps({"section": "probes", "group": group, "dropout": dropout, "norm": norm, "log": log, **result}),
        flush=True,
    )
    return result


@contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextmanager
def regularised(dropout: float, norm: str | None) -> Iterator[None]:
    """ExpertBank and GroupedMLP (the experts' deeper layers and the towers) with a norm before each
    hidden ReLU and dropout after it. Off (0, None): their own forward, unpatched."""
    if not dropout and norm is None:
        yield
        return

    def make_norm(groups: int, units: int) -> nn.Module | None:
        return {"batch": lambda: nn.BatchNorm1d(groups * units), "layer": lambda: nn.LayerNorm(units)}.get(
            norm or "", lambda: None
        )()

    def normalise(module: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        if module is None:
            return x
        return module(x.flatten(1)).view_as(x) if isinstance(module, nn.BatchNorm1d) else module(x)

    bank_init, mlp_init = experts.ExpertBank.__init__, layers.GroupedMLP.__init__

    def bank_init_(self: Any, input_spec: Any, num_experts: int, expert_units: Any, num_gates: int) -> None:
        bank_init(self, input_spec, num_experts, expert_units, num_gates)
        self.probe_norm = make_norm(num_experts, expert_units[0])

    def bank_forward(self: Any, numeric: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expert_part, gate_part = self.input_layer(numeric, categorical).split(
            [self.num_experts * self.first_units, self.num_gates * self.num_experts], dim=-1
        )
        hidden = expert_part.unflatten(-1, (self.num_experts, self.first_units)) + self.expert_bias
        hidden = F.dropout(torch.relu(normalise(self.probe_norm, hidden)), dropout, self.training)
        return self.deeper(hidden), gate_part.unflatten(-1, (self.num_gates, self.num_experts))

    def mlp_init_(
        self: Any, groups: int, in_features: int, units: Any, out_features: Any = None, glorot: bool = False
    ) -> None:
        mlp_init(self, groups, in_features, units, out_features, glorot)
        self.probe_norms = nn.ModuleList([make_norm(groups, u) or nn.Identity() for u in units])

    def mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        for layer, norm_layer in zip(self.hidden, self.probe_norms):
            x = F.dropout(torch.relu(normalise(norm_layer, layer(x))), dropout, self.training)
        return self.output(x) if self.output is not None else x

    with (
        patched(experts.ExpertBank, "__init__", bank_init_),
        patched(experts.ExpertBank, "forward", bank_forward),
        patched(layers.GroupedMLP, "__init__", mlp_init_),
        patched(layers.GroupedMLP, "forward", mlp_forward),
    ):
        yield


if __name__ == "__main__":
    main()
