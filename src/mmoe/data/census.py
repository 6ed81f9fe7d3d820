"""The UCI Census-income (KDD) benchmark of the MMoE paper (Section 6.3) as a `MultiTaskData`.

Files: census-income.data (train, 199,523 rows) and census-income.test (99,762 rows), each
gzipped or not, in a data directory (`--data-dir`, else $MMOE_DATA_DIR, else the user cache,
where a missing pair is downloaded from UCI). Their sha256 is checked on the uncompressed text;
a verified (size, mtime) is remembered in the user cache so that later loads skip the hashing.

Tasks (binary): income > 50K, marital status == "Never married", education "at least college".
Group 1 = income (main) + marital, group 2 = education (main) + marital. The three label-defining
columns and instance_weight (a sampling weight) are never inputs, in either group.

Split: the training file is the training split; the test file is shuffled with `split_seed` and
cut 1:1 into validation and test. The `TableEncoder` sees the training rows only.

docs/census.md has the details and the reasons for each choice.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import io
import json
import os
import tarfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pandas as pd

from mmoe.data.assemble import fit_encode
from mmoe.data.dataset import MultiTaskData, Task
from mmoe.data.encoders import TableEncoder
from mmoe.data.values import to_numeric_column
from mmoe.errors import MmoeError
from mmoe.io import atomic_write, atomic_write_json


# -- the files ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CensusFile:
    """One census file: its name (as UCI serves it, gzipped), the sha256 and size in bytes of its
    uncompressed text, and its number of rows."""

    name: str
    sha256: str
    size: int
    rows: int

    @property
    def plain_name(self) -> str:
        """The name of the uncompressed file ("census-income.data")."""
        return self.name.removesuffix(".gz")


CENSUS_FILES: dict[str, CensusFile] = {
    "train": CensusFile(
        "census-income.data.gz",
        "3676a81db7d3528f3f8b9f3c699d0f0aa28db45e6e994fa0b8ed38327539ee86",
        103_874_469,
        199_523,
    ),
    "test": CensusFile(
        "census-income.test.gz", "98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c", 51_918_813, 99_762
    ),
}

# Tried in order. The old directory serves the two gzipped files (9 MB); the current site serves
# one zip holding census.tar.gz, which holds the uncompressed files.
CENSUS_FILE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/{name}"
CENSUS_ARCHIVE_URL = "https://archive.ics.uci.edu/static/public/117/census+income+kdd.zip"
DOWNLOAD_TIMEOUT_S = 60
# The zip is ~10 MB; anything far larger is not the census archive.
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024

# -- the columns ----------------------------------------------------------------------------------
# In the order of the UCI documentation (and of the files), snake_case.
CENSUS_COLUMNS: tuple[str, ...] = (
    "age",
    "class_of_worker",
    "detailed_industry_recode",
    "detailed_occupation_recode",
    "education",
    "wage_per_hour",
    "enroll_in_edu_inst_last_wk",
    "marital_stat",
    "major_industry_code",
    "major_occupation_code",
    "race",
    "hisp_origin",
    "sex",
    "member_of_labor_union",
    "reason_for_unemployment",
    "full_or_part_time_employment_stat",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "tax_filer_stat",
    "region_of_previous_residence",
    "state_of_previous_residence",
    "det_hh_fam_stat",
    "det_hh_summ",
    "instance_weight",
    "migration_code_change_in_msa",
    "migration_code_change_in_reg",
    "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt",
    "num_persons_worked_for_employer",
    "family_members_under_18",
    "country_of_birth_father",
    "country_of_birth_mother",
    "country_of_birth_self",
    "citizenship",
    "own_business_or_self_employed",
    "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits",
    "weeks_worked_in_year",
    "year",
    "income",
)
# The continuous columns; every other input column is categorical, including the codes written as
# numbers (industry, occupation, own business, veterans benefits, year).
NUMERIC_COLUMNS: tuple[str, ...] = (
    "age",
    "wage_per_hour",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "num_persons_worked_for_employer",
    "weeks_worked_in_year",
)
# Never inputs: the three label-defining columns (in both groups, so that no group sees another
# group's label) and the sampling weight.
EXCLUDED_COLUMNS: tuple[str, ...] = ("education", "marital_stat", "income", "instance_weight")
CATEGORICAL_COLUMNS: tuple[str, ...] = tuple(
    c for c in CENSUS_COLUMNS if c not in NUMERIC_COLUMNS and c not in EXCLUDED_COLUMNS
)
INPUT_COLUMNS: tuple[str, ...] = NUMERIC_COLUMNS + CATEGORICAL_COLUMNS
# Parsed as numbers; the rest as categories.
_FLOAT_COLUMNS = frozenset(NUMERIC_COLUMNS + ("instance_weight",))
MISSING_MARK = "?"

# -- the labels -----------------------------------------------------------------------------------
CENSUS_GROUPS: dict[int, tuple[str, str]] = {1: ("income", "marital"), 2: ("education", "marital")}
INCOME_POSITIVE = "50000+."
INCOME_NEGATIVE = "- 50000."
MARITAL_POSITIVE = "Never married"
MARITAL_VALUES: tuple[str, ...] = (
    "Never married",
    "Married-civilian spouse present",
    "Married-A F spouse present",
    "Married-spouse absent",
    "Separated",
    "Divorced",
    "Widowed",
)
# "At least college": the paper does not list the values. This cut (associate degrees and up,
# not "Some college but no degree") reproduces its label correlation with marital (0.2373).
EDUCATION_COLLEGE: tuple[str, ...] = (
    "Associates degree-occup /vocational",
    "Associates degree-academic program",
    "Bachelors degree(BA AB BS)",
    "Masters degree(MA MS MEng MEd MSW MBA)",
    "Prof school degree (MD DDS DVM LLB JD)",
    "Doctorate degree(PhD EdD)",
)
EDUCATION_BELOW_COLLEGE: tuple[str, ...] = (
    "Children",
    "Less than 1st grade",
    "1st 2nd 3rd or 4th grade",
    "5th or 6th grade",
    "7th and 8th grade",
    "9th grade",
    "10th grade",
    "11th grade",
    "12th grade no diploma",
    "High school graduate",
    "Some college but no degree",
)

# Bump when read_census_file's output changes, so that stale parsed-frame caches are ignored.
PARSE_VERSION = 1
_HASH_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


# -- directories ----------------------------------------------------------------------------------
def user_cache_dir() -> Path:
    """The per-user cache of this project: $XDG_CACHE_HOME/mmoe, else ~/.cache/mmoe."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative path.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "mmoe"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The census data directory: `data_dir` if given, else $MMOE_DATA_DIR, else
    `user_cache_dir() / "census"`. The directory need not exist."""
    if data_dir is not None and str(data_dir).strip():
        return Path(data_dir).expanduser()
    from_env = os.environ.get("MMOE_DATA_DIR", "").strip()
    if from_env:
        return Path(from_env).expanduser()
    return user_cache_dir() / "census"


# -- checking the files ---------------------------------------------------------------------------
def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def _open_text_bytes(path: Path) -> IO[bytes]:
    """The file's uncompressed bytes, whether or not it is gzipped (told by content, not name)."""
    return cast(IO[bytes], gzip.open(path, "rb")) if _is_gzip(path) else open(path, "rb")


