"""The user's own tables (CSV or Parquet) as a `MultiTaskData`.

`load_table` reads a table, checks the task and feature columns, splits the rows (a seeded
shuffle, or the user's own validation / test files), fits a `TableEncoder` on the training rows
only and turns the three splits into tensors. Every problem with the input is an `MmoeError`
whose one line names the file, and the column or row where it can, and says what was expected.

Missing values (docs/tables.md has the full story): empty cells and pandas' usual spellings
("NaN", "NA", "null", ...) are missing. A missing numeric feature becomes the training mean; a
missing categorical value is its own "<missing>" category; a missing label leaves that row out
of that one task's loss and metrics; a row with no label at all is dropped. ±inf is an error.
"""

from __future__ import annotations

import codecs
import csv
import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmoe.data.assemble import fit_encode
from mmoe.data.dataset import TASK_KINDS, MultiTaskData, Task
from mmoe.data.encoders import BinaryLabelCoder, TableEncoder
from mmoe.data.values import multi_value_texts, to_numeric_column
from mmoe.data.vocabulary import VocabularyOptions
from mmoe.errors import MmoeError
from mmoe.spec import condition_chains

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
COLUMN_TYPES = ("numeric", "categorical")
EXPECTED_TABLE = "expected a CSV (.csv, .tsv, .txt) or Parquet (.parquet, .pq) file, or a directory of Parquet files"


# -- task specs -----------------------------------------------------------------------------------
def parse_task_spec(text: str) -> list[Task]:
    """Tasks from "name:kind,name:kind" (e.g. "clicked:binary,watch_time:regression").

    The first task is the main task (the one model selection and reports centre on). Kinds are
    "binary" and "regression". A binary task may follow an earlier one: "name:binary:given=other"
    (e.g. "click:binary,purchase:binary:given=click"; see `mmoe.spec.Task.given`). Spaces around
    names and kinds are ignored.
    """
    if not isinstance(text, str) or not text.strip():
        raise MmoeError(
            f"task spec {text!r} is empty; expected NAME:KIND[,NAME:KIND...], e.g. clicked:binary,watch_time:regression"
        )
    tasks = [parse_task_item(item, f"task spec {text!r}") for item in text.split(",")]
    _check_unique_tasks(tasks, f"task spec {text!r}")
    _check_conditions(tasks, f"task spec {text!r}")
    return tasks


GIVEN = re.compile(r"\s*given\s*=(.*)", re.IGNORECASE | re.DOTALL)


def parse_task_item(item: str, source: str) -> Task:
    """One task of a spec: "NAME:KIND" or "NAME:binary:given=OTHER"."""
    text = item.strip()
    given: str | None = None
    head, colon, last = text.rpartition(":")
    condition = GIVEN.fullmatch(last) if colon else None
    if condition is not None:
        text, given = head, condition.group(1).strip()
        if not given:
            raise MmoeError(
                f"{source}: {item.strip()!r} has an empty given=; expected NAME:binary:given=OTHER, e.g. "
                f"click:binary,purchase:binary:given=click"
            )
    # rpartition: a column name may itself contain ':', the kind never does.
    name, colon, kind = (part.strip() for part in text.rpartition(":"))
    if not colon or not name or not kind:
        raise MmoeError(
            f"{source}: {item.strip()!r} is not NAME:KIND; expected e.g. clicked:binary,watch_time:regression"
        )
    kind = kind.lower()
    if kind not in TASK_KINDS:
        raise MmoeError(f"{source}: task {name!r} has unknown kind {kind!r}; expected one of {', '.join(TASK_KINDS)}")
    try:
        return Task(name, kind, given=given)
    except MmoeError as error:
        raise MmoeError(f"{source}: {error}") from None


def _check_conditions(tasks: Sequence[Task], source: str) -> None:
    """The tasks' `given`s name earlier binary tasks (`mmoe.spec.condition_chains`)."""
    try:
        condition_chains(tasks)
    except MmoeError as error:
        raise MmoeError(f"{source}: {error}") from None


def _repeated(names: Sequence[str]) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


