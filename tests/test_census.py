"""The census loader: parsing traps, checksums, data directory, labels, splits, no leakage.

Most tests use tiny hand-made files in the census format; the tests at the end use the real files
(fixture `census_dir`, skipped when they are absent) and load them once per module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe.data import census
from mmoe.data.census import (
    CATEGORICAL_COLUMNS,
    CENSUS_COLUMNS,
    CENSUS_FILES,
    EDUCATION_BELOW_COLLEGE,
    EDUCATION_COLLEGE,
    NUMERIC_COLUMNS,
    CensusFile,
    build_census_data,
    census_labels,
    ensure_census_files,
    load_census,
    read_census_file,
    resolve_data_dir,
    split_test_rows,
)
from mmoe.data.encoders import MISSING_CATEGORY
from mmoe.errors import MmoeError

# The conftest replaces download_census_files in every test; keep the real one for the tests of
# the download itself (which fake the network).
REAL_DOWNLOAD = census.download_census_files

# A real row of census-income.data (its second line).
BASE_LINE = (
    "58, Self-employed-not incorporated, 4, 34, Some college but no degree, 0, Not in universe, Divorced, "
    "Construction, Precision production craft & repair, White, All other, Male, Not in universe, Not in universe, "
    "Children or Armed Forces, 0, 0, 0, Head of household, South, Arkansas, Householder, Householder, 1053.55, "
    "MSA to MSA, Same county, Same county, No, Yes, 1, Not in universe, United-States, United-States, "
    "United-States, Native- Born in the United States, 0, Not in universe, 2, 52, 94, - 50000."
)
BASE_ROW = dict(zip(CENSUS_COLUMNS, BASE_LINE.split(", "), strict=True))
TRAIN_ONLY = "Grandchild <18 ever marr not in subfamily"


def census_row(**fields: object) -> str:
    """One census-format line (42 fields, ", " separated): BASE_ROW with `fields` replaced."""
    unknown = set(fields) - set(CENSUS_COLUMNS)
    assert not unknown, f"not census columns: {unknown}"
    return ", ".join(str(fields.get(column, BASE_ROW[column])) for column in CENSUS_COLUMNS)


def census_text(rows: list[str]) -> str:
    return "".join(row + "\n" for row in rows)


def write_census(path: Path, rows: list[str]) -> Path:
    """Writes the rows; gzipped when the name ends in .gz."""
    data = census_text(rows).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def install_tiny(
    monkeypatch: pytest.MonkeyPatch, directory: Path, train: list[str], test: list[str], gzipped: bool = True
) -> dict[str, Path]:
    """Writes tiny census files under their real names and makes CENSUS_FILES expect them."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, rows in (("train", train), ("test", test)):
        real = CENSUS_FILES[role]
        data = census_text(rows).encode()
        monkeypatch.setitem(
            CENSUS_FILES, role, CensusFile(real.name, hashlib.sha256(data).hexdigest(), len(data), len(rows))
        )
        paths[role] = write_census(directory / (real.name if gzipped else real.plain_name), rows)
    return paths


def tiny_rows(count: int, **fields: object) -> list[str]:
    """`count` rows with varied labels and ages (so both label values occur)."""
    rows = []
    for i in range(count):
        row_fields = {
            "age": 20 + i,
            "income": "50000+." if i % 3 == 0 else "- 50000.",
            "marital_stat": "Never married" if i % 2 == 0 else "Divorced",
            "education": EDUCATION_COLLEGE[i % len(EDUCATION_COLLEGE)] if i % 2 else "High school graduate",
        }
        rows.append(census_row(**{**row_fields, **fields}))
    return rows


