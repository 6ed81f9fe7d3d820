"""Synthetic impression logs drawn from a known model, so that each task's Bayes-optimal AUC is known.

One row is one impression: a user sees an item in a context; `click` is 0/1 for every row and
`purchase` is 0/1 only where click = 1 (NaN elsewhere: the project's missing-label convention).

Columns: user_id, item_id (int64, or text "u<id>" / "i<id>" with id_format="str"); hour (24
values), device (4), position (10), region (50) as pandas categoricals of text; score, price,
age_days (float32); click (int8); purchase (float32, NaN where click = 0).

Ids. Each id column draws from `users` (`items`) ids with power-law popularity: the id of
popularity rank r (0-based) has weight (r + 1)^-s (s = zipf_exponent), and ranks are mapped to
id values by a random permutation (an id's value says nothing about its popularity). Every id
appears at least once in the log (train and test together): the column is a random arrangement
of each id once plus rows - ids popularity draws, so rows must be >= users and >= items, and the
power law lives in the rows beyond that (rows >= 2 x ids keeps it clear). The distinct count in
the training part is therefore a little below `users`: an id seen once lands in the test part
with probability test_fraction (unseen at training time, as new users are in real logs).

The model. A "driver set" D holds per-user effects b_u ~ N(0, user_effect²) and latent factors
f_u ~ N(0, σ²·I_k), per-item effects b_i ~ N(0, item_effect²) and factors g_i ~ N(0, σ²·I_k) with
σ = (interaction² / k)^¼ (so that ⟨f_u, g_i⟩ has standard deviation `interaction`), one table of
effects ~ N(0, context_effect²) per context column, and numeric weights w ~ N(0, numeric_effect²)
over the standardised numbers x = [score, (ln price - 3)/0.8, age_days/30 - 1]. Its value on a row:

    d_D(row) = b_u + b_i + ⟨f_u, g_i⟩ + Σ_c e_c[context_c] + wᵀx

Two independent driver sets D1 (click's) and D2 (purchase's own) give, with r = purchase_relatedness:

    P(click | row)               = σ(z_c),  z_c = click_intercept + d_D1(row)
    P(purchase | click, row)     = σ(z_p),  z_p = purchase_intercept + r·d_D1(row) + √(1 - r²)·d_D2(row)

so z_p's driver has the same distribution as z_c's and correlation r with it: r = 0 unrelated
(independent drivers), r = 1 identical drivers (a different intercept only). click ~
Bernoulli(P(click)); purchase ~ Bernoulli(P(purchase | click)) on clicked rows.

Bayes-optimal AUCs (`info["bayes_auc"]`, on the test rows): click: AUC of P(click) against click;
purchase: on clicked rows, AUC of P(purchase | click) against purchase; click_and_purchase: on
every row, AUC of P(click)·P(purchase | click) against click·purchase (the entire-space task).
No model of the rows can do better in expectation; a sample can beat them by chance only a little.

Determinism: every random part has its own stream spawned from `numpy.random.SeedSequence(seed)`
(ids, D1, D2, contexts, numbers, click draws, purchase draws), so the same config gives the same
log, and changing purchase_relatedness changes only the purchase labels, never the rows or clicks.
Memory: probabilities are computed in chunks of rows; the id tables (users + items) × (k + 1)
float32 per driver set are the largest allocation besides the columns themselves.

    python -m mmoe.data.clicklog --rows 2000000 --users 1000000 --items 100000 --out clicklog/
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mmoe.errors import MmoeError
from mmoe.io import atomic_write, atomic_write_json

if TYPE_CHECKING:
    from mmoe.data.dataset import MultiTaskData

TASK_NAMES = ("click", "purchase")
ID_COLUMNS = ("user_id", "item_id")
NUMERIC_COLUMNS = ("score", "price", "age_days")
# Context columns: name -> their values (as text, so that a table written to disk reads back as categories).
CONTEXT_VALUES: dict[str, tuple[str, ...]] = {
    "hour": tuple(f"h{h:02d}" for h in range(24)),
    "device": ("mobile", "desktop", "tablet", "tv"),
    "position": tuple(f"p{p}" for p in range(1, 11)),
    "region": tuple(f"r{g:02d}" for g in range(50)),
}
ID_FORMATS = ("int", "str")
_CHUNK_ROWS = 1 << 20  # rows per chunk of probability computation (bounds the temporaries)


@dataclass(frozen=True)
class ClickLogConfig:
    """Parameters of the impression-log generator (see the module docstring for the model).

    rows: impressions in all (train + test). users, items: distinct ids (each appears at least
        once, so each must be <= rows). test_fraction: the share of rows (the last ones; rows are
        drawn independently) kept as the test part.
    zipf_exponent (s): popularity of the id of rank r ∝ (r + 1)^-s, for users and items.
    factors (k): latent dimension of the user-item interaction.
    user_effect, item_effect, interaction, context_effect, numeric_effect: standard deviations of
        the driver's terms (per-id effects, ⟨f_u, g_i⟩, each context table, each numeric weight).
    click_intercept, purchase_intercept: the logits' intercepts (base rates).
    purchase_relatedness (r): 0 = purchase driven by its own independent drivers, 1 = by click's.
    id_format: "int" (int64 ids) or "str" (text "u<id>", "i<id>").
    seed: seed of every random stream.
    """

    rows: int = 1_000_000
    users: int = 100_000
    items: int = 10_000
    test_fraction: float = 0.2
    zipf_exponent: float = 1.05
    factors: int = 4
    user_effect: float = 0.5
    item_effect: float = 0.5
    interaction: float = 0.6
    context_effect: float = 0.3
    numeric_effect: float = 0.3
    click_intercept: float = -2.0
    purchase_intercept: float = -1.5
    purchase_relatedness: float = 0.5
    id_format: str = "int"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rows", "users", "items", "factors", "seed"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
                raise MmoeError(f"click log: {name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in (
            "test_fraction", "zipf_exponent", "user_effect", "item_effect", "interaction", "context_effect",
            "numeric_effect", "click_intercept", "purchase_intercept", "purchase_relatedness",
        ):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)):
                raise MmoeError(f"click log: {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.rows < 2:
            raise MmoeError(f"click log: rows must be >= 2 (a training and a test row), got {self.rows}")
        for name in ("users", "items"):
            count = getattr(self, name)
            if count < 1:
                raise MmoeError(f"click log: {name} must be >= 1, got {count}")
            if count > self.rows:
                raise MmoeError(
                    f"click log: {name}={count:,} exceeds rows={self.rows:,}; every id appears at least once, "
                    f"so expected rows >= {name} (rows >= 2 x {name} keeps the power law clear)"
                )
        if not 0.0 < self.test_fraction < 1.0:
            raise MmoeError(f"click log: test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 1 <= self.test_rows < self.rows:
            raise MmoeError(
                f"click log: test_fraction={self.test_fraction} of rows={self.rows} leaves no training or no test "
                f"row; expected more rows or another fraction"
            )
        if self.zipf_exponent < 0:
            raise MmoeError(f"click log: zipf_exponent must be >= 0 (0 = uniform), got {self.zipf_exponent}")
        if self.factors < 1:
            raise MmoeError(f"click log: factors must be >= 1, got {self.factors}")
        for name in ("user_effect", "item_effect", "interaction", "context_effect", "numeric_effect"):
            if getattr(self, name) < 0:
                raise MmoeError(f"click log: {name} (a standard deviation) must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.purchase_relatedness <= 1.0:
            raise MmoeError(
                f"click log: purchase_relatedness must be in [0, 1] (0 unrelated, 1 click's drivers), "
                f"got {self.purchase_relatedness}"
            )
        if self.id_format not in ID_FORMATS:
            raise MmoeError(f"click log: id_format must be one of {', '.join(ID_FORMATS)}, got {self.id_format!r}")
        if self.seed < 0:
            raise MmoeError(f"click log: seed must be >= 0 (numpy's SeedSequence), got {self.seed}")

    @property
    def test_rows(self) -> int:
        return int(round(self.rows * self.test_fraction))

    @property
    def train_rows(self) -> int:
        return self.rows - self.test_rows


@dataclass(frozen=True)
class _Drivers:
    """One driver set: the tables behind d_D(row) (module docstring)."""

    user_effect: np.ndarray  # [users] float32
    item_effect: np.ndarray  # [items] float32
    user_factors: np.ndarray  # [users, k] float32
    item_factors: np.ndarray  # [items, k] float32
    context: dict[str, np.ndarray]  # column -> [values] float32
    numeric_weights: np.ndarray  # [3] float64

    def value(self, users: np.ndarray, items: np.ndarray, contexts: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        """d_D for the rows given (ids [n], context codes [n] per column, standardised numbers [n, 3]) -> [n]."""
        value = self.user_effect[users] + self.item_effect[items]
        value += np.einsum("nk,nk->n", self.user_factors[users], self.item_factors[items])
        for column, codes in contexts.items():
            value += self.context[column][codes]
        return value.astype(np.float64) + x @ self.numeric_weights


def _draw_drivers(config: ClickLogConfig, rng: np.random.Generator) -> _Drivers:
    factor_std = (config.interaction**2 / config.factors) ** 0.25
    return _Drivers(
        user_effect=(rng.standard_normal(config.users, dtype=np.float32) * config.user_effect),
        item_effect=(rng.standard_normal(config.items, dtype=np.float32) * config.item_effect),
        user_factors=rng.standard_normal((config.users, config.factors), dtype=np.float32) * factor_std,
        item_factors=rng.standard_normal((config.items, config.factors), dtype=np.float32) * factor_std,
        context={
            column: rng.standard_normal(len(values), dtype=np.float32) * config.context_effect
            for column, values in CONTEXT_VALUES.items()
        },
        numeric_weights=rng.standard_normal(len(NUMERIC_COLUMNS)) * config.numeric_effect,
    )


def _power_law_ids(count: int, rows: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """[rows] int64 ids in 0..count-1: each id once, the other rows - count drawn with weight
    (rank + 1)^-exponent, ranks mapped to ids by a random permutation, the whole column shuffled."""
    weights = np.arange(1, count + 1, dtype=np.float64) ** -exponent
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    ranks = np.searchsorted(cumulative, rng.random(rows - count), side="right")
    np.minimum(ranks, count - 1, out=ranks)  # a uniform draw that rounds onto 1.0 stays in range
    id_of_rank = rng.permutation(count)
    column = np.concatenate([np.arange(count, dtype=np.int64), id_of_rank[ranks]])
    rng.shuffle(column)
    return column


def _context_probabilities() -> dict[str, np.ndarray]:
    """Fixed (not random) value frequencies of the context columns: a daily cycle of hours, mostly
    mobile devices, top positions shown more often, regions by a power law."""
    hours = np.arange(24)
    probabilities = {
        "hour": 1.0 + 0.7 * np.sin(2 * np.pi * (hours - 9) / 24),
        "device": np.array([0.6, 0.3, 0.08, 0.02]),
        "position": 0.8 ** np.arange(10),
        "region": 1.0 / np.arange(1, 51),
    }
    return {column: p / p.sum() for column, p in probabilities.items()}


def _standardised_numbers(score: np.ndarray, price: np.ndarray, age_days: np.ndarray) -> np.ndarray:
    """[n, 3] float64: the numbers as the model reads them (module docstring)."""
    return np.stack(
        [
            score.astype(np.float64),
            (np.log(price.astype(np.float64)) - 3.0) / 0.8,
            age_days.astype(np.float64) / 30.0 - 1.0,
        ],
        axis=1,
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + e^-z), without overflow warnings


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic over ranks, ties given average
    ranks: sklearn's roc_auc_score). NaN when the labels hold one class only."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    # Tie groups: [start, end) ranges of equal scores; each member gets the group's average rank (1-based).
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    average_rank = (starts + ends + 1) / 2.0
    ranks = np.repeat(average_rank, ends - starts)
    positive_rank_sum = float(ranks[labels[order]].sum())
    return (positive_rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _id_series(ids: np.ndarray, prefix: str, id_format: str) -> pd.Series | np.ndarray:
    if id_format == "int":
        return ids
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(pa.array(ids), pa.string()), "")
    return pd.Series(text.to_pandas(), copy=False)


def generate_clicklog(
    config: ClickLogConfig, probabilities: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(train, test, info): the log's first config.train_rows rows and its last config.test_rows.

    probabilities: also add columns p_click (P(click)) and p_purchase (P(purchase | click)), the
        true probabilities, for checks; never a feature.
    info: "config", "bayes_auc" {click, purchase, click_and_purchase} on the test rows, "rates"
        (click rate, purchase rate among clicks, per part), "distinct" (ids seen per part),
        "top_share" (share of rows taken by the top 1% of ids), "columns" (ids, context, numeric, tasks).
    """
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(7)]
    ids_rng, click_drivers_rng, purchase_drivers_rng, context_rng, numeric_rng, click_rng, purchase_rng = streams
    rows = config.rows
    users = _power_law_ids(config.users, rows, config.zipf_exponent, ids_rng)
    items = _power_law_ids(config.items, rows, config.zipf_exponent, ids_rng)
    click_drivers = _draw_drivers(config, click_drivers_rng)
    purchase_drivers = _draw_drivers(config, purchase_drivers_rng)
    contexts = {
        column: context_rng.choice(len(p), size=rows, p=p).astype(np.int8)
        for column, p in _context_probabilities().items()
    }
    score = numeric_rng.standard_normal(rows, dtype=np.float32)
    price = np.exp(3.0 + 0.8 * numeric_rng.standard_normal(rows)).astype(np.float32)
    age_days = (30.0 * numeric_rng.standard_exponential(rows)).astype(np.float32)

    r = config.purchase_relatedness
    own = math.sqrt(max(0.0, 1.0 - r * r))
    p_click = np.empty(rows, dtype=np.float32)
    p_purchase = np.empty(rows, dtype=np.float32)
    for start in range(0, rows, _CHUNK_ROWS):
        part = slice(start, min(rows, start + _CHUNK_ROWS))
        chunk_contexts = {column: codes[part] for column, codes in contexts.items()}
        x = _standardised_numbers(score[part], price[part], age_days[part])
        d1 = click_drivers.value(users[part], items[part], chunk_contexts, x)
        p_click[part] = _sigmoid(config.click_intercept + d1)
        if own > 0:
            d1 = r * d1 + own * purchase_drivers.value(users[part], items[part], chunk_contexts, x)
        p_purchase[part] = _sigmoid(config.purchase_intercept + d1)
    click = (click_rng.random(rows, dtype=np.float32) < p_click).astype(np.int8)
    bought = purchase_rng.random(rows, dtype=np.float32) < p_purchase
    purchase = np.where(click == 1, bought.astype(np.float32), np.float32(np.nan))

    columns: dict[str, Any] = {
        "user_id": _id_series(users, "u", config.id_format),
        "item_id": _id_series(items, "i", config.id_format),
    }
    for column, values in CONTEXT_VALUES.items():
        columns[column] = pd.Categorical.from_codes(contexts[column], categories=list(values))
    columns.update({"score": score, "price": price, "age_days": age_days, "click": click, "purchase": purchase})
    if probabilities:
        columns.update({"p_click": p_click, "p_purchase": p_purchase})
    frame = pd.DataFrame(columns, copy=False)
    cut = config.train_rows
    train, test = frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)

    test_part = slice(cut, rows)
    test_click, test_bought = click[test_part], bought[test_part]
    clicked = test_click == 1
    bayes_auc = {
        "click": auc(test_click, p_click[test_part]),
        "purchase": auc(test_bought[clicked], p_purchase[test_part][clicked]),
        "click_and_purchase": auc(clicked & test_bought, p_click[test_part].astype(np.float64) * p_purchase[test_part]),
    }
    parts = {"train": slice(0, cut), "test": test_part}
    info = {
        "config": asdict(config),
        "bayes_auc": bayes_auc,
        "rows": {"train": cut, "test": rows - cut},
        "rates": {
            name: {
                "click": float(click[part].mean()),
                "purchase_given_click": float(bought[part][click[part] == 1].mean()) if click[part].any() else None,
            }
            for name, part in parts.items()
        },
        "distinct": {
            name: {"user_id": int(len(np.unique(users[part]))), "item_id": int(len(np.unique(items[part])))}
            for name, part in parts.items()
        },
        "top_share": {"user_id": top_share(users), "item_id": top_share(items)},
        "columns": {
            "ids": list(ID_COLUMNS),
            "context": list(CONTEXT_VALUES),
            "numeric": list(NUMERIC_COLUMNS),
            "tasks": list(TASK_NAMES),
        },
    }
    return train, test, info