def _check_unique_tasks(tasks: Sequence[Task], source: str) -> None:
    names = [task.name for task in tasks]
    duplicated = _repeated(names)
    if duplicated:
        raise MmoeError(
            f"{source}: task {', '.join(map(repr, duplicated))} is listed more than once; expected each task once"
        )


# -- reading --------------------------------------------------------------------------------------
def read_table(path: str | Path, delimiter: str | None = None) -> pd.DataFrame:
    """A CSV / TSV / Parquet file, or a directory of Parquet files, as a DataFrame.

    CSV: UTF-8 (a byte-order mark is fine), comma-separated unless `delimiter` says otherwise
    (.tsv defaults to a tab), first row the header. Parquet directories: every *.parquet / *.pq
    file below the directory, in sorted path order, with the same columns (partition directory
    names do not become columns). Empty cells and "NaN"/"NA"/"null"-like strings are missing.

    Raises MmoeError for a missing file, an unknown extension, a table without data rows,
    non-UTF-8 bytes, a row with more fields than the header, duplicate column names, or an
    unreadable Parquet file.
    """
    path = Path(path)
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"'):
        raise MmoeError(
            f"{path}: CSV delimiter {delimiter!r} is not allowed; expected one character such as ',', ';' or a tab"
        )
    if not path.exists():
        raise MmoeError(f"{path}: no such file or directory; {EXPECTED_TABLE}")
    if path.is_dir():
        frame = _read_parquet_directory(path)
    else:
        suffix = path.suffix.lower()
        if suffix in CSV_SUFFIXES:
            frame = _read_csv(path, delimiter if delimiter is not None else ("\t" if suffix == ".tsv" else ","))
        elif suffix in PARQUET_SUFFIXES:
            frame = _read_parquet_file(path)
        else:
            raise MmoeError(f"{path}: unknown file extension {path.suffix or '(none)'!r}; {EXPECTED_TABLE}")
    if len(frame) == 0:
        raise MmoeError(f"{path}: the table has a header but no data rows; expected at least one row")
    return frame


def _read_csv(path: Path, delimiter: str) -> pd.DataFrame:
    header = _read_csv_header(path, delimiter)
    duplicated = _repeated(header)
    if duplicated:
        # pandas would silently rename the second copy to "name.1"; the user meant one column.
        raise MmoeError(
            f"{path}: duplicate column name(s) {', '.join(map(repr, duplicated))} in the header; "
            f"expected every column name once"
        )
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops data) when the first data row is longer than the header;
            # turning the warning into an error sends both cases to the same ragged-row report.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # index_col=False: never take the first column as an index when rows are longer than
            # the header; low_memory=False: one dtype per column rather than per chunk.
            frame = pd.read_csv(path, sep=delimiter, encoding="utf-8-sig", index_col=False, low_memory=False)
    except UnicodeDecodeError:
        raise MmoeError(_describe_bad_utf8(path)) from None
    except pd.errors.EmptyDataError:
        raise MmoeError(f"{path}: the file is empty; expected a header row and at least one data row") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as error:
        raise MmoeError(_describe_ragged_row(path, delimiter, len(header), error)) from None
    # pandas reads a row with too few fields as if the rest were empty cells, so a file cut off in
    # the middle of its last line (a truncated write) would train without a word: check the widths.
    ragged = _first_ragged_row(path, delimiter, len(header), trailing_delimiter=True)
    if ragged is not None:
        raise MmoeError(_ragged_row_message(path, delimiter, len(header), *ragged))
    return frame