def file_sha256(path: str | Path) -> tuple[str, int]:
    """sha256 (hex) and size in bytes of the file's uncompressed text, read in 1 MiB chunks."""
    path = Path(path)
    digest, size = hashlib.sha256(), 0
    try:
        with _open_text_bytes(path) as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except (OSError, EOFError) as error:  # unreadable, or a damaged gzip file
        raise MmoeError(
            f"{path}: cannot be read ({error}); expected the UCI census-income file, gzipped or "
            f"uncompressed: delete it to download it again, or replace it with the original from UCI"
        ) from None
    return digest.hexdigest(), size


def _find_file(directory: Path, spec: CensusFile) -> Path | None:
    for name in (spec.name, spec.plain_name):
        if (directory / name).is_file():
            return directory / name
    return None


def _marker_path() -> Path:
    return user_cache_dir() / "census-verified.json"


def _stamp(path: Path) -> dict[str, Any]:
    status = path.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def _read_markers() -> dict[str, Any]:
    try:
        markers = json.loads(_marker_path().read_text())
    except (OSError, ValueError):
        return {}
    return markers if isinstance(markers, dict) else {}


def _is_verified(path: Path, spec: CensusFile, markers: dict[str, Any]) -> bool:
    entry = markers.get(str(path.resolve()))
    return entry == {**_stamp(path), "sha256": spec.sha256}


