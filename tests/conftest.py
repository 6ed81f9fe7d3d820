"""Shared fixtures and test data (`toy_data`: `from tests.conftest import toy_data`)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mmoe.data.dataset import MultiTaskData, Split
from mmoe.spec import InputSpec, Task

REPO = Path(__file__).resolve().parents[1]
CENSUS_NAMES = ("census-income.data.gz", "census-income.test.gz")


def toy_data(rows: int = 600, seed: int = 0, missing_second: float = 0.0) -> MultiTaskData:
    """A binary and a regression task that both depend on the inputs (learnable)."""
    generator = torch.Generator().manual_seed(seed)
    spec = InputSpec(("a", "b", "c"), ("colour",), (5,))
    numeric = torch.randn(rows, 3, generator=generator)
    categorical = torch.randint(0, 5, (rows, 1), generator=generator)
    signal = numeric[:, 0] - numeric[:, 1] + (categorical[:, 0] == 2).float()
    binary = (signal + 0.3 * torch.randn(rows, generator=generator) > 0).float()
    regression = 3.0 * signal + 10.0 + 0.1 * torch.randn(rows, generator=generator)
    labels = torch.stack([binary, regression], 1)
    labels[torch.rand(rows, generator=generator) < missing_second, 1] = math.nan
    split = Split(numeric, categorical, labels)
    cut1, cut2 = int(rows * 0.7), int(rows * 0.85)
    tasks = [
        Task("clicked", "binary"),
        Task("watch_time", "regression", float(regression.mean()), float(regression.std())),
    ]
    return MultiTaskData(
        tasks,
        spec,
        split.subset(torch.arange(cut1)),
        split.subset(torch.arange(cut1, cut2)),
        split.subset(torch.arange(cut2, rows)),
    )


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