def _read_csv_header(path: Path, delimiter: str) -> list[str]:
    """The header's field names as written (before pandas renames duplicates)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for record in csv.reader(handle, delimiter=delimiter):
                if record:  # pandas skips blank lines before the header too
                    return record
    except UnicodeDecodeError:
        raise MmoeError(_describe_bad_utf8(path)) from None
    except csv.Error as error:
        raise MmoeError(f"{path}: cannot read the header row ({error}); expected a CSV header") from None
    raise MmoeError(f"{path}: the file is empty; expected a header row and at least one data row")


def _describe_bad_utf8(path: Path) -> str:
    # Only on the error path: decode the file incrementally to find the first bad byte's offset.
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with path.open("rb") as handle:
        while True:
            block = handle.read(1 << 20)
            try:
                # final=True on the last (empty) read reports a sequence cut off at the end of the file.
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                # error.start counts from the bytes the decoder still held back from earlier blocks.
                held = len(error.object) - len(block)
                bad = offset - held + error.start
                line += error.object[: error.start].count(b"\n")
                return (
                    f"{path}: byte 0x{error.object[error.start]:02x} at byte offset {bad} (line {line}) is "
                    f"not UTF-8; expected a UTF-8 text file (re-save it as UTF-8)"
                )
            if not block:
                break
            offset += len(block)
            line += block.count(b"\n")
    return f"{path}: the file is not valid UTF-8; expected a UTF-8 text file (re-save it as UTF-8)"


def _describe_ragged_row(path: Path, delimiter: str, width: int, error: Exception) -> str:
    # Only on the error path: find the first record whose width is not the header's ourselves,
    # since pandas does not report a line for every case.
    reason = " ".join(str(error).split())
    unclosed = re.search(r"EOF inside string starting at row (\d+)", reason)
    if unclosed:
        # pandas counts rows from 0 at the header: row N is line N + 1 of the file.
        return (
            f"{path}: the file ends inside a quoted value that starts on line {int(unclosed.group(1)) + 1} "
            f"(a truncated file or a missing closing quote); expected every '\"' to be closed"
        )
    ragged = _first_ragged_row(path, delimiter, width, trailing_delimiter=False)
    if ragged is not None:
        return _ragged_row_message(path, delimiter, width, *ragged)
    match = re.search(r"line (\d+)", reason)
    where = f"line {match.group(1)}" if match else "a row"
    return f"{path}: {where} cannot be parsed ({reason}); expected every row to have the header's {width} fields"


def _ragged_row_message(path: Path, delimiter: str, width: int, line: int, fields: int) -> str:
    if fields > width:
        return (
            f"{path}: line {line} has {fields} fields but the header has {width}; expected at most {width} "
            f"fields per row (quote values that contain {delimiter!r}, and check for a trailing {delimiter!r})"
        )
    return (
        f"{path}: line {line} has {fields} field{'s' if fields != 1 else ''} but the header has {width}; "
        f"expected {width} fields per row (a truncated file, or a row with a value left out: an empty value "
        f"still needs its {delimiter!r})"
    )


SCAN_BYTES = 1 << 24  # bytes of a CSV whose row widths are counted at once


def _first_ragged_row(path: Path, delimiter: str, width: int, trailing_delimiter: bool) -> tuple[int, int] | None:
    """(line, fields) of the first data row whose number of fields is not the header's `width`,
    or None. Blank lines are skipped (pandas skips them too). trailing_delimiter: a row of
    width + 1 fields whose last is empty (a delimiter ending the line, which pandas drops when
    it reads the file) counts as fitting.

    Without quotes in the file, fields are counted with numpy (one pass, a few percent of what
    parsing costs); a quoted value may hold the delimiter or a line break, so a file with quotes
    is read with the csv module instead."""
    if len(delimiter.encode("utf-8")) == 1:
        try:
            return _first_ragged_line_unquoted(path, delimiter.encode("utf-8")[0], width, trailing_delimiter)
        except _Quoted:
            pass
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = False
            for record in reader:
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                if not header:
                    header = True
                    continue
                fields = len(record)
                if fields != width and not (trailing_delimiter and fields == width + 1 and record[-1] == ""):
                    return reader.line_num, fields
    except (csv.Error, UnicodeDecodeError):  # e.g. a field over csv's size limit: no line to name
        pass
    return None


class _Quoted(Exception):
    """The file has quotes (or old Mac line endings): its rows are counted with the csv module."""


def _first_ragged_line_unquoted(
    path: Path, separator: int, width: int, trailing_delimiter: bool
) -> tuple[int, int] | None:
    """`_first_ragged_row` for a file without quotes, block by block with numpy; `_Quoted` when a
    block holds a quote (or a lone carriage return, an old line ending), which it leaves to csv."""
    lines_before, header, rest = 0, False, b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(SCAN_BYTES)
            data = rest + block
            if not block:
                if not data:
                    return None
                data += b"\n"  # the last line, without its line break
            cut = data.rfind(b"\n") + 1
            if not cut:  # a line longer than a block: read on
                rest = data
                continue
            chunk, rest = data[:cut], data[cut:]
            if b'"' in chunk or (b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n")):
                raise _Quoted
            buffer = np.frombuffer(chunk, dtype=np.uint8)
            ends = np.flatnonzero(buffer == 10)  # each line's "\n"
            starts = np.concatenate([[0], ends[:-1] + 1])
            ends = ends - ((ends > starts) & (buffer[np.maximum(ends - 1, 0)] == 13))  # drop "\r"
            # Separators per line: the separator positions before its end, less those before the last.
            separators = np.diff(np.searchsorted(np.flatnonzero(buffer == separator), np.concatenate([[0], ends])))
            fields = separators + 1
            fits = fields == width
            if trailing_delimiter:
                fits |= (fields == width + 1) & (ends > starts) & (buffer[np.maximum(ends - 1, 0)] == separator)
            first = 0
            while not header and first < len(ends):  # the header: the first line that is not blank
                header = bool(chunk[starts[first] : ends[first]].strip())
                first += 1
            for line in np.flatnonzero(~fits[first:]) + first:
                # A line without separators may be blank (spaces at most), which pandas skips.
                if separators[line] or chunk[starts[line] : ends[line]].strip():
                    return lines_before + int(line) + 1, int(fields[line])
            lines_before += len(ends)
            if not block:
                return None


def _read_parquet_file(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        reason = " ".join(str(error).split())[:200]
        raise MmoeError(
            f"{path}: cannot read as Parquet ({type(error).__name__}: {reason}); expected a Parquet file"
        ) from None
    duplicated = sorted({str(name) for name in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise MmoeError(
            f"{path}: duplicate column name(s) {', '.join(map(repr, duplicated))}; expected every column name once"
        )
    frame.columns = [str(name) for name in frame.columns]
    return frame.reset_index(drop=True)


def parquet_files(path: Path) -> list[Path]:
    """The Parquet files of a directory table: every *.parquet / *.pq below `path`, sorted by
    path, skipping files and folders whose name starts with "." or "_" (writers' temporary and
    metadata files). MmoeError when there is none. Shared with the streaming reader, so that both
    see the same rows in the same order."""
    files = sorted(
        file
        for file in path.rglob("*")
        if file.is_file()
        and file.suffix.lower() in PARQUET_SUFFIXES
        and not any(part.startswith((".", "_")) for part in file.relative_to(path).parts)
    )
    if not files:
        raise MmoeError(f"{path}: the directory holds no .parquet / .pq files; {EXPECTED_TABLE}")
    return files


def _read_parquet_directory(path: Path) -> pd.DataFrame:
    files = parquet_files(path)
    frames = [_read_parquet_file(file) for file in files]
    for file, frame in zip(files[1:], frames[1:]):
        if list(frame.columns) != list(frames[0].columns):
            raise MmoeError(
                f"{file}: columns {list(frame.columns)} differ from {files[0].name}'s "
                f"{list(frames[0].columns)}; expected every file in {path} to have the same columns"
            )
    return pd.concat(frames, ignore_index=True)


# -- columns --------------------------------------------------------------------------------------
def infer_column_types(
    frame: pd.DataFrame, features: Sequence[str], overrides: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """Splits `features` into (numeric, categorical), each in the order given.

    Numeric dtypes (integers and floats, not booleans) are numeric; everything else (text,
    booleans, pandas categoricals) is categorical. `overrides` maps a feature to "numeric" or
    "categorical" and wins over the dtype (e.g. a zip code stored as a number).
    """
    overrides = dict(overrides or {})
    for column, kind in overrides.items():
        if column not in features:
            raise MmoeError(
                f"column type override: {column!r} is not a feature column; the features are {_shown(features)}"
            )
        if kind not in COLUMN_TYPES:
            raise MmoeError(f"column type override for {column!r}: {kind!r} is not one of {', '.join(COLUMN_TYPES)}")
    numeric: list[str] = []
    categorical: list[str] = []
    for column in features:
        override = overrides.get(column)
        if override is None:
            dtype = frame[column].dtype
            is_number = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
            override = "numeric" if is_number else "categorical"
        (numeric if override == "numeric" else categorical).append(column)
    return numeric, categorical


def list_columns(frame: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """The features whose first present value is a list (a Parquet list column read by pandas):
    multi-valued columns without being named."""
    found = []
    for column in features:
        if column in frame.columns and frame[column].dtype == object:
            present = frame[column].dropna()
            if len(present) and isinstance(present.iloc[0], (list, tuple, np.ndarray)):
                found.append(column)
    return found


def multi_valued_types(
    vocabulary: VocabularyOptions, column_types: Mapping[str, str] | None, features: Sequence[str]
) -> dict[str, str]:
    """`column_types` with the multi-valued columns categorical (a "3|5" column may read as text,
    a "3" one as a number); a multi-valued column given as numeric is an MmoeError."""
    types = dict(column_types or {})
    for multi in vocabulary.multi_value:
        if types.get(multi.column) == "numeric":
            raise MmoeError(
                f"option multi_value (--multi-value): column {multi.column!r} is given as numeric; "
                f"expected a multi-valued column to be categorical"
            )
        if multi.column in features:
            types[multi.column] = "categorical"
    return types


def _shown(names: Sequence[str], limit: int = 12) -> str:
    names = list(names)
    text = ", ".join(repr(str(name)) for name in names[:limit])
    return text + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# -- splitting ------------------------------------------------------------------------------------
def check_fraction(source: str, name: str, fraction: Any) -> None:
    """MmoeError, naming `source`, unless `fraction` (of split `name`) is a number in (0, 1)."""
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0.0 < fraction < 1.0):
        raise MmoeError(f"{source}: {name}_fraction must be between 0 and 1 (exclusive), got {fraction!r}")


def split_indices(
    rows: int, validation_fraction: float | None, test_fraction: float | None, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded shuffle of range(rows) cut into (train, validation, test) index arrays.

    A fraction of None carves nothing (the split comes from elsewhere, e.g. a file). Sizes are
    rounded; each index array is sorted, so every split keeps the source's row order (training
    shuffles its own batches). MmoeError, naming `source`, for a fraction outside (0, 1) or a
    split that would be empty.
    """
    sizes = {}
    for name, fraction in (("validation", validation_fraction), ("test", test_fraction)):
        if fraction is None:
            sizes[name] = 0
            continue
        check_fraction(source, name, fraction)
        sizes[name] = int(round(rows * fraction))
        if sizes[name] == 0:
            raise MmoeError(
                f"{source}: a {name} fraction of {fraction} of {rows} row(s) is an empty {name} split; "
                f"expected at least one {name} row (use a larger table, a larger {name}_fraction, "
                f"or a separate {name} file)"
            )
    train_size = rows - sizes["validation"] - sizes["test"]
    if train_size < 1:
        raise MmoeError(
            f"{source}: {rows} row(s) leave no training rows after {sizes['validation']} validation and "
            f"{sizes['test']} test rows; expected at least one training row (use a larger table or "
            f"smaller fractions)"
        )
    order = np.random.default_rng(seed).permutation(rows)
    validation_end = sizes["validation"]
    test_end = validation_end + sizes["test"]
    return np.sort(order[test_end:]), np.sort(order[:validation_end]), np.sort(order[validation_end:test_end])