def _remember_verified(paths: Iterable[Path], spec_of: dict[Path, CensusFile]) -> None:
    """Records that each path (as its size and mtime are now) has the expected sha256.

    The marker lives in the user cache, never beside the data: data directories are often
    read-only or shared (and root may write to a read-only one without noticing)."""
    markers = _read_markers()
    for path in paths:
        markers[str(path.resolve())] = {**_stamp(path), "sha256": spec_of[path].sha256}
    try:
        atomic_write_json(_marker_path(), markers)
    except OSError:
        pass  # An unwritable cache only costs a re-hash next time.


def verify_census_file(path: str | Path, spec: CensusFile) -> None:
    """Raises MmoeError unless the uncompressed text of `path` has the sha256 in `spec`."""
    path = Path(path)
    actual, size = file_sha256(path)
    if actual != spec.sha256:
        raise MmoeError(
            f"{path}: sha256 of the uncompressed text is {actual} ({size:,} bytes), expected "
            f"{spec.sha256} ({spec.size:,} bytes); the file is damaged or not UCI's {spec.plain_name}: "
            f"delete it to download it again, or replace it with the original from UCI"
        )


def _missing_files_message(directory: Path, reason: str) -> str:
    names = " and ".join(spec.name for spec in CENSUS_FILES.values())
    return (
        f"census data not found in {directory}: put {names} there (gzipped or not), or point --data-dir "
        f"or MMOE_DATA_DIR at a folder that has them; {reason}"
    )


def ensure_census_files(data_dir: str | Path | None = None, download: bool = True) -> dict[str, Path]:
    """The verified census files in the data directory, as {"train": path, "test": path}.

    Each file may be gzipped (census-income.data.gz) or not (census-income.data). Missing files
    are downloaded from UCI when `download` is true. Raises MmoeError for a missing file that
    cannot be downloaded, or for a file whose uncompressed text has the wrong sha256.
    """
    directory = resolve_data_dir(data_dir)
    found = {role: _find_file(directory, spec) for role, spec in CENSUS_FILES.items()}
    missing = [role for role, path in found.items() if path is None]
    if missing:
        if not download:
            raise MmoeError(_missing_files_message(directory, "downloading is turned off"))
        try:
            found.update(download_census_files(directory, missing))
        except OSError as error:
            raise MmoeError(_missing_files_message(directory, f"downloading from UCI failed: {error}")) from None
    paths = {role: path for role, path in found.items() if path is not None}
    markers = _read_markers()
    newly_verified = []
    for role, path in paths.items():
        if not _is_verified(path, CENSUS_FILES[role], markers):
            verify_census_file(path, CENSUS_FILES[role])
            newly_verified.append(path)
    if newly_verified:
        _remember_verified(newly_verified, {path: CENSUS_FILES[role] for role, path in paths.items()})
    return paths