def load_clicklog(
    config: ClickLogConfig,
    validation_fraction: float = 0.1,
    split_seed: int = 0,
    conditional: bool = False,
    **vocabulary: Any,
) -> MultiTaskData:
    """The generated log as a `MultiTaskData` (tasks click, purchase; purchase labelled only where
    clicked): the log's test part is the test split, `validation_fraction` of its training part
    (seeded by split_seed) the validation split. The ids are categories whatever their format.
    conditional: declare purchase as following click (`Task.given`: "purchase:binary:given=click",
    what `--dataset clicklog` writes), so that mmoe also predicts and scores the entire-space
    click ∧ purchase and `--entire-space` / ESMM train on it; False (descriptions written before
    it): two plain binary tasks, purchase missing where not clicked.
    vocabulary: `VocabularyOptions.of`'s keywords (embedding_dim, embed, one_hot, min_frequency,
    max_categories, hash_buckets). info["bayes_auc"]: each task's Bayes-optimal test AUC."""
    from mmoe.data.tabular import table_data
    from mmoe.data.vocabulary import VocabularyOptions

    train, test, generated = generate_clicklog(config)
    source = f"click log (seed {config.seed})"
    data = table_data(
        train,
        source,
        "click:binary,purchase:binary" + (":given=click" if conditional else ""),
        column_types=dict.fromkeys(ID_COLUMNS, "categorical"),
        validation_fraction=validation_fraction,
        split_seed=split_seed,
        test=(test, f"{source}, test part"),
        kind="clicklog",
        vocabulary=VocabularyOptions.of(**vocabulary),
    )
    data.info.update({"config": asdict(config), "bayes_auc": generated["bayes_auc"]})
    return data