# -- loading --------------------------------------------------------------------------------------
def resolve_tasks(tasks: Sequence[Task] | str, source: str) -> list[Task]:
    """`Task`s from a spec string or a list of `Task`s; MmoeError for none, a non-Task, or a repeat."""
    task_list = parse_task_spec(tasks) if isinstance(tasks, str) else list(tasks)
    if not task_list:
        raise MmoeError("no tasks given; expected at least one NAME:KIND task")
    if not all(isinstance(task, Task) for task in task_list):
        raise MmoeError(f"tasks must be Task objects or a NAME:KIND spec string, got {tasks!r}")
    _check_unique_tasks(task_list, source)
    _check_conditions(task_list, source)
    return task_list


def resolve_columns(
    columns: Sequence[str],
    source: str,
    tasks: Sequence[Task],
    features: Sequence[str] | None,
    positive: Mapping[str, str] | None,
    hint: str = "",
) -> tuple[list[str], dict[str, str]]:
    """The feature columns (default: every column that is not a task) and the positive values as
    text, checked against the table's `columns`: a task or feature that is not there, a feature
    listed twice or also a task, no features at all, or a positive value for a task that is not
    binary is an MmoeError naming `source`. `hint` is appended to the missing-task message."""
    task_names = [task.name for task in tasks]
    for name in task_names:
        if name not in columns:
            raise MmoeError(f"{source}: task column {name!r} not found; the table has columns {_shown(columns)}" + hint)
    if features is None:
        feature_list = [column for column in columns if column not in task_names]
    else:
        feature_list = list(features)
        unknown = [column for column in feature_list if column not in columns]
        if unknown:
            raise MmoeError(
                f"{source}: feature column(s) {_shown(unknown)} not found; the table has columns {_shown(columns)}"
            )
        repeated = _repeated(feature_list)
        if repeated:
            raise MmoeError(
                f"{source}: feature column(s) {_shown(repeated)} listed more than once; expected each feature once"
            )
        as_feature = [name for name in task_names if name in feature_list]
        if as_feature:
            raise MmoeError(
                f"{source}: task column(s) {_shown(as_feature)} also listed as feature(s); a label "
                f"cannot be an input, remove it from the features"
            )
    if not feature_list:
        raise MmoeError(
            f"{source}: no feature columns besides the tasks {_shown(task_names)}; expected at least one input column"
        )
    positive_values = {name: str(value) for name, value in (positive or {}).items()}
    kinds = {task.name: task.kind for task in tasks}
    for name in positive_values:
        if kinds.get(name) != "binary":
            raise MmoeError(
                f"positive value given for {name!r}, which is not a binary task; binary tasks: "
                f"{_shown([t for t, k in kinds.items() if k == 'binary']) or 'none'}"
            )
    return feature_list, positive_values


