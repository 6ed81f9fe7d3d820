"""Data-parallel training on torch.distributed: what one process needs to know about the others.

`torchrun --nproc-per-node N -m mmoe train ...` (or `mmoe train --distributed N ...`, which starts
the same N processes through torchrun's own launcher) runs N copies of `mmoe train`. Each joins
the process group (`setup`: gloo on CPU, NCCL with one GPU per process when CUDA is present), and
the trainer asks `current()` for this process's `DataParallel`; with no process group it gets the
single-process one, whose every method is the identity, so one process trains exactly as before.

The equivalence contract: R processes with `--batch-size B` train the same model as one process
with `--batch-size B` and the same seed and data, up to floating-point round-off.
  * B is the global batch, the rows of one optimiser step over all ranks together (not per rank).
  * Every rank draws the same permutation from the same seeded generator, reads the same global
    batches, and trains on its contiguous share of each: rows [b·r/R, b·(r+1)/R) of a batch of b
    rows (the last batch of an epoch may be smaller, and a share may then be empty). The union of
    the shares of a step is exactly the one-process batch.
  * Each task's loss is a mean over the batch's rows that have that label. A rank divides its
    share's sum by the count over the whole global batch (every rank holds the whole batch, so it
    counts locally, with no communication), and DDP sums the ranks' gradients instead of averaging
    them (`_sum_gradients`): the sum is the gradient of the global batch's loss, however unevenly
    the rows or the missing labels fall. The model's own penalty (L2-Constrained) is added on rank
    0 only, so it too counts once. A model's batch-dependent term (AITM's calibrator, DSelect-k's
    entropy: `MultiTaskModel.forward_with_aux`) is a sum over the rank's share, which the trainer
    divides by the global batch's rows as the task losses are: the ranks' terms add up to one
    process's per-row mean (an empty share adds 0).
  * The same fused Adam step runs on every rank with the same summed gradients, so the weights
    stay identical on every rank. What differs from one process is only the order of the sums.
  * Embedding tables trained by a row-sparse optimiser (`TrainConfig.sparse_optimizer`) have
    sparse gradients, which DDP's buckets do not take: DDP ignores those tables, and after the
    backward `sum_sparse_gradients` gathers every rank's (rows, values) and sums them, so each
    rank's table gradient is the global batch's, as for the other weights, and the same
    row-sparse step runs on every rank. The traffic is the rows the batch touched, not the table.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from mmoe.data.dataset import Split
from mmoe.errors import MmoeError

T = TypeVar("T")


class DataParallel:
    """This process's place among the ranks: rank, world size, and the device it trains on.

    `DataParallel()` is a single process with no process group: `wrap`, `share`, `sum_over_ranks`,
    `same_on_all` and `from_first` then change nothing, which keeps the one-process path of the
    trainer exactly what it was."""

    def __init__(
        self, rank: int = 0, world_size: int = 1, device: torch.device | None = None, grouped: bool = False
    ) -> None:
        self.rank, self.world_size, self.grouped = rank, world_size, grouped
        self.device: torch.device = device if device is not None else torch.device("cpu")

    @property
    def is_first(self) -> bool:
        """Rank 0: the one that writes the run's files and adds the model's penalty."""
        return self.rank == 0

    def describe(self) -> str:
        """E.g. "2 processes (gloo, cpu)", for the log."""
        backend = dist.get_backend() if self.grouped else "none"
        return f"{self.world_size} processes ({backend}, {self.device})"

    def wrap(self, model: nn.Module, ignored: Sequence[str] = (), ddp: bool = True) -> nn.Module:
        """The module the training loop calls: `model` itself in one process; otherwise `model`
        moved to this rank's device inside DistributedDataParallel, its gradients summed over the
        ranks rather than averaged (see the module docstring). ignored: names of parameters DDP
        leaves alone (the row-sparse tables, summed by `sum_sparse_gradients`). ddp=False: the
        model alone, with rank 0's weights, for a loss weighting that sums the gradients itself
        (`LossWeighting.sums_over_ranks`: the per-task gradients are summed before combined)."""
        if not self.grouped:
            return model
        model.to(self.device)
        if not ddp:
            with torch.no_grad():
                for tensor in [*model.parameters(), *model.buffers()]:
                    dist.broadcast(tensor, src=0)
            return model
        if ignored:
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, list(ignored))
        # static_graph: every step uses the same parameters, but not always all of them (the
        # category weights of a table without categorical columns); DDP learns which in the first
        # step instead of searching the graph on every step (find_unused_parameters).
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device] if self.device.type == "cuda" else None, static_graph=True
        )
        wrapped.register_comm_hook(None, _sum_gradients)
        return wrapped

    def share(self, batch: Split) -> tuple[Split, torch.Tensor | None]:
        """This rank's contiguous share of a global batch (on this rank's device), and the global
        batch's number of labelled rows per task [K] that each task's mean must divide by.
        In one process: the batch itself and None (the loss counts the batch's own labels)."""
        if not self.grouped:
            return batch, None
        rows = len(batch)
        start, end = rows * self.rank // self.world_size, rows * (self.rank + 1) // self.world_size
        label_counts = (~torch.isnan(batch.labels)).sum(0).to(self.device)
        part = Split(batch.numeric[start:end], batch.categorical[start:end], batch.labels[start:end])
        return part.to(self.device), label_counts

    def sum_sparse_gradients(self, tables: Sequence[torch.Tensor]) -> None:
        """Each table's sparse gradient replaced by the sum of every rank's (in one process:
        nothing). Every rank sends its (rows, values); ranks with fewer rows pad to the most."""
        if not self.grouped or self.world_size == 1:
            return
        for table in tables:
            grad = table.grad
            if grad is not None and not grad.is_sparse:
                # A dense term joined it (L2-Constrained's penalty, on rank 0 only): sent as rows
                # too, so that every rank runs the same collectives.
                grad = grad.to_sparse(1)
            if grad is None:
                grad = torch.sparse_coo_tensor(
                    torch.zeros(1, 0, dtype=torch.long), torch.zeros(0, *table.shape[1:]), table.shape
                )
            grad = grad.coalesce().to(self.device)
            rows, values = grad.indices()[0], grad.values()
            counts = [torch.zeros(1, dtype=torch.long, device=self.device) for _ in range(self.world_size)]
            dist.all_gather(counts, torch.tensor([len(rows)], device=self.device))
            most = int(max(int(c) for c in counts))
            padded_rows = torch.zeros(most, dtype=torch.long, device=self.device)
            padded_rows[: len(rows)] = rows
            padded_values = values.new_zeros(most, *values.shape[1:])
            padded_values[: len(rows)] = values
            all_rows = [torch.empty_like(padded_rows) for _ in range(self.world_size)]
            all_values = [torch.empty_like(padded_values) for _ in range(self.world_size)]
            dist.all_gather(all_rows, padded_rows)
            dist.all_gather(all_values, padded_values)
            kept = [slice(0, int(count)) for count in counts]
            summed = torch.sparse_coo_tensor(
                torch.cat([r[k] for r, k in zip(all_rows, kept)]).unsqueeze(0),
                torch.cat([v[k] for v, k in zip(all_values, kept)]),
                table.shape,
            )
            table.grad = summed.coalesce()

    def sum_over_ranks(self, loss_sum: float, task_loss_sum: torch.Tensor) -> tuple[float, torch.Tensor]:
        """An epoch's training loss totals summed over the ranks. Each rank's loss is its share of
        the global batch's loss, so the sum is what one process would have reported. One
        all_reduce per epoch, not per step."""
        if not self.grouped:
            return loss_sum, task_loss_sum
        totals = torch.cat(
            [
                torch.tensor([loss_sum], dtype=torch.float64, device=self.device),
                task_loss_sum.to(self.device, torch.float64),
            ]
        )
        dist.all_reduce(totals)
        return float(totals[0]), totals[1:].to(task_loss_sum.device, task_loss_sum.dtype)

    def same_on_all(self, value: float) -> float:
        """Rank 0's value on every rank. Every rank evaluates the full validation set with the same
        weights and so gets the same score; taking rank 0's makes the early-stopping decision
        common even if a reduction were ever to leave the ranks' weights one rounding apart, which
        would otherwise leave one rank training while another waits for it forever."""
        if not self.grouped or self.world_size == 1:
            return value
        box = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(box, src=0)
        return float(box[0])

    def from_first(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` computed on rank 0 and sent to every rank; an error there is raised on
        every rank. For what only rank 0 may read: the checkpoint in --out (rank 0 reads and writes
        --out, which need not be visible from other nodes)."""
        if not self.grouped or self.world_size == 1:
            return function(*args)
        box: list[Any] = [None]
        failure: BaseException | None = None
        if self.is_first:
            try:
                box = [("value", function(*args))]
            except Exception as error:  # every rank must learn of it, or the others wait forever
                failure, box = (
                    error,
                    [
                        (
                            "error",
                            str(error)
                            if isinstance(error, MmoeError)
                            else f"rank 0 failed: {type(error).__name__}: {error}",
                        )
                    ],
                )
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        kind, payload = box[0]
        if failure is not None:
            raise failure
        if kind == "error":
            raise MmoeError(payload)
        return payload


def _sum_gradients(group, bucket):
    """DDP communication hook: all_reduce(SUM) of a gradient bucket, without DDP's division by the
    world size, because each rank's loss is already its share of the global batch's loss.
    (Not annotated: DDP checks the annotations against the classes themselves, and this module's
    `from __future__ import annotations` turns them into strings.)"""
    return (
        dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future().then(lambda future: future.value()[0])
    )


SINGLE = DataParallel()


def current() -> DataParallel:
    """The DataParallel of this process: from the default process group when one is initialised
    (by `setup`, or by the caller of `mmoe.runs.fit` themselves), else a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    return DataParallel(dist.get_rank(), dist.get_world_size(), device, grouped=True)


def launched_by_torchrun() -> bool:
    """Whether torchrun (or a launcher that sets the same variables) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(processes: int | None = None) -> DataParallel:
    """Joins the process group that torchrun's environment describes (RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT, LOCAL_RANK): NCCL on this node's GPU number LOCAL_RANK when CUDA is
    present, gloo on CPU otherwise. Returns the single process when torchrun did not start this
    one. `processes`: the `--distributed` value, which must match torchrun's processes per node."""
    if not launched_by_torchrun():
        return SINGLE
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if processes is not None and processes != local_processes:
        raise MmoeError(
            f"--distributed {processes}: torchrun started {local_processes} processes on this node; "
            f"expected the same number (or leave --distributed out under torchrun)"
        )
    if not dist.is_available():
        raise MmoeError("distributed training: this torch build has no torch.distributed; expected a build with it")
    if not dist.is_initialized():
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            if local_rank >= torch.cuda.device_count():
                raise MmoeError(
                    f"distributed training: local rank {local_rank} has no GPU of its own "
                    f"({torch.cuda.device_count()} visible); expected at most one process per GPU"
                )
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
        atexit.register(_leave)
    return current()


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(processes: int, argv: Sequence[str]) -> int:
    """Runs `mmoe ARGV` in `processes` local processes through torchrun's own launcher: the same
    as `torchrun --standalone --nproc-per-node PROCESSES -m mmoe ARGV`. Returns 0, or 2 when a rank
    ended with an mmoe error (which it has printed); MmoeError when a rank died otherwise."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    import mmoe

    if processes < 1:
        raise MmoeError(f"--distributed must be at least 1 process, got {processes}")
    # The processes import this very mmoe, even when it is not installed (a source checkout).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(mmoe.__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={processes}", "-m", "mmoe", *argv]))
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()
        if failure.exitcode == 2:
            return 2
        raise MmoeError(
            f"distributed training: rank {rank} ended with exit status {failure.exitcode} "
            f"(its output is above); expected 0"
        ) from None
    return 0