@pytest.fixture(autouse=True)
def _own_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own user cache (verification markers, parsed frames)."""
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


# -- constants -------------------------------------------------------------------------------------
def test_columns() -> None:
    assert len(CENSUS_COLUMNS) == 42 and len(set(CENSUS_COLUMNS)) == 42
    assert CENSUS_COLUMNS[0] == "age" and CENSUS_COLUMNS[24] == "instance_weight" and CENSUS_COLUMNS[-1] == "income"
    assert CENSUS_COLUMNS[11] == "hisp_origin" and CENSUS_COLUMNS[22] == "det_hh_fam_stat"
    assert len(NUMERIC_COLUMNS) == 7 and set(NUMERIC_COLUMNS) < set(CENSUS_COLUMNS)
    inputs = set(NUMERIC_COLUMNS) | set(CATEGORICAL_COLUMNS)
    assert inputs == set(CENSUS_COLUMNS) - {"education", "marital_stat", "income", "instance_weight"}
    # Codes written as numbers are categories.
    assert {
        "detailed_industry_recode",
        "detailed_occupation_recode",
        "own_business_or_self_employed",
        "veterans_benefits",
        "year",
    } <= set(CATEGORICAL_COLUMNS)
    assert census.CENSUS_GROUPS == {1: ("income", "marital"), 2: ("education", "marital")}


# -- parsing traps ---------------------------------------------------------------------------------
def test_spaces_after_separators_are_stripped(tmp_path: Path) -> None:
    path = write_census(tmp_path / "a.data", [census_row(citizenship="Foreign born- Not a citizen of U S ")])
    frame = read_census_file(path)
    assert list(frame.columns) == list(CENSUS_COLUMNS)
    assert frame.loc[0, "class_of_worker"] == "Self-employed-not incorporated"
    assert frame.loc[0, "income"] == "- 50000."  # the space inside a value stays
    assert frame.loc[0, "citizenship"] == "Foreign born- Not a citizen of U S"
    assert frame.loc[0, "age"] == 58.0 and frame.loc[0, "instance_weight"] == pytest.approx(1053.55)


def test_na_is_a_category_not_missing(tmp_path: Path) -> None:
    path = write_census(tmp_path / "a.data", [census_row(hisp_origin="NA"), census_row()])
    frame = read_census_file(path)
    assert frame["hisp_origin"].tolist() == ["NA", "All other"]
    assert not frame["hisp_origin"].isna().any()


def test_question_mark_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = tiny_rows(4, migration_code_change_in_msa="?")
    frame = read_census_file(write_census(tmp_path / "a.data", rows))
    assert frame["migration_code_change_in_msa"].isna().all()
    data = build_census_data(frame, frame, 1)
    column = CATEGORICAL_COLUMNS.index("migration_code_change_in_msa")
    assert data.encoder.vocabularies[column] == [MISSING_CATEGORY]


def test_numeric_codes_are_text_categories(tmp_path: Path) -> None:
    frame = read_census_file(write_census(tmp_path / "a.data", [census_row(), census_row(year=95)]))
    assert frame["year"].tolist() == ["94", "95"]
    assert frame["detailed_industry_recode"].tolist() == ["4", "4"]
    for column in NUMERIC_COLUMNS:
        assert frame[column].dtype == np.float64


def test_gzipped_and_plain_read_the_same(tmp_path: Path) -> None:
    rows = tiny_rows(5)
    plain = read_census_file(write_census(tmp_path / "a.data", rows))
    # Gzip is told by content, not by name.
    gzipped = read_census_file(write_census(tmp_path / "b.gz", rows).rename(tmp_path / "b.data"))
    pd.testing.assert_frame_equal(plain, gzipped)


@pytest.mark.parametrize(
    "bad_row, fields", [(census_row()[: census_row().rindex(",")], 41), (census_row() + ", extra", 43)]
)
def test_wrong_field_count_names_the_row(tmp_path: Path, bad_row: str, fields: int) -> None:
    path = write_census(tmp_path / "bad.data", [census_row(), census_row(), bad_row, census_row()])
    with pytest.raises(MmoeError, match=rf"bad\.data: row 3 has {fields} fields, expected 42"):
        read_census_file(path)


def test_text_in_a_numeric_column_names_row_and_column(tmp_path: Path) -> None:
    path = write_census(tmp_path / "bad.data", [census_row(), census_row(weeks_worked_in_year="lots")])
    with pytest.raises(MmoeError, match=r"bad\.data: column 'weeks_worked_in_year', row 2: 'lots'"):
        read_census_file(path)


def test_category_seen_only_in_training_and_one_unseen_in_training(tmp_path: Path) -> None:
    train = read_census_file(
        write_census(tmp_path / "train.data", tiny_rows(6) + tiny_rows(2, det_hh_fam_stat=TRAIN_ONLY))
    )
    test = read_census_file(
        write_census(
            tmp_path / "test.data",
            tiny_rows(4, det_hh_fam_stat="Householder") + tiny_rows(4, det_hh_fam_stat="Only in the test file"),
        )
    )
    data = build_census_data(train, test, 1)
    column = CATEGORICAL_COLUMNS.index("det_hh_fam_stat")
    offset = data.input_spec.offsets[column]
    vocabulary = data.encoder.vocabularies[column]
    assert vocabulary == sorted({"Householder", TRAIN_ONLY})
    train_only_slot = offset + 1 + vocabulary.index(TRAIN_ONLY)
    held_out = torch.cat([data.validation.categorical[:, column], data.test.categorical[:, column]])
    # The training-only category has its own slot, which the test file never uses...
    assert (data.train.categorical[:, column] == train_only_slot).sum() == 2
    assert not (held_out == train_only_slot).any()
    # ...and a value unseen in training lands in the reserved slot 0.
    assert (held_out == offset).sum() == 4
    assert (held_out == offset + 1 + vocabulary.index("Householder")).sum() == 4


# -- labels ----------------------------------------------------------------------------------------
def test_labels() -> None:
    educations = list(EDUCATION_COLLEGE) + list(EDUCATION_BELOW_COLLEGE)
    frame = pd.DataFrame(
        {
            "income": ["50000+.", "- 50000."] * 9,
            "marital_stat": ["Never married", "Married-civilian spouse present"] * 9,
            "education": educations + ["Bachelors degree(BA AB BS)"],
        }
    )
    labels = census_labels(frame)
    assert labels.columns.tolist() == ["income", "marital", "education"]
    assert labels["income"].tolist() == [1, 0] * 9
    assert labels["marital"].tolist() == [1, 0] * 9
    assert labels["education"].tolist() == [1] * 6 + [0] * 11 + [1]
    assert labels.loc[educations.index("Some college but no degree"), "education"] == 0
    assert labels.loc[educations.index("Associates degree-occup /vocational"), "education"] == 1


def test_unknown_label_value_names_row_and_column() -> None:
    frame = pd.DataFrame(
        {"income": ["50000+.", ">50K"], "marital_stat": ["Divorced"] * 2, "education": ["Children"] * 2}
    )
    with pytest.raises(MmoeError, match=r"f\.data: column 'income', row 2: value '>50K'"):
        census_labels(frame, "f.data")


# -- building the data set ------------------------------------------------------------------------
def test_groups_tasks_inputs_and_split_sizes(tmp_path: Path) -> None:
    train = read_census_file(write_census(tmp_path / "train.data", tiny_rows(8)))
    test = read_census_file(write_census(tmp_path / "test.data", tiny_rows(5)))
    for group, names in census.CENSUS_GROUPS.items():
        data = build_census_data(train, test, group, split_seed=3)
        assert data.task_names == list(names)
        assert all(task.kind == "binary" for task in data.tasks)
        assert data.input_spec.numeric == NUMERIC_COLUMNS and data.input_spec.categorical == CATEGORICAL_COLUMNS
        assert data.info["rows"] == {"train": 8, "validation": 2, "test": 3}
        assert data.info["dataset"] == "census" and data.info["group"] == group and data.info["split_seed"] == 3
        expected = np.corrcoef(census_labels(train)[names[0]], census_labels(train)[names[1]])[0, 1]
        assert data.info["label_correlation"] == pytest.approx(expected)
        assert set(np.unique(data.train.labels.numpy())) <= {0.0, 1.0}


def test_bad_group_and_seed() -> None:
    with pytest.raises(MmoeError, match="census group 3"):
        load_census(3, download=False)
    with pytest.raises(MmoeError, match="split_seed -1"):
        load_census(1, split_seed=-1, download=False)


def test_statistics_come_from_training_rows_only(tmp_path: Path) -> None:
    train = read_census_file(write_census(tmp_path / "train.data", [census_row(age=10), census_row(age=30)]))
    test = read_census_file(write_census(tmp_path / "test.data", [census_row(age=1000, race="Other")] * 2))
    data = build_census_data(train, test, 1)
    assert data.encoder.means[NUMERIC_COLUMNS.index("age")] == pytest.approx(20.0)
    assert data.encoder.stds[NUMERIC_COLUMNS.index("age")] == pytest.approx(10.0)
    assert "Other" not in data.encoder.vocabularies[CATEGORICAL_COLUMNS.index("race")]


def test_split_test_rows() -> None:
    validation, test = split_test_rows(11, 5)
    assert len(validation) == 5 and len(test) == 6
    assert sorted(np.concatenate([validation, test]).tolist()) == list(range(11))
    again = split_test_rows(11, 5)
    assert np.array_equal(again[0], validation) and np.array_equal(again[1], test)
    assert not np.array_equal(split_test_rows(11, 6)[0], validation)


def test_load_census_end_to_end_on_tiny_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_tiny(monkeypatch, tmp_path / "data", tiny_rows(9), tiny_rows(6))
    data = load_census(2, tmp_path / "data", split_seed=1, download=False)
    assert data.task_names == ["education", "marital"]
    assert data.info["rows"] == {"train": 9, "validation": 3, "test": 3}
    # The parsed frames are cached: a second load does not parse.
    monkeypatch.setattr(census, "read_census_file", lambda path: pytest.fail("parsed again"))
    again = load_census(2, tmp_path / "data", split_seed=1, download=False)
    assert torch.equal(again.test.categorical, data.test.categorical)


# -- files, checksums, data directory --------------------------------------------------------------
def test_checksum_mismatch_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_tiny(monkeypatch, tmp_path, tiny_rows(3), tiny_rows(2))
    write_census(tmp_path / "census-income.data.gz", tiny_rows(4))  # not what CENSUS_FILES expects
    with pytest.raises(MmoeError) as caught:
        ensure_census_files(tmp_path, download=False)
    message = str(caught.value)
    assert str(tmp_path / "census-income.data.gz") in message
    assert CENSUS_FILES["train"].sha256 in message and "sha256" in message and "\n" not in message


def test_real_checksums_are_checked(tmp_path: Path) -> None:
    write_census(tmp_path / "census-income.data.gz", tiny_rows(3))
    write_census(tmp_path / "census-income.test", tiny_rows(3))
    with pytest.raises(MmoeError, match="census-income.data.gz: sha256 of the uncompressed text is"):
        ensure_census_files(tmp_path, download=False)


def test_damaged_gzip_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = install_tiny(monkeypatch, tmp_path, tiny_rows(30), tiny_rows(2))
    paths["train"].write_bytes(paths["train"].read_bytes()[:-20])  # cut short
    with pytest.raises(MmoeError, match=r"census-income\.data\.gz: cannot be read"):
        ensure_census_files(tmp_path, download=False)
    with pytest.raises(MmoeError, match=r"census-income\.data\.gz: cannot be read"):
        read_census_file(paths["train"])


def test_gzipped_or_plain_files_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for gzipped in (True, False):
        directory = tmp_path / str(gzipped)
        paths = install_tiny(monkeypatch, directory, tiny_rows(3), tiny_rows(2), gzipped=gzipped)
        assert ensure_census_files(directory, download=False) == paths


def test_verification_is_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _own_user_cache: Path) -> None:
    paths = install_tiny(monkeypatch, tmp_path / "data", tiny_rows(3), tiny_rows(2))
    ensure_census_files(tmp_path / "data", download=False)
    # The marker lives in the user cache; nothing is written beside the data.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(p.name for p in paths.values())
    assert (_own_user_cache / "mmoe" / "census-verified.json").is_file()

    def no_hashing(path: object) -> tuple[str, int]:
        raise AssertionError("hashed again")

    monkeypatch.setattr(census, "file_sha256", no_hashing)
    assert ensure_census_files(tmp_path / "data", download=False) == paths
    # A file changed since (another mtime) is hashed again.
    stamp = paths["test"].stat()
    os.utime(paths["test"], ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
    with pytest.raises(AssertionError, match="hashed again"):
        ensure_census_files(tmp_path / "data", download=False)


def _assert_missing_message(message: str, directory: Path) -> None:
    assert str(directory) in message
    assert "census-income.data.gz" in message and "census-income.test.gz" in message
    assert "--data-dir" in message and "MMOE_DATA_DIR" in message and "\n" not in message


def test_missing_files_without_download(tmp_path: Path) -> None:
    with pytest.raises(MmoeError) as caught:
        ensure_census_files(tmp_path / "empty", download=False)
    _assert_missing_message(str(caught.value), tmp_path / "empty")


def test_missing_files_when_download_fails(tmp_path: Path) -> None:
    # The conftest makes every download fail as it would offline.
    with pytest.raises(MmoeError, match="downloading from UCI failed: downloads are disabled") as caught:
        load_census(1, tmp_path / "empty")
    _assert_missing_message(str(caught.value), tmp_path / "empty")


def test_only_missing_files_are_downloaded_and_then_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_tiny(monkeypatch, tmp_path, tiny_rows(3), tiny_rows(2))
    (tmp_path / "census-income.test.gz").rename(tmp_path / "elsewhere.gz")
    asked = []

    def fake_download(directory: Path, roles: list[str]) -> dict[str, Path]:
        asked.append(list(roles))
        return {"test": (tmp_path / "elsewhere.gz").rename(Path(directory) / "census-income.test.gz")}

    monkeypatch.setattr(census, "download_census_files", fake_download)
    paths = ensure_census_files(tmp_path)
    assert asked == [["test"]] and paths["test"] == tmp_path / "census-income.test.gz"


def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMOE_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("MMOE_DATA_DIR")
    assert resolve_data_dir(None) == tmp_path / "xdg" / "mmoe" / "census"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir(None) == tmp_path / "home" / ".cache" / "mmoe" / "census"


# -- downloading, with the network faked -----------------------------------------------------------
def _zip_of_tar(members: dict[str, bytes]) -> bytes:
    """What UCI's current site serves: a zip holding census.tar.gz holding the files."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    zip_bytes = io.BytesIO()
    with zipfile.ZipFile(zip_bytes, "w") as archive:
        archive.writestr("census.tar.gz", tar_bytes.getvalue())
        archive.writestr("census-income.names", b"docs")
    return zip_bytes.getvalue()