def load_table(
    path: str | Path,
    tasks: Sequence[Task] | str,
    features: Sequence[str] | None = None,
    column_types: Mapping[str, str] | None = None,
    positive: Mapping[str, str] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    validation_path: str | Path | None = None,
    test_path: str | Path | None = None,
    delimiter: str | None = None,
    *,
    embedding_dim: int | None = None,
    embed: Sequence[str] | None = None,
    one_hot: Sequence[str] | None = None,
    min_frequency: int | None = None,
    max_categories: int | None = None,
    hash_buckets: int | Mapping[str, int] | None = None,
    multi_value: Sequence[str] | Mapping[str, Mapping[str, Any]] | str | None = None,
    multi_value_separator: str | None = None,
) -> MultiTaskData:
    """A user's table as a `MultiTaskData`.

    tasks: `Task`s or a spec string ("clicked:binary,watch_time:regression"); the first is the
        main task.
    features: the input columns; by default every column that is not a task.
    column_types: per feature, "numeric" or "categorical", overriding the dtype-based guess.
    positive: per binary task, the label value that means 1 (not needed for 0/1, true/false,
        yes/no).
    validation_fraction, test_fraction, split_seed: the seeded random split of `path`'s rows;
        a fraction is ignored when the matching file (validation_path / test_path) is given.
    delimiter: CSV field separator for all files (default: comma, tab for .tsv).
    embedding_dim, embed, one_hot, min_frequency, max_categories, hash_buckets: how the
        categorical columns' vocabularies are kept and how each enters the model
        (`mmoe.data.vocabulary.VocabularyOptions`; None: the default; docs/tables.md).
    multi_value, multi_value_separator: the multi-valued columns ("COL[:max=L][:pooling=mean|sum]
        [:shares=OTHER]" items, or {column: {max_values, pooling, shares}}) and the separator of
        their values in text cells (default "|"); a Parquet list column is multi-valued unnamed.

    Rows of `path` without any task label are dropped before splitting (counted in
    info["dropped_unlabelled_rows"]); a row missing some labels keeps the others (NaN in `labels`).
    The encoder is fitted on the training rows only.
    """
    task_list = resolve_tasks(tasks, str(path))
    vocabulary = VocabularyOptions.of(
        embedding_dim, embed, one_hot, min_frequency, max_categories, hash_buckets, multi_value, multi_value_separator
    )
    frame = read_table(path, delimiter)
    extras = {
        name: None if extra is None else (read_table(extra, delimiter), str(extra))
        for name, extra in (("validation", validation_path), ("test", test_path))
    }
    data = table_data(
        frame,
        str(path),
        task_list,
        features,
        column_types,
        positive,
        validation_fraction,
        test_fraction,
        split_seed,
        validation=extras["validation"],
        test=extras["test"],
        header_hint=_delimiter_hint(frame, delimiter),
        vocabulary=vocabulary,
    )
    for name, extra in (("validation", validation_path), ("test", test_path)):
        if extra is not None:
            data.info[f"{name}_path"] = str(extra)
    return data