def top_share(ids: np.ndarray, fraction: float = 0.01) -> float:
    """The share of rows taken by the most frequent `fraction` of the distinct ids (at least one id)."""
    counts = np.sort(np.bincount(ids))[::-1]
    counts = counts[counts > 0]
    top = max(1, int(len(counts) * fraction))
    return float(counts[:top].sum() / counts.sum())


def _parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    """`atomic_write`'s writer for one frame (rows as they are, no index column)."""

    def write(temp: Path) -> None:
        frame.to_parquet(temp, index=False)

    return write


def write_clicklog(config: ClickLogConfig, directory: str | Path) -> dict[str, Any]:
    """Generates the log and writes it with `save_clicklog`; returns the info with "paths" added."""
    train, test, info = generate_clicklog(config)
    return save_clicklog(train, test, info, directory)


def save_clicklog(
    train: pd.DataFrame, test: pd.DataFrame, info: dict[str, Any], directory: str | Path
) -> dict[str, Any]:
    """Writes DIR/train.parquet, DIR/test.parquet and DIR/info.json (each atomically: a failure leaves
    no half-written file); returns the info with "paths" added."""
    target = Path(directory)
    paths = {"train": target / "train.parquet", "test": target / "test.parquet", "info": target / "info.json"}
    for part, frame in (("train", train), ("test", test)):
        atomic_write(paths[part], _parquet_writer(frame))
    info = {**info, "paths": {name: str(path) for name, path in paths.items()}}
    atomic_write_json(paths["info"], info)
    return info