def test_download_from_the_zip_when_the_old_site_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, test = census_text(tiny_rows(3)).encode(), census_text(tiny_rows(2)).encode()
    install_tiny(monkeypatch, tmp_path / "unused", tiny_rows(3), tiny_rows(2))
    archive = _zip_of_tar({"census/census-income.data": train, "census/census-income.test": test})

    def fetch(url: str) -> bytes:
        if url == census.CENSUS_ARCHIVE_URL:
            return archive
        raise urllib.error.URLError("404")

    monkeypatch.setattr(census, "_fetch", fetch)
    paths = REAL_DOWNLOAD(tmp_path / "data", ["train", "test"])
    assert paths == {
        "train": tmp_path / "data" / "census-income.data",
        "test": tmp_path / "data" / "census-income.test",
    }
    assert paths["train"].read_bytes() == train and paths["test"].read_bytes() == test
    monkeypatch.setattr(census, "download_census_files", REAL_DOWNLOAD)
    assert ensure_census_files(tmp_path / "data") == paths


def test_download_of_the_gzipped_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_tiny(monkeypatch, tmp_path / "unused", tiny_rows(3), tiny_rows(2))
    served = {
        census.CENSUS_FILE_URL.format(name=name): (tmp_path / "unused" / name).read_bytes()
        for name in ("census-income.data.gz", "census-income.test.gz")
    }
    monkeypatch.setattr(census, "_fetch", lambda url: served[url])
    paths = REAL_DOWNLOAD(tmp_path / "data", ["test"])
    assert paths == {"test": tmp_path / "data" / "census-income.test.gz"}
    assert paths["test"].read_bytes() == served[census.CENSUS_FILE_URL.format(name="census-income.test.gz")]