def table_data(
    frame: pd.DataFrame,
    source: str,
    tasks: Sequence[Task] | str,
    features: Sequence[str] | None = None,
    column_types: Mapping[str, str] | None = None,
    positive: Mapping[str, str] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float | None = 0.1,
    split_seed: int = 0,
    validation: tuple[pd.DataFrame, str] | None = None,
    test: tuple[pd.DataFrame, str] | None = None,
    header_hint: str = "",
    kind: str = "table",
    vocabulary: VocabularyOptions | None = None,
) -> MultiTaskData:
    """Rows already read (`source` names them in messages) as a `MultiTaskData`, by `load_table`'s
    rules: every value checked against the whole table, unlabelled rows dropped, the seeded split
    (validation / test: (rows, their source) to use instead of a fraction of `frame`), the encoder
    fitted on the training rows. test_fraction None: no test rows. kind: info["dataset"].
    vocabulary: the categorical columns' vocabulary and representation options (default: none set)."""
    task_list = resolve_tasks(tasks, source)
    task_names = [task.name for task in task_list]
    frame = _integral_binary_labels(frame, task_list)
    feature_list, positive_values = resolve_columns(
        list(frame.columns), source, task_list, features, positive, header_hint
    )
    vocabulary = (vocabulary or VocabularyOptions()).with_list_columns(list_columns(frame, feature_list))
    numeric, categorical = infer_column_types(
        frame, feature_list, multi_valued_types(vocabulary, column_types, feature_list)
    )
    vocabulary.check_columns(categorical, numeric, source)

    # Check every value against the whole table before splitting, so that an error names the row
    # as it is in the table rather than its position inside a shuffled split.
    labels = _validate_frame(frame, source, numeric, task_list, positive_values)
    _validate_multi_values(frame, source, vocabulary)
    labelled = ~np.isnan(labels).all(axis=1)
    dropped = int((~labelled).sum())
    frame = frame.loc[labelled].reset_index(drop=True)
    if len(frame) == 0:
        raise MmoeError(
            f"{source}: no row has a value in any task column ({_shown(task_names)}); expected labelled rows"
        )

    train_index, validation_index, test_index = split_indices(
        len(frame),
        None if validation is not None else validation_fraction,
        None if test is not None else test_fraction,
        split_seed,
        source,
    )
    parts = {"train": (frame.iloc[train_index], source)}
    for name, index, extra_rows in (("validation", validation_index, validation), ("test", test_index, test)):
        if extra_rows is None:
            parts[name] = (frame.iloc[index], source)
            continue
        extra, extra_source = extra_rows
        extra = _integral_binary_labels(extra, task_list)
        missing = [column for column in feature_list + task_names if column not in extra.columns]
        if missing:
            raise MmoeError(
                f"{extra_source}: missing column(s) {_shown(missing)} that {source} has; expected the "
                f"same feature and task columns as the training table"
            )
        _validate_frame(extra, extra_source, numeric, task_list, positive_values)
        _validate_multi_values(extra, extra_source, vocabulary)
        parts[name] = (extra, extra_source)

    info: dict[str, Any] = {
        "dataset": kind,
        **({"path": source} if kind == "table" else {}),
        "column_types": {column: ("numeric" if column in numeric else "categorical") for column in feature_list},
        "rows": None,  # the split sizes, filled in by fit_encode
        "dropped_unlabelled_rows": dropped,
        "split_seed": split_seed,
    }
    encoder = TableEncoder(numeric, categorical, task_list, positive_values, vocabulary=vocabulary)
    return fit_encode(encoder, parts, info)


