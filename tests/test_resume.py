"""Resuming training from a checkpoint ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmoe.cli import main
from mmoe.data.synthetic import SyntheticConfig, load_synthetic
from mmoe.errors import MmoeError
from mmoe.runs import fit
from mmoe.train.trainer import TrainConfig, load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_data():
    return load_synthetic(SyntheticConfig(correlation=0.5, rows=2000, dim=20))


def test_resume_api_equals_uninterrupted(tmp_path: Path, small_data) -> None:
    # patience 0: all four epochs run, so epochs 3-4 depend on the restored optimiser and shuffle state.
    full = fit(small_data, "mmoe", TrainConfig(epochs=4, patience=0, batch_size=64, seed=3), num_experts=3)
    checkpoint = tmp_path / "checkpoint.pt"
    fit(
        small_data,
        "mmoe",
        TrainConfig(epochs=2, patience=0, batch_size=64, seed=3),
        checkpoint_path=checkpoint,
        num_experts=3,
    )
    assert load_checkpoint(checkpoint)["epoch"] == 2
    resumed = fit(
        small_data,
        "mmoe",
        TrainConfig(epochs=4, patience=0, batch_size=64, seed=3),
        checkpoint_path=checkpoint,
        resume_from=checkpoint,
        num_experts=3,
    )
    assert resumed.metrics == full.metrics
    assert resumed.best_epoch == full.best_epoch and resumed.best_score == full.best_score
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in full.history]
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert load_checkpoint(checkpoint)["epoch"] == 4


def test_resume_keeps_early_stopping_state(tmp_path: Path, small_data) -> None:
    # A large learning rate makes the validation metric stop improving quickly, so patience matters.
    options = {"learning_rate": 0.05, "patience": 1, "batch_size": 64, "seed": 1}
    full = fit(small_data, "omoe", TrainConfig(epochs=8, **options))
    checkpoint = tmp_path / "checkpoint.pt"
    fit(small_data, "omoe", TrainConfig(epochs=1, **options), checkpoint_path=checkpoint)
    resumed = fit(small_data, "omoe", TrainConfig(epochs=8, **options), resume_from=checkpoint)
    assert len(resumed.history) == len(full.history) and resumed.stopped_early == full.stopped_early
    assert resumed.metrics == full.metrics


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path: Path, small_data) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    fit(small_data, "mmoe", TrainConfig(epochs=1), checkpoint_path=checkpoint, num_experts=3)
    with pytest.raises(MmoeError, match=r"different run .*num_experts: 3 in the checkpoint, 4 now"):
        fit(small_data, "mmoe", TrainConfig(epochs=2), resume_from=checkpoint, num_experts=4)
    with pytest.raises(MmoeError, match=r"model: 'mmoe' in the checkpoint, 'omoe' now"):
        fit(small_data, "omoe", TrainConfig(epochs=2), resume_from=checkpoint, num_experts=3)
    with pytest.raises(MmoeError, match=r"training.learning_rate"):
        fit(small_data, "mmoe", TrainConfig(epochs=2, learning_rate=0.01), resume_from=checkpoint, num_experts=3)


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", b"PK\x03\x04 truncated zip"])
def test_damaged_checkpoint_is_a_one_line_error(tmp_path: Path, small_data, content: bytes) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(content)
    with pytest.raises(MmoeError, match="checkpoint.pt: not a readable checkpoint") as error:
        fit(small_data, "mmoe", TrainConfig(epochs=2), resume_from=checkpoint)
    assert "\n" not in str(error.value)


def test_truncated_checkpoint_is_a_one_line_error(tmp_path: Path, small_data) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    fit(small_data, "mmoe", TrainConfig(epochs=1), checkpoint_path=checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(MmoeError, match="not a readable checkpoint"):
        load_checkpoint(checkpoint)


def test_cli_resume_without_a_checkpoint(tmp_path: Path, capsys) -> None:
    code = main(["train", "--dataset", "synthetic", "--rows", "300", "--out", str(tmp_path / "run"), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "checkpoint.pt: no checkpoint to resume from" in err


def test_cli_resume_with_another_model(tmp_path: Path, capsys) -> None:
    common = [
        "train",
        "--dataset",
        "synthetic",
        "--rows",
        "400",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
        "-q",
    ]
    assert main([*common, "--model", "omoe"]) == 0
    capsys.readouterr()
    assert main([*common, "--model", "mmoe", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different run" in err and "'omoe' in the checkpoint" in err


def test_cli_resume_reads_the_checkpoint_once(tmp_path: Path, capsys, monkeypatch) -> None:
    # The CLI reads it to fail before the data; training goes on from that state, not a second read.
    from mmoe.train import trainer

    common = ["train", "--dataset", "synthetic", "--rows", "400", "--threads", "1", "--out", str(tmp_path), "-q"]
    assert main([*common, "--epochs", "1"]) == 0
    reads: list[Path] = []

    def counting_load(path):
        reads.append(Path(path))
        return load_checkpoint(path)

    monkeypatch.setattr(trainer, "load_checkpoint", counting_load)
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    capsys.readouterr()
    assert reads == [tmp_path / "checkpoint.pt"]
    assert len(json.loads((tmp_path / "history.json").read_text())) == 2
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


def test_resume_state_is_checked_as_the_file_is(tmp_path: Path, small_data) -> None:
    # A library caller may pass the checkpoint it has read; it is refused as the file would be.
    checkpoint = tmp_path / "checkpoint.pt"
    fit(small_data, "mmoe", TrainConfig(epochs=1), checkpoint_path=checkpoint, num_experts=3)
    saved = load_checkpoint(checkpoint)
    with pytest.raises(MmoeError, match=r"checkpoint.pt: the checkpoint belongs to a different run .*num_experts"):
        fit(small_data, "mmoe", TrainConfig(epochs=2), resume_from=checkpoint, resume_state=saved, num_experts=4)
    with pytest.raises(ValueError, match="pass resume_from too"):
        fit(small_data, "mmoe", TrainConfig(epochs=2), resume_state=saved, num_experts=3)
    resumed = fit(small_data, "mmoe", TrainConfig(epochs=2), resume_from=checkpoint, resume_state=saved, num_experts=3)
    assert [entry["epoch"] for entry in resumed.history] == [1, 2]


def _train_arguments(out: Path) -> list[str]:
    # One thread: the same arithmetic in every process, and no fight for cores.
    return [
        "train",
        "--dataset",
        "synthetic",
        "--rows",
        "20000",
        "--epochs",
        "6",
        "--patience",
        "0",
        "--batch-size",
        "64",
        "--threads",
        "1",
        "--seed",
        "5",
        "--out",
        str(out),
        "--quiet",
    ]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path, capsys) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "mmoe"]
    killed_out, uninterrupted_out = tmp_path / "killed", tmp_path / "uninterrupted"
    killed = subprocess.Popen(
        [*command, *_train_arguments(killed_out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    checkpoint = killed_out / "checkpoint.pt"
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # into the next epoch's mini-batches (an epoch takes about 0.2 s)
    assert killed.poll() is None, "training ended before it could be killed: " + killed.stderr.read().decode()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (killed_out / "metrics.json").exists()
    epochs_done = load_checkpoint(checkpoint)["epoch"]
    assert 1 <= epochs_done < 6

    resumed = subprocess.Popen(
        [*command, *_train_arguments(killed_out), "--resume"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert main(_train_arguments(uninterrupted_out)) == 0  # meanwhile, the uninterrupted run in this process
    capsys.readouterr()
    _, resumed_err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, resumed_err
    assert f"resuming from {checkpoint} after epoch {epochs_done}" in resumed_err

    expected = json.loads((uninterrupted_out / "metrics.json").read_text())
    got = json.loads((killed_out / "metrics.json").read_text())
    assert got.keys() == expected.keys()
    for split in expected:
        assert got[split].keys() == expected[split].keys()
        for task in expected[split]:
            for metric, value in expected[split][task].items():
                assert got[split][task][metric] == pytest.approx(value, abs=1e-6), (split, task, metric)
    history = json.loads((killed_out / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("sparse_optimizer", ["lazy-adam", "row-adagrad"])
def test_resume_with_an_embedded_column_equals_uninterrupted(tmp_path: Path, sparse_optimizer: str) -> None:
    """The row-sparse optimiser's state (per-row moments or accumulators) is in the checkpoint."""
    from tests.test_embeddings import embedded_data

    data = embedded_data(rows=800, users=300)
    options = {"patience": 0, "batch_size": 64, "seed": 3, "sparse_optimizer": sparse_optimizer}
    full = fit(data, "mmoe", TrainConfig(epochs=4, **options), num_experts=3)
    checkpoint = tmp_path / "checkpoint.pt"
    fit(data, "mmoe", TrainConfig(epochs=2, **options), checkpoint_path=checkpoint, num_experts=3)
    saved = load_checkpoint(checkpoint)
    assert saved["sparse_optimizer"]["state"]  # the tables' optimiser state, beside Adam's
    resumed = fit(
        data,
        "mmoe",
        TrainConfig(epochs=4, **options),
        checkpoint_path=checkpoint,
        resume_from=checkpoint,
        num_experts=3,
    )
    assert resumed.metrics == full.metrics
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    # Resuming with another sparse optimiser is another run.
    with pytest.raises(MmoeError, match="sparse_optimizer"):
        fit(data, "mmoe", TrainConfig(epochs=4, **{**options, "sparse_optimizer": "dense"}), resume_from=checkpoint)


def test_a_checkpoint_without_embeddings_has_no_sparse_optimizer_state(tmp_path: Path, small_data) -> None:
    """Runs without embedded columns write the checkpoint they always wrote."""
    checkpoint = tmp_path / "checkpoint.pt"
    fit(small_data, "mmoe", TrainConfig(epochs=1, batch_size=256), checkpoint_path=checkpoint, num_experts=2)
    saved = load_checkpoint(checkpoint)
    assert "sparse_optimizer" not in saved and "sparse_optimizer" not in saved["identity"]["training"]
