"""Vocabularies, hashing and the one-hot / embedding rule (`mmoe.data.vocabulary`,
`mmoe.data.values`): the rules themselves, the fitted encoder and its encoder.json, the options
through load_table, the data set description and the CLI."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmoe.cli import _dataset_flags, build_parser, dataset_spec
from mmoe.data import load_dataset
from mmoe.data.encoders import TableEncoder
from mmoe.data.tabular import load_table
from mmoe.data.values import HASH_KEY, MISSING_CATEGORY, category_counts, hash_buckets, kept_vocabulary
from mmoe.data.vocabulary import (
    EMBED_ABOVE_SLOTS,
    VocabularyOptions,
    check_parameter_memory,
    parameter_bytes,
)
from mmoe.errors import MmoeError
from mmoe.spec import InputSpec, Task

TASKS = [Task("clicked", "binary")]
MASK = (1 << 64) - 1


# -- the hash a server reproduces ------------------------------------------------------------------
def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 (Aumasson & Bernstein), written out from the paper: the reference a server
    implements, independent of pandas."""

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & MASK

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:16], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def sip_round() -> None:
        v[0] = (v[0] + v[1]) & MASK
        v[1] = rotl(v[1], 13) ^ v[0]
        v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & MASK
        v[3] = rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & MASK
        v[3] = rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & MASK
        v[1] = rotl(v[1], 17) ^ v[2]
        v[2] = rotl(v[2], 32)

    whole = len(data) // 8 * 8
    for start in range(0, whole, 8):
        m = int.from_bytes(data[start : start + 8], "little")
        v[3] ^= m
        sip_round()
        sip_round()
        v[0] ^= m
    last = (len(data) & 0xFF) << 56 | int.from_bytes(data[whole:], "little")
    v[3] ^= last
    sip_round()
    sip_round()
    v[0] ^= last
    v[2] ^= 0xFF
    for _ in range(4):
        sip_round()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def reference_bucket(text: str, buckets: int) -> int:
    """The documented bucket: SipHash-2-4 of the UTF-8 text under HASH_KEY, splitmix64's finaliser, mod buckets."""
    h = siphash24(HASH_KEY.encode(), text.encode("utf-8"))
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & MASK
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & MASK
    h ^= h >> 31
    return h % buckets


def test_hash_buckets_are_the_documented_hash_a_server_can_reproduce() -> None:
    texts = ["u1", "paris", MISSING_CATEGORY, "", "école", "a text longer than sixteen bytes", "u1"]
    for buckets in (1, 7, 1_000_003):
        got = hash_buckets(texts, buckets)
        assert got.dtype == np.int64
        assert got.tolist() == [reference_bucket(text, buckets) for text in texts]
    assert hash_buckets([], 5).shape == (0,)
    # Spread: 10,000 ids over 100 buckets leave none empty and none with twice its share.
    spread = np.bincount(hash_buckets([f"id{k}" for k in range(10_000)], 100), minlength=100)
    assert spread.min() > 50 and spread.max() < 200


# -- vocabularies ----------------------------------------------------------------------------------
def test_kept_vocabulary_min_frequency_and_max_categories() -> None:
    counts = {"a": 5, "b": 1, "c": 3, "d": 3, "e": 2}
    assert kept_vocabulary(counts) == ["a", "b", "c", "d", "e"]
    assert kept_vocabulary(counts, min_frequency=3) == ["a", "c", "d"]
    assert kept_vocabulary(counts, max_categories=2) == ["a", "c"]  # c and d tie: the smaller text
    assert kept_vocabulary(counts, min_frequency=2, max_categories=10) == ["a", "c", "d", "e"]
    frame = pd.Series(["x", None, "x", "y"], dtype=object)
    assert category_counts(frame) == {"x": 2, MISSING_CATEGORY: 1, "y": 1}


def clicks(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "colour": rng.choice(["red", "blue", "green"], rows),
            "user": [f"u{k}" for k in rng.zipf(1.5, rows) % 90],
            "clicked": rng.integers(0, 2, rows),
        }
    )


def test_rare_values_share_slot_zero_with_unseen_values() -> None:
    frame = clicks()
    options = VocabularyOptions.of(min_frequency=4)
    encoder = TableEncoder(["x"], ["colour", "user"], TASKS, vocabulary=options).fit(frame)
    counts = frame["user"].value_counts()
    assert encoder.vocabularies[1] == sorted(counts[counts >= 4].index)
    codes = encoder.category_codes(pd.DataFrame({"colour": ["red"] * 3, "user": ["u1", "never-seen", "u1"]}))
    rare = counts[counts < 4].index[0]
    rare_code = encoder.category_codes(pd.DataFrame({"colour": ["red"], "user": [rare]}))[0, 1]
    assert rare_code == codes[1, 1] == 0  # the rare value and the unseen one: slot 0
    assert codes[0, 1] == 1 + encoder.vocabularies[1].index("u1")
    assert encoder.input_spec.cardinalities == (4, len(encoder.vocabularies[1]) + 1)