# -- downloading ----------------------------------------------------------------------------------
def _fetch(url: str) -> bytes:
    """The body at `url`; network problems are OSError (urllib's URLError is one)."""
    request = urllib.request.Request(url, headers={"User-Agent": "mmoe (census loader)"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            body = response.read(MAX_DOWNLOAD_BYTES + 1)
    except http.client.HTTPException as error:  # e.g. a connection cut mid-body; not an OSError
        raise OSError(f"{url}: {type(error).__name__}: {error}") from None
    if len(body) > MAX_DOWNLOAD_BYTES:
        raise OSError(f"{url}: more than {MAX_DOWNLOAD_BYTES:,} bytes; not the census data")
    return body


def _check_stream(stream: IO[bytes], spec: CensusFile, origin: str) -> None:
    """Raises OSError unless the bytes of `stream` have the sha256 in `spec`."""
    digest = hashlib.sha256()
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    if digest.hexdigest() != spec.sha256:
        raise OSError(f"{origin}: sha256 {digest.hexdigest()}, expected {spec.sha256}")


def _install(stream: IO[bytes], target: Path, spec: CensusFile, origin: str) -> Path:
    """Writes the uncompressed `stream` to `target` atomically, checking its sha256 on the way;
    a mismatch leaves nothing behind."""

    def write(temp: Path) -> None:
        digest = hashlib.sha256()
        with open(temp, "wb") as out:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != spec.sha256:
            raise OSError(f"{origin}: sha256 {digest.hexdigest()}, expected {spec.sha256}")

    return atomic_write(target, write)


def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _from_archive(body: bytes, wanted: dict[str, CensusFile], directory: Path, origin: str) -> dict[str, Path]:
    """Finds the wanted files (gzipped or not, at any depth) in a zip or tar(.gz) archive,
    descending into archives inside it."""
    installed: dict[str, Path] = {}

    def visit(name: str, open_member: Callable[[], Any]) -> None:  # () -> a readable binary file
        base = name.rsplit("/", 1)[-1]
        for role, spec in wanted.items():
            if role in installed:
                continue
            if base == spec.plain_name:
                with open_member() as member:
                    installed[role] = _install(member, directory / spec.plain_name, spec, f"{origin}:{name}")
            elif base == spec.name:
                with open_member() as member, gzip.open(member, "rb") as text:
                    installed[role] = _install(
                        cast(IO[bytes], text), directory / spec.plain_name, spec, f"{origin}:{name}"
                    )
        if base.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
            with open_member() as member:
                installed.update(
                    _from_archive(
                        member.read(),
                        {r: s for r, s in wanted.items() if r not in installed},
                        directory,
                        f"{origin}:{name}",
                    )
                )

    if zipfile.is_zipfile(io.BytesIO(body)):
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    visit(info.filename, functools.partial(archive.open, info))
    else:
        try:
            tar = tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
        except tarfile.TarError as error:
            raise OSError(f"{origin}: neither a zip nor a tar archive ({error})") from None
        with tar:
            for member in tar.getmembers():
                if member.isfile():
                    visit(member.name, functools.partial(tar.extractfile, member))
    return installed


def download_census_files(directory: str | Path, roles: Iterable[str] = ("train", "test")) -> dict[str, Path]:
    """Downloads the census files for `roles` ("train", "test") from UCI into `directory`,
    checking their sha256, written atomically; returns {role: path}.

    Tries the gzipped files of UCI's old site first, then the current site's zip. Raises OSError
    (with every source's reason) when some file could not be had from any source.
    """
    directory = Path(directory)
    wanted = {role: CENSUS_FILES[role] for role in roles}
    installed: dict[str, Path] = {}
    reasons: list[str] = []
    for role, spec in wanted.items():
        url = CENSUS_FILE_URL.format(name=spec.name)
        try:
            body = _fetch(url)
            with gzip.open(io.BytesIO(body), "rb") as text:
                _check_stream(cast(IO[bytes], text), spec, url)
            # Kept gzipped (9 MB instead of 156 MB); the loader reads either form.
            installed[role] = atomic_write(directory / spec.name, functools.partial(_write_bytes, data=body))
        except (OSError, EOFError) as error:
            reasons.append(f"{url}: {error}")
    left = {role: spec for role, spec in wanted.items() if role not in installed}
    if left:
        try:
            installed.update(_from_archive(_fetch(CENSUS_ARCHIVE_URL), left, directory, CENSUS_ARCHIVE_URL))
        except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as error:
            reasons.append(f"{CENSUS_ARCHIVE_URL}: {error}")
    not_found = [wanted[role].name for role in wanted if role not in installed]
    if not_found:
        raise OSError(f"could not get {', '.join(not_found)} ({'; '.join(reasons) or 'not in the archive'})")
    return installed


# -- parsing --------------------------------------------------------------------------------------
def _read_csv(path: Path, dtypes: dict[str, str]) -> pd.DataFrame:
    with warnings.catch_warnings():
        # With index_col=False pandas only warns about rows with extra fields; make that an error.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(
            path,
            header=None,
            names=list(CENSUS_COLUMNS),
            index_col=False,
            # The fields are separated by ", ": skipinitialspace drops the space after each comma
            # while keeping the fast C parser (a regex separator would need the slow one).
            sep=",",
            skipinitialspace=True,
            engine="c",
            # "NA" is a real category of hisp_origin (Not Available is not missing); only "?" is.
            keep_default_na=False,
            na_values=[MISSING_MARK],
            dtype=dtypes,
            compression="gzip" if _is_gzip(path) else None,
            encoding="utf-8",
        )


def _first_bad_row(path: Path) -> tuple[int, int] | None:
    """(row, field count) of the first non-blank row without 42 fields, or None."""
    with _open_text_bytes(path) as handle:
        for row, line in enumerate(handle, start=1):
            if line.strip() and line.count(b",") + 1 != len(CENSUS_COLUMNS):
                return row, line.count(b",") + 1
    return None


def _raise_for_bad_row(path: Path) -> None:
    bad = _first_bad_row(path)
    if bad is not None:
        row, fields = bad
        raise MmoeError(
            f"{path}: row {row} has {fields} fields, expected {len(CENSUS_COLUMNS)} separated by ', ' "
            f"(a census-income file: 41 attributes and the income label)"
        )


def _strip_categories(values: pd.Series) -> pd.Series:
    """Category names as text without surrounding spaces (a few UCI values end in a space)."""
    names = values.cat.categories
    # pandas may turn all-digit categories (industry codes, year) into integers; they are text here.
    stripped = names.astype(str).str.strip()
    if names.dtype == stripped.dtype and (stripped == names).all():
        return values
    if stripped.is_unique:
        return values.cat.rename_categories(stripped)
    return values.astype("object").str.strip().astype("category")


def read_census_file(path: str | Path) -> pd.DataFrame:
    """One census file (gzipped or not) as a DataFrame with the 42 `CENSUS_COLUMNS`.

    Numeric columns (`NUMERIC_COLUMNS` and instance_weight) are float64; the others are
    categorical with the text as written, spaces around it removed. "?" is missing (NaN); "NA"
    stays the category "NA". The row index is the 0-based row of the file.

    Raises MmoeError naming the file and row for a row without 42 fields, or naming the row and
    column for a numeric field that is not a number.
    """
    path = Path(path)
    dtypes = {column: ("float64" if column in _FLOAT_COLUMNS else "category") for column in CENSUS_COLUMNS}
    try:
        frame = _read_csv(path, dtypes)
    except UnicodeDecodeError as error:
        raise MmoeError(f"{path}: not UTF-8 text ({error}); expected a census-income file") from None
    except (ValueError, pd.errors.ParserWarning) as error:  # ParserError is a ValueError
        _raise_for_bad_row(path)
        # Right field counts, so a numeric column holds text: read it as text to name the row.
        text = _read_csv(path, dict.fromkeys(CENSUS_COLUMNS, "str"))
        for column in sorted(_FLOAT_COLUMNS, key=CENSUS_COLUMNS.index):
            to_numeric_column(text[column], str(path), column)
        raise MmoeError(f"{path}: cannot be read as a census-income file ({error})") from None
    except (OSError, EOFError) as error:  # missing, unreadable, or a damaged gzip file
        raise MmoeError(f"{path}: cannot be read ({error}); expected a census-income file, gzipped or not") from None
    # A row with too few fields comes back padded with empty strings, so its label is empty.
    if frame["income"].isna().any() or (frame["income"] == "").any():
        _raise_for_bad_row(path)
    for column in CENSUS_COLUMNS:
        if column not in _FLOAT_COLUMNS:
            frame[column] = _strip_categories(frame[column])
    return frame


def _cache_path(spec: CensusFile) -> Path:
    # Keyed by the verified content and by the pandas version that wrote the pickle.
    return user_cache_dir() / "census-parsed" / f"{spec.sha256[:24]}-v{PARSE_VERSION}-pandas{pd.__version__}.pkl"


def _read_verified(path: Path, spec: CensusFile) -> pd.DataFrame:
    """read_census_file for a file already verified against `spec`, through a cache of the parsed
    frame in the user cache (parsing takes ~1.5 s; the cached frame loads in ~10 ms)."""
    cached = _cache_path(spec)
    try:
        frame = pd.read_pickle(cached)
        if isinstance(frame, pd.DataFrame) and tuple(frame.columns) == CENSUS_COLUMNS and len(frame) == spec.rows:
            return frame
    except Exception:
        pass
    frame = read_census_file(path)
    try:
        atomic_write(cached, lambda temp: frame.to_pickle(temp, compression=None))
    except OSError:
        pass  # An unwritable cache only costs a parse next time.
    return frame


# -- labels and splits ----------------------------------------------------------------------------
def _check_values(values: pd.Series, allowed: Iterable[str], source: str, column: str) -> None:
    allowed = set(allowed)
    bad = np.flatnonzero(~values.isin(allowed).to_numpy())
    if bad.size:
        position = int(bad[0])
        raise MmoeError(
            f"{source}: column {column!r}, row {position + 1}: value {values.iloc[position]!r} is not a "
            f"known census value; expected one of {', '.join(map(repr, sorted(allowed)))}"
        )


def census_labels(frame: pd.DataFrame, source: str = "census data") -> pd.DataFrame:
    """The three task labels of a parsed census frame as 0/1 int columns income, marital, education.

    income = label "50000+."; marital = "Never married"; education = "at least college"
    (`EDUCATION_COLLEGE`). Raises MmoeError naming the row for a value outside the known ones.
    """
    income, marital, education = frame["income"], frame["marital_stat"], frame["education"]
    _check_values(income, (INCOME_POSITIVE, INCOME_NEGATIVE), source, "income")
    _check_values(marital, MARITAL_VALUES, source, "marital_stat")
    _check_values(education, EDUCATION_COLLEGE + EDUCATION_BELOW_COLLEGE, source, "education")
    return pd.DataFrame(
        {
            "income": (income == INCOME_POSITIVE).to_numpy(dtype=np.int64),
            "marital": (marital == MARITAL_POSITIVE).to_numpy(dtype=np.int64),
            "education": education.isin(EDUCATION_COLLEGE).to_numpy(dtype=np.int64),
        },
        index=frame.index,
    )


def _group_tasks(group: int) -> tuple[str, str]:
    if isinstance(group, bool) or group not in CENSUS_GROUPS:
        raise MmoeError(
            f"census group {group!r} is not one of {', '.join(map(str, CENSUS_GROUPS))} "
            f"(1: income + marital, 2: education + marital)"
        )
    return CENSUS_GROUPS[group]


def _check_split_seed(split_seed: int) -> None:
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or split_seed < 0:
        raise MmoeError(f"census split_seed {split_seed!r}: expected a non-negative integer")


def split_test_rows(rows: int, split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the test file that form the validation and the test split.

    The positions are shuffled with numpy.random.default_rng(split_seed); the first rows // 2
    are validation, the rest test (99,762 rows -> 49,881 each).
    """
    _check_split_seed(split_seed)
    order = np.random.default_rng(int(split_seed)).permutation(rows)
    return order[: rows // 2], order[rows // 2 :]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def build_census_data(
    train_raw: pd.DataFrame,
    test_raw: pd.DataFrame,
    group: int,
    split_seed: int = 0,
    train_source: str = "census training file",
    test_source: str = "census test file",
) -> MultiTaskData:
    """A `MultiTaskData` from the parsed training and test files (see `read_census_file`).

    The test file's rows are shuffled with numpy.random.default_rng(split_seed) and cut in half:
    the first half is validation, the rest test. The encoder is fitted on the training rows only.
    """
    task_names = _group_tasks(group)
    _check_split_seed(split_seed)
    frames = {}
    for name, raw, source in (("train", train_raw, train_source), ("test", test_raw, test_source)):
        labels = census_labels(raw, source)
        frames[name] = pd.concat([raw[list(INPUT_COLUMNS)], labels[list(task_names)]], axis=1)
    validation_rows, test_rows = split_test_rows(len(frames["test"]), split_seed)
    parts = {
        "train": (frames["train"], train_source),
        "validation": (frames["test"].iloc[validation_rows], f"{test_source} (validation half)"),
        "test": (frames["test"].iloc[test_rows], f"{test_source} (test half)"),
    }
    first, second = (frames["train"][name].to_numpy(dtype=np.float64) for name in task_names)
    info = {
        "dataset": "census",
        "group": group,
        "split_seed": int(split_seed),
        "label_correlation": _pearson(first, second),
    }
    encoder = TableEncoder(NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, [Task(name, "binary") for name in task_names])
    return fit_encode(encoder, parts, info)


def load_census(
    group: int, data_dir: str | Path | None = None, split_seed: int = 0, download: bool = True
) -> MultiTaskData:
    """The census benchmark for task group 1 (income + marital) or 2 (education + marital).

    data_dir: the folder with the two files (default: $MMOE_DATA_DIR, then the user cache, where
    missing files are downloaded from UCI when `download` is true). split_seed: the shuffle of the
    test file before its 1:1 cut into validation and test.
    """
    # Bad arguments fail before any file work.
    _group_tasks(group)
    _check_split_seed(split_seed)
    paths = ensure_census_files(data_dir, download=download)
    train_raw = _read_verified(paths["train"], CENSUS_FILES["train"])
    test_raw = _read_verified(paths["test"], CENSUS_FILES["test"])
    return build_census_data(train_raw, test_raw, group, split_seed, str(paths["train"]), str(paths["test"]))


__all__ = [
    "CATEGORICAL_COLUMNS",
    "CENSUS_ARCHIVE_URL",
    "CENSUS_COLUMNS",
    "CENSUS_FILES",
    "CENSUS_FILE_URL",
    "CENSUS_GROUPS",
    "EDUCATION_BELOW_COLLEGE",
    "EDUCATION_COLLEGE",
    "EXCLUDED_COLUMNS",
    "INCOME_NEGATIVE",
    "INCOME_POSITIVE",
    "INPUT_COLUMNS",
    "MARITAL_POSITIVE",
    "MARITAL_VALUES",
    "NUMERIC_COLUMNS",
    "CensusFile",
    "build_census_data",
    "census_labels",
    "download_census_files",
    "ensure_census_files",
    "file_sha256",
    "load_census",
    "read_census_file",
    "resolve_data_dir",
    "split_test_rows",
    "user_cache_dir",
    "verify_census_file",
]