def _delimiter_hint(frame: pd.DataFrame, delimiter: str | None) -> str:
    """When the whole header was read as one column holding ';', tab or '|', the file most likely
    uses that separator: say so, as the bare column list does not make it obvious."""
    if len(frame.columns) != 1:
        return ""
    header = str(frame.columns[0])
    for candidate, name in ((";", "';'"), ("\t", "a tab"), ("|", "'|'")):
        if candidate in header and candidate != delimiter:
            return (
                f" (a single column: the file looks {name}-separated; expected "
                f"{'comma' if delimiter in (None, ',') else repr(delimiter)}-separated values)"
            )
    return ""


def _integral_binary_labels(frame: pd.DataFrame, tasks: Sequence[Task]) -> pd.DataFrame:
    """A 0/1 label column with missing cells is read as floats (0.0, 1.0); make it integers again.

    The label coder compares values as text, so without this `positive={"clicked": "1"}` would
    not match "1.0"."""
    for task in tasks:
        if task.kind != "binary" or task.name not in frame.columns:
            continue
        values = frame[task.name]
        if pd.api.types.is_float_dtype(values.dtype):
            present = values.dropna().to_numpy()
            if np.isfinite(present).all() and (present == np.round(present)).all():
                frame[task.name] = values.astype("Int64")
    return frame