# -- representation ----------------------------------------------------------------------------------
def wide(values: int, rows: int = 600) -> pd.DataFrame:
    """A column "wide" with exactly `values` distinct values, a column "narrow" with 3."""
    return pd.DataFrame(
        {
            "wide": [f"w{k % values}" for k in range(rows)],
            "narrow": [f"n{k % 3}" for k in range(rows)],
            "clicked": [k % 2 for k in range(rows)],
        }
    )


def test_more_than_100_slots_is_an_embedding_else_one_hot() -> None:
    assert EMBED_ABOVE_SLOTS == 100
    at_limit = TableEncoder([], ["wide", "narrow"], TASKS).fit(wide(99))  # 99 values + slot 0 = 100 slots
    assert at_limit.embedding_dims == [0, 0]
    assert at_limit.input_spec.embedding_dims == ()  # all one-hot: the spec as written before embeddings
    assert "embedding_dims" not in at_limit.to_dict() and "hash_buckets" not in at_limit.to_dict()
    above = TableEncoder([], ["wide", "narrow"], TASKS).fit(wide(100))  # 101 slots
    assert above.embedding_dims == [16, 0]
    spec = above.input_spec
    assert spec.embedding_dims == (16, 0) and spec.cardinalities == (101, 4)
    assert spec.offsets == [0, 0]  # each kind's vocabulary starts at 0
    _, codes = above.model_inputs(np.zeros((2, 0)), np.array([[3, 2], [100, 1]]))
    assert codes.tolist() == [[3, 2], [100, 1]]


def test_embed_and_one_hot_override_the_rule_and_embedding_dim_sets_the_size() -> None:
    options = VocabularyOptions.of(embedding_dim=4, embed=["narrow"], one_hot=["wide"])
    encoder = TableEncoder([], ["wide", "narrow"], TASKS, vocabulary=options).fit(wide(300))
    assert encoder.embedding_dims == [0, 4]
    assert encoder.input_spec.vocabulary_size == 301 and encoder.input_spec.embedding_vocabulary_size == 4


def test_hashed_columns_keep_no_vocabulary_and_their_buckets_are_their_slots() -> None:
    frame = clicks()
    options = VocabularyOptions.of(hash_buckets={"user": 500})
    encoder = TableEncoder(["x"], ["colour", "user"], TASKS, vocabulary=options).fit(frame)
    assert encoder.vocabularies[1] == [] and encoder.hash_sizes == [0, 500]
    assert encoder.input_spec.cardinalities == (4, 500)
    assert encoder.embedding_dims == [0, 16]  # 500 slots: embedded by the rule
    codes = encoder.category_codes(pd.DataFrame({"colour": ["red", None], "user": ["brand-new", None]}))
    assert codes[:, 1].tolist() == [reference_bucket("brand-new", 500), reference_bucket(MISSING_CATEGORY, 500)]
    every = TableEncoder(["x"], ["colour", "user"], TASKS, vocabulary=VocabularyOptions.of(hash_buckets=8))
    assert every.fit(frame).hash_sizes == [8, 8]


def test_encoder_json_keeps_the_representation_and_old_files_load_as_one_hot(tmp_path: Path) -> None:
    frame = clicks()
    options = VocabularyOptions.of(hash_buckets={"user": 300}, embed=["colour"], embedding_dim=3)
    encoder = TableEncoder(["x"], ["colour", "user"], TASKS, vocabulary=options).fit(frame)
    encoder.save(tmp_path / "encoder.json")
    loaded = TableEncoder.load(tmp_path / "encoder.json")
    assert loaded.hash_sizes == [0, 300] and loaded.embedding_dims == [3, 3]
    assert loaded.input_spec == encoder.input_spec
    np.testing.assert_array_equal(loaded.transform(frame).categorical, encoder.transform(frame).categorical)
    old = TableEncoder(["x"], ["colour"], TASKS).fit(frame).to_dict()  # as encoder.json was written before
    assert "embedding_dims" not in old and "hash_buckets" not in old
    reread = TableEncoder.from_dict(old)
    assert reread.hash_sizes == [0] and reread.embedding_dims == [0]
    assert reread.input_spec == InputSpec(("x",), ("colour",), (4,))