def main(argv: list[str] | None = None) -> int:
    defaults = ClickLogConfig()
    parser = argparse.ArgumentParser(
        prog="python -m mmoe.data.clicklog",
        description="Write a synthetic impression log (train.parquet, test.parquet, info.json) drawn from a known "
        "model: power-law user and item ids, four context columns, three numbers, task click and task purchase "
        "(labelled only where clicked). info.json holds each task's Bayes-optimal test AUC.",
        epilog="Train on it: mmoe train --data DIR/train.parquet --test-data DIR/test.parquet "
        "--tasks click:binary,purchase:binary (int ids: add --categorical user_id,item_id).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=defaults.rows, help="impressions in all (train + test)")
    parser.add_argument("--users", type=int, default=defaults.users, help="distinct user ids (<= rows)")
    parser.add_argument("--items", type=int, default=defaults.items, help="distinct item ids (<= rows)")
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction, help="share of rows in test")
    parser.add_argument("--zipf-exponent", type=float, default=defaults.zipf_exponent, help="id popularity ∝ rank^-s")
    parser.add_argument(
        "--purchase-relatedness", type=float, default=defaults.purchase_relatedness,
        help="0 = purchase has its own drivers, 1 = click's drivers",
    )  # fmt: skip
    parser.add_argument("--id-format", choices=ID_FORMATS, default=defaults.id_format, help="ids as int64 or text")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    try:
        config = ClickLogConfig(
            rows=args.rows, users=args.users, items=args.items, test_fraction=args.test_fraction,
            zipf_exponent=args.zipf_exponent, purchase_relatedness=args.purchase_relatedness,
            id_format=args.id_format, seed=args.seed,
        )  # fmt: skip
        info = write_clicklog(config, args.out)
    except MmoeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({key: info[key] for key in ("rows", "distinct", "rates", "bayes_auc", "paths")}, indent=2))
    return 0


__all__ = [
    "ClickLogConfig",
    "auc",
    "generate_clicklog",
    "load_clicklog",
    "save_clicklog",
    "top_share",
    "write_clicklog",
]

if __name__ == "__main__":
    raise SystemExit(main())
