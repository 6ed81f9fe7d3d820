"""Reading a Parquet table in record batches: a file or a directory of files, opened once, with
its row groups listed and the column types unified over the files.

`ParquetTable` lists the files `read_table` reads, in the same order (so row i is the same row in
both), checks that every file has the same columns, fixes the type each used column is read as
(the widest over the files: int32 and int64, or int and float, read as the wider one; types that
do not unify are an error naming the file), and reads record batches of one row group or of the
whole table, each with its file, its first row in the file and its first row in the table. It
encodes nothing (`mmoe.data.arrow_encoding` does).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mmoe.data.tabular import PARQUET_SUFFIXES, _shown, parquet_files
from mmoe.errors import MmoeError

READ_ROWS = 16_384  # rows per record batch read from a row group
EXPECTED_PARQUET = "expected a Parquet file (.parquet, .pq) or a directory of Parquet files"


@dataclass(frozen=True)
class RowGroup:
    """One row group: the unit whose reading order is shuffled."""

    file: int
    row_group: int
    first_row: int  # in its file
    start: int  # in the whole table (the row index the split rule hashes)
    rows: int


class ParquetTable:
    """A Parquet file or a directory of them, opened for reading in batches.

    The files are those `read_table` reads, in the same order, so row i is the same row in both.
    Every file must have the same columns (pandas index columns aside); `use` then checks that
    the columns a run reads have compatible types in every file (e.g. int32 and int64, or int and
    float, which are read as the wider type) and rejects the rest with the file named.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.exists():
            raise MmoeError(f"{path}: no such file or directory; {EXPECTED_PARQUET}")
        if path.is_dir():
            files = parquet_files(path)
        elif path.suffix.lower() in PARQUET_SUFFIXES:
            files = [path]
        else:
            what = repr(path.suffix) if path.suffix else "a file without an extension"
            raise MmoeError(
                f"{path}: streaming reads Parquet only, not {what}; {EXPECTED_PARQUET} (convert the "
                f"table once, e.g. with pandas' to_parquet)"
            )
        self.path = path
        self.files = files
        self.metadata: list[pq.FileMetaData] = []
        self.schemas: list[pa.Schema] = []
        for file in files:
            try:
                handle = pq.ParquetFile(file)
                self.metadata.append(handle.metadata)
                self.schemas.append(handle.schema_arrow)
                handle.close()
            except Exception as error:  # pyarrow raises several unrelated types for a bad file
                reason = " ".join(str(error).split())[:200]
                raise MmoeError(
                    f"{file}: cannot read as Parquet ({type(error).__name__}: {reason}); expected a Parquet file"
                ) from None
        self.columns = _data_columns(self.schemas[0], files[0])
        for file, schema in zip(files[1:], self.schemas[1:]):
            names = _data_columns(schema, file)
            missing = [c for c in self.columns if c not in names]
            extra = [c for c in names if c not in self.columns]
            if missing or extra:
                what = "; ".join(
                    part
                    for part in (
                        f"no column(s) {_shown(missing)}" if missing else "",
                        f"extra column(s) {_shown(extra)}" if extra else "",
                    )
                    if part
                )
                raise MmoeError(
                    f"{file}: {what} compared with {files[0].name}; expected every Parquet file in "
                    f"{path} to have the same columns"
                )
        self.pieces: list[RowGroup] = []
        start = 0
        for f, metadata in enumerate(self.metadata):
            first = 0
            for g in range(metadata.num_row_groups):
                rows = metadata.row_group(g).num_rows
                if rows:
                    self.pieces.append(RowGroup(f, g, first, start, rows))
                first += rows
                start += rows
        self.rows = start
        if self.rows == 0:
            raise MmoeError(f"{path}: the table has columns but no data rows; expected at least one row")
        self.types: dict[str, pa.DataType] = {}
        self._frame: pd.DataFrame | None = None

    def use(self, columns: Sequence[str]) -> None:
        """Fixes the columns to read and the type each is read as (the widest over the files)."""
        types = {}
        for column in columns:
            target = _plain_type(self.schemas[0].field(column).type)
            for file, schema in zip(self.files[1:], self.schemas[1:]):
                found = _plain_type(schema.field(column).type)
                wider = _unified(target, found)
                if wider is None:
                    raise MmoeError(
                        f"{file}: column {column!r} is {found} but {target} in {self.files[0].name}; "
                        f"expected the same type in every Parquet file of {self.path}"
                    )
                target = wider
            types[column] = target
        self.types = types

    def is_dictionary(self, column: str) -> bool:
        """Stored as a dictionary (a pandas categorical) in the first file."""
        return pa.types.is_dictionary(self.schemas[0].field(column).type)

    def pandas_dtypes(self) -> pd.DataFrame:
        """An empty frame with the first file's columns as pandas reads them (its pandas metadata
        included, e.g. nullable Int64), for `infer_column_types` and `category_dtype`."""
        if self._frame is None:
            self._frame = self.schemas[0].empty_table().to_pandas()
        return self._frame

    def category_dtype(self, column: str) -> Any:
        """The dtype `read_table` gives `column` (None for a dictionary column, whose categories
        are named as they are), so that a streamed value is turned into the same text: notably
        pandas reads an integer column with a missing value anywhere as floats ("3.0", not "3")."""
        if self.is_dictionary(column):
            return None
        dtype = self.pandas_dtypes()[column].dtype
        numpy_kind = dtype.kind if isinstance(dtype, np.dtype) else None
        if numpy_kind in ("i", "u") and (pa.types.is_floating(self.types[column]) or self.has_missing(column)):
            return np.dtype("float64")
        return dtype

    def has_missing(self, column: str) -> bool:
        """Whether any file has a null in `column`: from the row groups' statistics, else by
        reading that one column."""
        for file, metadata in zip(self.files, self.metadata):
            index = metadata.schema.names.index(column) if column in metadata.schema.names else None
            known = index is not None
            for g in range(metadata.num_row_groups):
                statistics = metadata.row_group(g).column(index).statistics if known else None
                if statistics is None or not statistics.has_null_count:
                    known = False
                    break
                if statistics.null_count:
                    return True
            if not known and pq.read_table(file, columns=[column]).column(0).null_count:
                return True
        return False

    def read(
        self, columns: Sequence[str], read_rows: int = READ_ROWS, piece: RowGroup | None = None
    ) -> Iterator[tuple[int, int, int, pa.RecordBatch]]:
        """(file index, first row in its file, first row in the table, batch) for every record
        batch of `piece`, or of the whole table in order."""
        pieces = [piece] if piece is not None else self.pieces
        for part in pieces:
            file = self.files[part.file]
            handle = pq.ParquetFile(file, metadata=self.metadata[part.file])
            try:
                first, start = part.first_row, part.start
                # use_threads=False: decoding stays in this (the reader's) thread, off the cores
                # torch was given.
                batches = handle.iter_batches(
                    batch_size=read_rows, row_groups=[part.row_group], columns=list(columns), use_threads=False
                )
                while True:
                    try:
                        batch = next(batches, None)
                    except (pa.ArrowException, OSError) as error:  # a damaged page or a file changed meanwhile
                        reason = " ".join(str(error).split())[:200]
                        raise MmoeError(
                            f"{file}: cannot read row group {part.row_group} ({type(error).__name__}: "
                            f"{reason}); expected a readable Parquet file"
                        ) from None
                    if batch is None:
                        break
                    yield part.file, first, start, batch
                    first += batch.num_rows
                    start += batch.num_rows
            finally:
                handle.close()

    def column(self, batch: pa.RecordBatch, name: str) -> pa.Array:
        """A batch's column in the type `use` fixed (dictionaries decoded, narrower types widened)."""
        values = batch.column(name)
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        target = self.types.get(name, values.type)
        return values if values.type == target else values.cast(target)


def _data_columns(schema: pa.Schema, file: Path) -> list[str]:
    """The columns pandas reads as columns (a stored index is not one)."""
    index = {entry for entry in ((schema.pandas_metadata or {}).get("index_columns") or []) if isinstance(entry, str)}
    names = [name for name in schema.names if name not in index]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise MmoeError(
            f"{file}: duplicate column name(s) {', '.join(map(repr, repeated))}; expected every column name once"
        )
    return names


def _plain_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_large_string(kind) or getattr(pa.types, "is_string_view", lambda _: False)(kind):
        return pa.string()
    if pa.types.is_large_binary(kind):
        return pa.binary()
    return kind


def _unified(first: pa.DataType, second: pa.DataType) -> pa.DataType | None:
    if first == second:
        return first
    try:
        schema = pa.unify_schemas([pa.schema([("c", first)]), pa.schema([("c", second)])], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return schema.field("c").type


__all__ = ["EXPECTED_PARQUET", "PARQUET_SUFFIXES", "READ_ROWS", "ParquetTable", "RowGroup"]