# -- refusals --------------------------------------------------------------------------------------
def test_a_nearly_unique_column_is_refused_unless_hashed_or_embedded_by_name() -> None:
    rows = 1000
    frame = pd.DataFrame({"event": [f"e{k}" for k in range(rows)], "clicked": [k % 2 for k in range(rows)]})
    with pytest.raises(
        MmoeError, match=r"training: categorical column 'event' has 1000 distinct values in 1000"
    ) as error:
        TableEncoder([], ["event"], TASKS).fit(frame, "training")
    assert "--hash-buckets event=N" in str(error.value) and "\n" not in str(error.value)
    hashed = TableEncoder([], ["event"], TASKS, vocabulary=VocabularyOptions.of(hash_buckets={"event": 64}))
    assert hashed.fit(frame).hash_sizes == [64]
    # Named in embed (an id column of a log where nearly every user comes once): every value kept.
    assert "--embed event" in str(error.value)
    embedded = TableEncoder([], ["event"], TASKS, vocabulary=VocabularyOptions.of(embed=["event"]))
    assert len(embedded.fit(frame).vocabularies[0]) == rows
    # 90% of the rows distinct is allowed (a user id of a log where most users come once), 90.1% is
    # not; a small table is never refused.
    kept = frame.assign(event=[f"e{k % 900}" for k in range(rows)])
    assert len(TableEncoder([], ["event"], TASKS).fit(kept).vocabularies[0]) == 900
    with pytest.raises(MmoeError, match="901 distinct values"):
        TableEncoder([], ["event"], TASKS).fit(frame.assign(event=[f"e{k % 901}" for k in range(rows)]))
    assert len(TableEncoder([], ["event"], TASKS).fit(frame.head(999)).vocabularies[0]) == 999


def test_memory_estimate_before_allocating() -> None:
    spec = InputSpec(("x",), ("a", "b"), (10, 1000), (0, 8))
    # one-hot: 10 slots x 144 outputs; embedded: 1000 x 8; each float32 with Adam's two moments.
    assert parameter_bytes(spec) == [10 * 144 * 4 * 3, 1000 * 8 * 4 * 3]
    assert parameter_bytes(spec, one_hot_width=10, optimizer_states=1) == [10 * 10 * 4 * 2, 1000 * 8 * 4 * 2]
    check_parameter_memory(spec, "t.csv", limit=sum(parameter_bytes(spec)))
    with pytest.raises(MmoeError, match=r"t.csv: .* the largest is 'b' \(1000 slots, an embedding of 8\)"):
        check_parameter_memory(spec, "t.csv", limit=sum(parameter_bytes(spec)) - 1)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"embedding_dim": 0}, "option embedding_dim (--embedding-dim): expected a positive embedding dimension"),
        ({"embedding_dim": 2.5}, "option embedding_dim (--embedding-dim)"),
        ({"hash_buckets": -1}, "option hash_buckets (--hash-buckets): expected a positive number of buckets"),
        ({"hash_buckets": {"user": 0}}, "for column 'user'"),
        ({"min_frequency": 0}, "option min_frequency (--min-frequency)"),
        ({"max_categories": True}, "option max_categories (--max-categories)"),
        ({"embed": ["a"], "one_hot": ["a"]}, "both list 'a'"),
    ],
)
def test_bad_options(options: dict, expected: str) -> None:
    with pytest.raises(MmoeError) as error:
        VocabularyOptions.of(**options)
    assert expected in str(error.value)