def test_download_with_a_wrong_checksum_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_tiny(monkeypatch, tmp_path / "unused", tiny_rows(3), tiny_rows(2))
    wrong = gzip.compress(census_text(tiny_rows(7)).encode())
    archive = _zip_of_tar({"census-income.data": b"wrong", "census-income.test": b"wrong"})
    monkeypatch.setattr(census, "_fetch", lambda url: archive if url == census.CENSUS_ARCHIVE_URL else wrong)
    with pytest.raises(OSError, match="sha256"):
        REAL_DOWNLOAD(tmp_path / "data", ["train", "test"])
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


# -- the real files --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(census_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Group 1 loaded once (split_seed 0), with the raw frames, in a user cache of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("census-cache")))
        listing = sorted((p.name, p.stat().st_mtime_ns) for p in census_dir.iterdir())
        data = load_census(1, census_dir, split_seed=0, download=False)
        paths = ensure_census_files(census_dir, download=False)
        return {
            "data": data,
            "train": read_census_file(paths["train"]),
            "test": read_census_file(paths["test"]),
            "listing_before": listing,
        }


def test_real_split_sizes_and_tasks(real: dict, census_dir: Path) -> None:
    data = real["data"]
    assert (len(data.train), len(data.validation), len(data.test)) == (199_523, 49_881, 49_881)
    assert data.info["rows"] == {"train": 199_523, "validation": 49_881, "test": 49_881}
    assert data.task_names == ["income", "marital"]
    assert data.input_spec.numeric == NUMERIC_COLUMNS and data.input_spec.categorical == CATEGORICAL_COLUMNS
    # Loading wrote nothing into the data directory.
    assert sorted((p.name, p.stat().st_mtime_ns) for p in census_dir.iterdir()) == real["listing_before"]