def _validate_multi_values(frame: pd.DataFrame, source: str, vocabulary: VocabularyOptions) -> None:
    """Raises MmoeError, naming the row as it is in `frame`, for a multi-valued column's bad cell
    or values of mixed types (`values.multi_value_texts`)."""
    for multi in vocabulary.multi_value:
        if multi.column in frame.columns:
            multi_value_texts(frame[multi.column], multi.column, source, vocabulary.multi_value_separator)


def _validate_frame(
    frame: pd.DataFrame, source: str, numeric: Sequence[str], tasks: Sequence[Task], positive: Mapping[str, str]
) -> np.ndarray:
    """Raises MmoeError for a bad value anywhere in `frame`; returns its labels [rows, tasks], NaN = missing.

    The binary label coding here is only a check (it sees every row); the encoder's own coding is
    fitted on the training rows."""
    for column in numeric:
        to_numeric_column(frame[column], source, column)
    labels = np.empty((len(frame), len(tasks)), dtype=np.float64)
    for k, task in enumerate(tasks):
        values = frame[task.name]
        if task.kind == "binary":
            coder = BinaryLabelCoder(task.name, positive.get(task.name)).fit(values, source)
            labels[:, k] = coder.transform(values, source)
        else:
            labels[:, k] = to_numeric_column(values, source, task.name)
    return labels


__all__ = [
    "infer_column_types",
    "list_columns",
    "multi_valued_types",
    "load_table",
    "parquet_files",
    "parse_task_item",
    "parse_task_spec",
    "read_table",
    "resolve_columns",
    "resolve_tasks",
    "split_indices",
]