# -- the options through load_table, the description and the CLI ------------------------------------
def test_load_table_and_the_data_set_description(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    clicks(1200).to_csv(path, index=False)
    plain = load_table(path, "clicked:binary")
    assert plain.input_spec.embedding_dims == ()  # 3 colours, < 100 users: one-hot, as before
    options = {"min_frequency": 2, "hash_buckets": {"colour": 5}, "embed": ["user"], "embedding_dim": 6}
    data = load_table(path, "clicked:binary", **options)
    assert data.encoder is not None and data.encoder.hash_sizes == [5, 0]
    assert data.input_spec.embedding_dims == (0, 6)
    again = load_dataset({"kind": "table", "path": str(path), "tasks": "clicked:binary", **options})
    assert again.input_spec == data.input_spec
    assert VocabularyOptions.of(**options).spec() == options
    assert VocabularyOptions.of(embedding_dim=16, min_frequency=1).spec() == {}  # the defaults: no keys


def test_cli_flags_write_keys_only_when_set_and_read_back() -> None:
    def spec(*flags: str) -> dict:
        args = build_parser().parse_args(["train", "--data", "t.csv", "--tasks", "clicked:binary", *flags])
        return dataset_spec(args)

    plain = spec()
    assert not set(plain) & {"embedding_dim", "embed", "one_hot", "min_frequency", "max_categories", "hash_buckets"}
    full = spec(
        "--embedding-dim", "8", "--embed", "user,item", "--one-hot", "city", "--min-frequency", "3",
        "--max-categories", "1000", "--hash-buckets", "item=100000, session = 64",
    )  # fmt: skip
    assert {k: full[k] for k in full if k not in plain} == {
        "embedding_dim": 8,
        "embed": ["user", "item"],
        "one_hot": ["city"],
        "min_frequency": 3,
        "max_categories": 1000,
        "hash_buckets": {"item": 100000, "session": 64},
    }
    assert spec("--hash-buckets", "4096")["hash_buckets"] == 4096
    # `--config RUN/config.json` turns a description back into flags: the inverse holds.
    args = build_parser().parse_args(["train", "--data", "t.csv", "--tasks", "clicked:binary"])
    for description in (plain, full, spec("--hash-buckets", "4096")):
        flags = _dataset_flags(description, Path("config.json"))
        assert dataset_spec(argparse.Namespace(**{**vars(args), **flags})) == description


@pytest.mark.skipif(
    not (Path(os.environ.get("MMOE_DATA_DIR", "/nonexistent")) / "census-income.data.gz").exists()
    and not (Path(os.environ.get("MMOE_DATA_DIR", "/nonexistent")) / "census-income.data").exists(),
    reason="census files not available",
)
def test_census_stays_one_hot() -> None:
    from mmoe.data.census import load_census

    data = load_census(1, download=False)
    assert data.input_spec.embedding_dims == ()
    assert max(data.input_spec.cardinalities) <= EMBED_ABOVE_SLOTS
    assert data.encoder is not None and not any(data.encoder.hash_sizes)


def test_cli_train_then_evaluate_reads_the_table_the_same_way(tmp_path: Path, capsys, one_torch_thread) -> None:
    import json

    from mmoe.cli import main
    from mmoe.runs import Run

    path = tmp_path / "clicks.csv"
    clicks(600).to_csv(path, index=False)
    out = tmp_path / "run"
    flags = ["--hash-buckets", "user=32", "--min-frequency", "5", "--one-hot", "user"]
    argv = ["train", "--data", str(path), "--tasks", "clicked:binary", "--out", str(out), "--epochs", "1", "--quiet"]
    assert main([*argv, "--threads", "1", *flags]) == 0
    dataset = json.loads((out / "config.json").read_text())["dataset"]
    assert dataset["hash_buckets"] == {"user": 32} and dataset["min_frequency"] == 5
    run = Run.load(out)
    assert run.encoder.hash_sizes == [0, 32] and run.model.input_spec.cardinalities[1] == 32
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)  # re-read with the same options: the run's model fits it


def test_an_exported_hashed_column_states_its_hash_and_serves_as_mmoe_predict(tmp_path: Path, capsys) -> None:
    """The signature of a run with a hashed column gives its buckets and the hash's key, from which
    a server's codes (the documented SipHash) equal encode_inputs'; the ONNX file then predicts
    what `mmoe predict` prints."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from mmoe.cli import main
    from mmoe.export import encode_inputs, load_signature

    table = tmp_path / "clicks.csv"
    clicks(600).to_csv(table, index=False)
    run, model = tmp_path / "run", tmp_path / "model.onnx"
    assert (
        main(
            [
                "train",
                "--data",
                str(table),
                "--tasks",
                "clicked:binary",
                "--hash-buckets",
                "user=13",
                "--epochs",
                "2",
                "--threads",
                "1",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert main(["export", str(run), "--format", "onnx", "--out", str(model)]) == 0
    signature = load_signature(model)
    categorical = next(i for i in signature["inputs"] if i["name"] == "categorical")
    assert categorical["hash_buckets"] == {"user": 13} and categorical["hash"]["key"] == HASH_KEY
    frame = clicks(50, seed=1).drop(columns=["clicked"])
    inputs = encode_inputs(frame, signature)
    user = categorical["columns"].index("user")
    server = [reference_bucket(str(text), 13) for text in frame["user"]]
    assert inputs["categorical"][:, user].tolist() == server
    served = onnxruntime.InferenceSession(str(model)).run(["predictions"], inputs)[0]
    frame.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(run), "--data", str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    np.testing.assert_allclose(served[:, 0], pd.read_csv(tmp_path / "p.csv")["clicked"], rtol=1e-5, atol=1e-6)
    capsys.readouterr()
