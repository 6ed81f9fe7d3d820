"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CENSUS_NAMES = ("census-income.data.gz", "census-income.test.gz")


@pytest.fixture(scope="session")
def census_dir() -> Path:
    """The folder with the real census files: $MMOE_DATA_DIR, else ../shared/data; skips the test
    when the files (gzipped or not) are not there."""
    directory = Path(os.environ.get("MMOE_DATA_DIR") or REPO.parent / "shared" / "data")
    if all((directory / name).is_file() or (directory / name.removesuffix(".gz")).is_file() for name in CENSUS_NAMES):
        return directory
    pytest.skip("census data not found: set MMOE_DATA_DIR or put the files in ../shared/data")


@pytest.fixture(autouse=True)
def _no_census_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the network: a census download fails as it would offline."""
    from mmoe.data import census

    def offline(directory: object, roles: object = None) -> dict[str, Path]:
        raise OSError("downloads are disabled in tests")

    monkeypatch.setattr(census, "download_census_files", offline)


@pytest.fixture()
def one_torch_thread() -> Iterator[None]:
    """Tiny models train far faster on one thread (and fight no other process for cores); the
    previous thread count comes back afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