def test_real_label_correlations(real: dict) -> None:
    assert abs(real["data"].info["label_correlation"]) == pytest.approx(0.178, abs=0.005)
    labels = census_labels(real["train"])
    assert abs(np.corrcoef(labels["education"], labels["marital"])[0, 1]) == pytest.approx(0.240, abs=0.005)


def test_real_parsing_traps(real: dict) -> None:
    train, encoder = real["train"], real["data"].encoder
    assert (train["hisp_origin"] == "NA").sum() > 0
    assert "NA" in encoder.vocabularies[CATEGORICAL_COLUMNS.index("hisp_origin")]
    assert train["migration_code_change_in_msa"].isna().sum() > 0
    assert MISSING_CATEGORY in encoder.vocabularies[CATEGORICAL_COLUMNS.index("migration_code_change_in_msa")]
    assert not any(
        value.startswith(" ") or value.endswith(" ") for vocabulary in encoder.vocabularies for value in vocabulary
    )


def test_real_no_leakage(real: dict) -> None:
    train, test, encoder = real["train"], real["test"], real["data"].encoder
    for j, column in enumerate(NUMERIC_COLUMNS):
        assert encoder.means[j] == pytest.approx(train[column].mean(), rel=1e-9)
        assert encoder.stds[j] == pytest.approx(train[column].std(ddof=0), rel=1e-9)
    pooled = pd.concat([train["age"], test["age"]]).mean()
    assert encoder.means[0] != pytest.approx(pooled, rel=1e-9)  # the check above could tell
    for j, column in enumerate(CATEGORICAL_COLUMNS):
        seen = {str(v) for v in train[column].dropna().unique()}
        if train[column].isna().any():
            seen.add(MISSING_CATEGORY)
        assert set(encoder.vocabularies[j]) == seen, column


def test_real_unseen_slot(real: dict) -> None:
    data, train, test = real["data"], real["train"], real["test"]
    held_out = torch.cat([data.validation.categorical, data.test.categorical])
    for j, column in enumerate(CATEGORICAL_COLUMNS):
        unseen = ~test[column].isin(train[column].dropna().unique()) & test[column].notna()
        if not train[column].isna().any():
            unseen |= test[column].isna()
        assert int((held_out[:, j] == data.input_spec.offsets[j]).sum()) == int(unseen.sum()), column
    # The one det_hh_fam_stat category of the training file only: its own slot, used in training only.
    j = CATEGORICAL_COLUMNS.index("det_hh_fam_stat")
    slot = data.input_spec.offsets[j] + 1 + data.encoder.vocabularies[j].index(TRAIN_ONLY)
    in_training = int((train["det_hh_fam_stat"] == TRAIN_ONLY).sum())
    assert in_training >= 1 and int((data.train.categorical[:, j] == slot).sum()) == in_training
    assert int((test["det_hh_fam_stat"] == TRAIN_ONLY).sum()) == 0
    assert not (held_out[:, j] == slot).any()


def test_real_split_follows_the_seed(real: dict) -> None:
    data, test = real["data"], real["test"]
    labels = census_labels(test)[["income", "marital"]].to_numpy(dtype=np.float32)
    validation_rows, test_rows = split_test_rows(len(test), 0)
    assert torch.equal(data.validation.labels, torch.from_numpy(labels[validation_rows]))
    assert torch.equal(data.test.labels, torch.from_numpy(labels[test_rows]))
    assert np.array_equal(split_test_rows(len(test), 0)[0], validation_rows)
    other = split_test_rows(len(test), 1)[0]
    assert not np.array_equal(np.sort(other), np.sort(validation_rows))
