"""Training one model: a loop you can read top to bottom.

Adam on the per-task losses combined by the configured loss weighting (`mmoe.train.weighting`;
+ the model's own penalty and batch-dependent term, see `MultiTaskModel.forward_with_aux`),
shuffled mini-batches drawn from tensors already in memory (no
DataLoader: at these sizes its per-batch collation costs more than the model), early stopping on
the main task's validation metric with the best weights restored (`mmoe.train.progress`, shared
with population training), and a checkpoint written atomically after every epoch.

A checkpoint holds everything the loop's future depends on (weights, optimiser state, the
shuffle generator and torch's RNG, the epoch, the early-stopping state, the loss weighting's
state, the history) and an
identity (model, hyperparameters, data, training options), so that `train(..., resume_from=path)`
continues a killed run to the very same result as an uninterrupted one, and refuses a checkpoint
of a different run.

Under torchrun the same loop trains data-parallel: `mmoe.train.distributed` supplies the rank's
share of each global batch, the loss weighting that makes R ranks equal one process, and the
one-process identity otherwise.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmoe.data.dataset import MultiTaskData, RowSource, Split, Task
from mmoe.errors import MmoeError, TrainingDiverged
from mmoe.io import atomic_write, to_jsonable
from mmoe.models.base import MultiTaskModel, TrainingForward
from mmoe.models.layers import row_sparse_tables, use_sparse_gradients
from mmoe.train import distributed
from mmoe.train.allocator import keep_freed_memory
from mmoe.train.callbacks import Callback, as_callbacks, reporting_to
from mmoe.train.loss import MultiTaskLoss, resolve_loss_options
from mmoe.train.metrics import Metrics, SplitMetrics, evaluate_predictions, main_score, to_predictions
from mmoe.train.optim import (
    DEFAULT_SPARSE_OPTIMIZER,
    SPARSE_OPTIMIZERS,
    RowSparseOptimizer,
    make_row_sparse_optimizer,
)
from mmoe.train.progress import EarlyStopping, HistoryEntry, warn_dead_tasks
from mmoe.train.schedule import LR_SCHEDULES, WEIGHT_DECAY_MODES, LearningRateSchedule, make_dense_optimizer
from mmoe.train.weighting import check_weighting_options, implied_weighting, make_weighting, resolve_weighting


@dataclass
class TrainConfig:
    """How to train. epochs is the maximum; patience is how many epochs without a better main-task
    validation metric end training early (0: never stop early). restore_best: end with the weights
    of the best validation epoch (else the last epoch's).

    weighting: how the per-task losses make one update, a name in `mmoe.train.weighting.WEIGHTINGS`
    ("ew": equal weights; "fixed": the constant `task_weights`). task_weights select "fixed": with
    weighting "ew" (the default) they turn it into "fixed" here, as `--task-weights` alone always
    did; "fixed" without task_weights, or task_weights with a method that takes none, is an error.
    weighting_options: the method's own options ({"alpha": 1.5}; `mmoe weightings -v` lists them).

    sparse_optimizer: how the embedding tables of embedded categorical columns are trained, a name
    in `mmoe.train.optim.SPARSE_OPTIMIZERS`: "lazy-adam" (the default) or "row-adagrad" update
    only the rows a batch looked up, from a row-sparse gradient; "dense" trains them with the
    same Adam as every other weight (see `mmoe.train.optim` for how they differ). Every other
    weight is always trained by Adam; without embedded columns the option changes nothing.

    entire_space: train conditional tasks (`Task.given`) the ESMM way, each on its joint event
    over every row (`mmoe.train.loss.MultiTaskLoss`), instead of on the rows where its condition
    holds; None (the default) takes the model's default: on for esmm, off for the others.
    Without a conditional task it changes nothing (True is then an error).
    counterfactual_weight: with entire-space training, the weight λ of ESCM²'s inverse-propensity
    weighted term added to each conditional task's loss (`MultiTaskLoss`; 0, the default: ESMM's
    loss alone).

    lr_schedule, warmup_epochs: the learning rate over the steps (`mmoe.train.schedule`):
    "constant" (the default), "cosine" or "linear" decay to 0 at the last of `epochs`' steps,
    after a linear warm-up over the first warmup_epochs epochs (a fraction allowed; 0: none).
    weight_decay_mode: "l2" (the default: Adam's, added to the gradient) or "decoupled" (AdamW).
    """

    learning_rate: float = 1e-3
    batch_size: int = 1024
    epochs: int = 20
    weight_decay: float = 0.0
    patience: int = 3
    task_weights: tuple[float, ...] | None = None
    seed: int = 0
    threads: int | None = None
    eval_batch_size: int = 65536
    restore_best: bool = True
    weighting: str = "ew"
    sparse_optimizer: str = DEFAULT_SPARSE_OPTIMIZER
    entire_space: bool | None = None
    weighting_options: dict[str, float] | None = None
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    weight_decay_mode: str = "l2"
    counterfactual_weight: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            ("learning_rate", self.learning_rate > 0 and math.isfinite(self.learning_rate), "a positive number"),
            ("batch_size", self.batch_size >= 1, "a positive integer"),
            ("epochs", self.epochs >= 1, "at least 1"),
            (
                "weight_decay",
                self.weight_decay >= 0 and math.isfinite(self.weight_decay),
                "a finite number, zero or more",
            ),
            ("patience", self.patience >= 0, "zero or more"),
            ("threads", self.threads is None or self.threads >= 1, "a positive integer"),
            ("eval_batch_size", self.eval_batch_size >= 1, "a positive integer"),
            (
                "counterfactual_weight",
                self.counterfactual_weight >= 0 and math.isfinite(self.counterfactual_weight),
                "a finite number, zero or more",
            ),
            (
                "warmup_epochs",
                self.warmup_epochs >= 0 and math.isfinite(self.warmup_epochs),
                "a finite number of epochs, zero or more",
            ),
        ]
        for option, ok, expected in checks:
            if not ok:
                raise MmoeError(f"training option {option} must be {expected}, got {getattr(self, option)!r}")
        if self.task_weights is not None:
            self.task_weights = tuple(float(w) for w in self.task_weights)
            if any(w < 0 or not math.isfinite(w) for w in self.task_weights):
                raise MmoeError(f"training option task_weights must be non-negative numbers, got {self.task_weights}")
        self.weighting = resolve_weighting(self.weighting, self.task_weights)
        self.weighting_options = check_weighting_options(self.weighting, self.weighting_options)
        if self.sparse_optimizer not in SPARSE_OPTIMIZERS:
            raise MmoeError(
                f"training option sparse_optimizer {self.sparse_optimizer!r} is unknown; expected one of: "
                f"{', '.join(SPARSE_OPTIMIZERS)}"
            )
        for option, value, allowed in (
            ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
            ("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES),
        ):
            if value not in allowed:
                raise MmoeError(f"training option {option} {value!r} is unknown; expected one of: {', '.join(allowed)}")
        if self.entire_space is not None and not isinstance(self.entire_space, bool):
            raise MmoeError(
                f"training option entire_space must be True, False or None (the model's default), "
                f"got {self.entire_space!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Every option, JSON-able. `weighting` only where task_weights do not already say it
        ("ew" without them, "fixed" with them are left out), and `sparse_optimizer` only when it
        is not the default: such a dict, the run's config.json and its checkpoint identity are
        those of the releases before the options, so their checkpoints resume and their config
        files load; a dict without them means the same."""
        data = asdict(self)
        data["task_weights"] = list(self.task_weights) if self.task_weights is not None else None
        if self.weighting == implied_weighting(self.task_weights):
            del data["weighting"]
        if self.sparse_optimizer == DEFAULT_SPARSE_OPTIMIZER:
            del data["sparse_optimizer"]
        if self.entire_space is None:  # the model's default, as before the option
            del data["entire_space"]
        if self.weighting_options is None:
            del data["weighting_options"]
        # Only when set (mmoe.train.schedule; ESCM²'s term).
        for option in ("lr_schedule", "warmup_epochs", "weight_decay_mode", "counterfactual_weight"):
            if data[option] == TrainConfig.__dataclass_fields__[option].default:
                del data[option]
        return data


@dataclass
class TrainResult:
    """What training produced. history: one dict per epoch, `HistoryEntry.to_dict()` (epoch,
    train_loss, per-task train losses, validation metrics, seconds, main_metric, improved).
    metrics: {split: {task: {metric: value}}} of the restored best model."""

    model: MultiTaskModel
    history: list[dict[str, Any]]
    best_epoch: int
    best_score: float
    train_seconds: float
    samples_per_second: float
    metrics: SplitMetrics = field(default_factory=dict)
    stopped_early: bool = False


@torch.inference_mode()
def predict_outputs(model: MultiTaskModel, rows: Split | RowSource, batch_size: int = 65536) -> torch.Tensor:
    """Raw model outputs [N, K] (logits / standardised values) of rows in memory or read batch by
    batch, computed in chunks of at most `batch_size` rows."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks = [
        model(
            part.numeric[start : start + batch_size].to(device), part.categorical[start : start + batch_size].to(device)
        )
        .float()
        .cpu()
        for part in _parts(rows)
        for start in range(0, len(part), batch_size)
    ]
    model.train(was_training)
    return torch.cat(chunks) if chunks else torch.zeros(0, model.num_tasks)


def _parts(rows: Split | RowSource) -> Iterator[Split]:
    return iter((rows,)) if isinstance(rows, Split) else rows.batches()


def evaluate(model: MultiTaskModel, tasks: list[Task], split: Split, batch_size: int = 65536) -> Metrics:
    """{task: metrics} of the model on one split."""
    return evaluate_predictions(tasks, to_predictions(tasks, predict_outputs(model, split, batch_size)), split.labels)


def evaluate_source(
    model: MultiTaskModel, tasks: list[Task], rows: Split | RowSource, batch_size: int = 65536
) -> Metrics:
    """{task: metrics} on rows in memory or read batch by batch (one pass: the predictions and
    labels of every row stay in memory until the metrics, an exact AUC, are computed)."""
    if isinstance(rows, Split):
        return evaluate(model, tasks, rows, batch_size)
    outputs, labels = [], []
    for batch in rows.batches():
        outputs.append(predict_outputs(model, batch, batch_size))
        labels.append(batch.labels.cpu())
    if not outputs:
        raise MmoeError("no rows to evaluate on")
    return evaluate_predictions(tasks, to_predictions(tasks, torch.cat(outputs)), torch.cat(labels))


def evaluate_data(model: MultiTaskModel, data: MultiTaskData, batch_size: int = 65536) -> SplitMetrics:
    """{split: {task: metrics}} on every split of `data.metric_splits()`: the metrics training ends with."""
    return {name: evaluate_source(model, data.tasks, rows, batch_size) for name, rows in data.metric_splits().items()}


def train(
    model: MultiTaskModel,
    data: MultiTaskData,
    config: TrainConfig,
    checkpoint_path: str | Path | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | Callback | None = None,
    resume_from: str | Path | None = None,
    data_identity: Any = None,
    resume_state: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] | Callback | None = None,
) -> TrainResult:
    """Trains `model` on data.train, early-stopping on data.validation; returns the best model
    (restored) with its metrics on every split. `callbacks` (see `mmoe.train.callbacks`) hear of
    each epoch's `HistoryEntry` and of the end of training; `on_epoch`, a function, receives each
    epoch's history entry as a dict (the CLI uses it for progress). A resumed run reports only the
    epochs it trains; under torch.distributed, only rank 0 calls them.

    resume_from: a checkpoint written by an earlier call (see `save_checkpoint`); training goes on
    after its epoch, and ends as the uninterrupted run would have. MmoeError when the file is
    missing, damaged, or of a different run (model, hyperparameters, tasks, inputs, training
    options other than epochs/threads/eval_batch_size, or `data_identity`).
    data_identity: any JSON-able description of the data (the CLI passes its dataset spec); stored
    in the checkpoint and compared on resume.
    resume_state: `resume_from` already read by `load_checkpoint` (the same on every rank), so that
    a caller that has read it (the CLI, to fail before reading the data) need not read it again;
    it is checked as the file would be. Without it, rank 0 reads `resume_from` and sends it to all.
    """
    tasks, main_task = data.tasks, data.tasks[0]
    if config.task_weights is not None and len(config.task_weights) != len(tasks):
        raise MmoeError(f"training option task_weights has {len(config.task_weights)} values for {len(tasks)} tasks")
    if len(data.train) == 0:
        raise MmoeError("the training split has no rows")
    if config.threads:
        torch.set_num_threads(config.threads)
    keep_freed_memory()
    # One process, unless torchrun started this one: then `network` is DDP, and each step trains
    # on this rank's share of the global batch (the contract is in mmoe.train.distributed).
    parallel = distributed.current()
    # Embedding tables with a row-sparse optimiser get sparse gradients (summed over the ranks
    # by `parallel`, outside DDP); every other weight is Adam's (see `mmoe.train.optim`).
    sparse_tables = row_sparse_tables(model) if SPARSE_OPTIMIZERS[config.sparse_optimizer] is not None else []
    tables = [table for _, table, _, _ in sparse_tables]
    use_sparse_gradients(model, bool(tables))
    weighting = make_weighting(config.weighting, len(tasks), config.task_weights, config.weighting_options)
    # The loop calls the model's forward_with_aux (outputs and its batch-dependent loss term, see
    # MultiTaskModel) through a module, so that DDP's hooks run; its parameters are named "model.*".
    # A gradient-balancing weighting sums the ranks' gradients itself: no DDP around the model.
    network = parallel.wrap(
        TrainingForward(model, tasks),
        ignored=[f"model.{name}" for name, *_ in sparse_tables],
        ddp=not weighting.sums_over_ranks,
    )
    device = next(model.parameters()).device
    loss_options = resolve_loss_options(config.entire_space, config.counterfactual_weight, model, tasks)
    loss_fn = MultiTaskLoss(tasks, *loss_options).to(device)
    parameters = list(model.parameters())
    dense_parameters: list[torch.Tensor] = [p for p in parameters if all(p is not table for table in tables)]
    # The weighting's own trained tensors (UW's log-variances, GradNorm's weights) join Adam's.
    dense_parameters += weighting.prepare(model, dict(model.named_parameters()), tables)
    optimizer = make_dense_optimizer(
        dense_parameters, config.learning_rate, config.weight_decay, config.weight_decay_mode
    )
    table_optimizer = make_row_sparse_optimizer(
        config.sparse_optimizer, tables, config.learning_rate, config.weight_decay
    )
    shuffle = torch.Generator().manual_seed(config.seed)
    train_split = data.train.to(device)  # a Split's tensors, or a streaming source's batches as they come
    rows = len(train_split)
    # The rate of each step (`mmoe.train.schedule`); the default's constant rate is left alone.
    schedule = LearningRateSchedule.for_training(config, rows)
    reporter = as_callbacks(callbacks, on_epoch) if parallel.is_first else as_callbacks()

    identity = run_identity(model, data, config, data_identity)
    history: list[dict[str, Any]] = []
    stopping = EarlyStopping(config.patience, config.epochs, copy.deepcopy(model.state_dict()))
    dead_tasks: set[str] = set()  # the tasks warned of (`warn_dead_tasks`)
    train_seconds, first_epoch = 0.0, 1
    if resume_state is not None and resume_from is None:
        raise ValueError("resume_state is the checkpoint read from resume_from; pass resume_from too")
    if resume_from is not None:
        saved = resume_state if resume_state is not None else parallel.from_first(load_checkpoint, resume_from)
        check_checkpoint_identity(resume_from, saved["identity"], identity)
        try:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if table_optimizer is not None:
                table_optimizer.load_state_dict(saved["sparse_optimizer"])
            shuffle.set_state(saved["shuffle_rng"])
            torch.set_rng_state(saved["torch_rng"])
            weighting.load_state_dict(saved.get("weighting", {}))  # absent before weightings had state
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise MmoeError(
                f"{resume_from}: the checkpoint's state does not fit this model "
                f"({type(error).__name__}: {_first_line(error)}); expected a checkpoint of the same run"
            ) from None
        history = list(saved["history"])
        stopping.load_state_dict(saved)
        train_seconds, first_epoch = saved["train_seconds"], saved["epoch"] + 1
    has_penalty = type(model).penalty is not MultiTaskModel.penalty  # else a zero: no op to add per step
    step = schedule.first_step(first_epoch)
    with reporting_to(reporter):
        for epoch in range(first_epoch, config.epochs + 1):
            if stopping.stopped_early:  # the checkpoint is of a run that had already stopped early
                break
            model.train()
            started = time.perf_counter()
            loss_sum, task_loss_sum, batches = 0.0, torch.zeros(len(tasks), device=device), 0
            for batch in train_split.shuffled_batches(config.batch_size, shuffle):
                rows_in_batch = len(batch)  # the global batch's rows
                # One process: the batch itself, and None. The loss's labels (conditional tasks' turned)
                # are counted over the global batch.
                batch, label_counts = parallel.share(loss_fn.with_loss_labels(batch))
                outputs, auxiliary = network(batch.numeric, batch.categorical)
                task_losses, labelled = loss_fn(outputs, batch.labels, label_counts)
                # The ranks' gradients are summed: the penalty counts on one rank only.
                penalty = model.penalty() if has_penalty and parallel.is_first else None
                if auxiliary is not None:  # a sum over this rank's rows: its share of the global batch's mean
                    auxiliary = auxiliary / rows_in_batch
                    penalty = auxiliary if penalty is None else penalty + auxiliary
                optimizer.zero_grad(set_to_none=True)
                if table_optimizer is not None:
                    table_optimizer.zero_grad(set_to_none=True)
                loss = weighting.backward(task_losses, labelled, parameters, penalty)
                schedule.apply(step, [optimizer, table_optimizer])
                step += 1
                optimizer.step()
                if table_optimizer is not None:
                    parallel.sum_sparse_gradients(tables)
                    table_optimizer.step()
                loss_sum += loss.item()
                task_loss_sum += task_losses.detach()
                batches += 1
            weighting.end_epoch()
            loss_sum, task_loss_sum = parallel.sum_over_ranks(loss_sum, task_loss_sum)
            epoch_seconds = time.perf_counter() - started
            train_seconds += epoch_seconds
            # The epoch's last updates can make the model overflow while its losses were still
            # finite: then the validation outputs are the first to show it.
            outputs = predict_outputs(model, data.validation, config.eval_batch_size)
            outputs_finite = bool(outputs.isfinite().all())
            if not (math.isfinite(loss_sum) and outputs_finite):
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch} (loss is {loss_sum}, validation outputs "
                    f"{'' if outputs_finite else 'not '}finite); lower the learning rate "
                    f"(now {config.learning_rate})"
                )
            if parallel.is_first:
                warn_dead_tasks(tasks, outputs, epoch, config.learning_rate, dead_tasks)
            validation = evaluate_predictions(tasks, to_predictions(tasks, outputs), data.validation.labels)
            score = parallel.same_on_all(main_score(main_task, validation[main_task.name]))
            # Decides early stopping before the checkpoint is written, so a resumed run knows it had stopped.
            improved = stopping.update(epoch, score, model.state_dict())
            entry = HistoryEntry.of_epoch(
                epoch, tasks, loss_sum, task_loss_sum, batches, validation, epoch_seconds, improved
            )
            history.append(entry.to_dict())
            if checkpoint_path is not None and parallel.is_first:
                save_checkpoint(
                    checkpoint_path,
                    model,
                    optimizer,
                    epoch,
                    stopping.best_weights,
                    stopping.best_score,
                    stopping.best_epoch,
                    history,
                    shuffle,
                    identity=identity,
                    epochs_without_gain=stopping.epochs_without_gain,
                    train_seconds=train_seconds,
                    stopped_early=stopping.stopped_early,
                    weighting=weighting.state_dict(),
                    sparse_optimizer=table_optimizer,
                )
            reporter.on_epoch_end(entry)
            if stopping.stopped_early:
                break

        if config.restore_best:
            model.load_state_dict(stopping.best_weights)
        # Every split (a streamed training split over a sample of its rows: `StreamingTableData.metric_splits`).
        metrics = evaluate_data(model, data, config.eval_batch_size)
    epochs_run = len(history)
    return TrainResult(
        model,
        history,
        stopping.best_epoch,
        stopping.best_score,
        train_seconds,
        samples_per_second=epochs_run * rows / max(train_seconds, 1e-9),
        metrics=metrics,
        stopped_early=stopping.stopped_early,
    )


CHECKPOINT_FORMAT = 1
# Training options that may change between a run and its resumption: they do not alter the
# epochs already trained (a larger `epochs` extends the run).
RESUMABLE_OPTIONS = ("epochs", "threads", "eval_batch_size")
CHECKPOINT_KEYS = (
    "format",
    "identity",
    "epoch",
    "model",
    "optimizer",
    "best_state",
    "best_score",
    "best_epoch",
    "history",
    "shuffle_rng",
    "torch_rng",
    "epochs_without_gain",
    "train_seconds",
    "stopped_early",
)
# Also written: "weighting" (the loss weighting's state); a checkpoint without it is of a weighting without state.
# And "sparse_optimizer" (the embedding tables' row-sparse optimiser state) where there is one.


def run_identity(
    model: MultiTaskModel, data: MultiTaskData, config: TrainConfig, data_identity: Any = None
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed by this training: JSON-able, compared as is."""
    return {
        **options_identity(model.name, model.hyperparameters, config, data_identity),
        **to_jsonable(
            {
                "tasks": [task.to_dict() for task in data.tasks],
                "input_spec": data.input_spec.to_dict(),
                "train_rows": len(data.train),
            }
        ),
    }


def options_identity(
    model_name: str, hyperparameters: dict[str, Any], config: TrainConfig, data_identity: Any = None
) -> dict[str, Any]:
    """The part of `run_identity` known before the data is read: model, hyperparameters (all of
    them, defaults included), training options and data source (the CLI checks it first)."""
    training = {key: value for key, value in config.to_dict().items() if key not in RESUMABLE_OPTIONS}
    return to_jsonable(
        {"model": model_name, "hyperparameters": hyperparameters, "training": training, "data": data_identity}
    )


def save_checkpoint(
    path: str | Path,
    model: MultiTaskModel,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    best_state: dict[str, torch.Tensor],
    best_score: float,
    best_epoch: int,
    history: Sequence[dict[str, Any]],
    shuffle: torch.Generator,
    *,
    identity: dict[str, Any] | None = None,
    epochs_without_gain: int = 0,
    train_seconds: float = 0.0,
    stopped_early: bool = False,
    weighting: dict[str, Any] | None = None,
    sparse_optimizer: RowSparseOptimizer | None = None,
) -> None:
    """Everything needed to continue training after `epoch`, written atomically (a kill during the
    write leaves the previous epoch's checkpoint). weighting: the loss weighting's state_dict().
    sparse_optimizer: the embedding tables' optimiser, saved as "sparse_optimizer" when given."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "identity": identity,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_state": best_state,
        "best_score": best_score,
        "best_epoch": best_epoch,
        "history": list(history),
        "shuffle_rng": shuffle.get_state(),
        "torch_rng": torch.get_rng_state(),
        "epochs_without_gain": epochs_without_gain,
        "train_seconds": train_seconds,
        "stopped_early": stopped_early,
        "weighting": weighting or {},
    }
    if sparse_optimizer is not None:
        state["sparse_optimizer"] = sparse_optimizer.state_dict()
    atomic_write(path, lambda temp: torch.save(state, temp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint`; MmoeError (one line naming the file) when it is
    missing, damaged, or not an mmoe training checkpoint of this format."""
    path = Path(path)
    if not path.is_file():
        raise MmoeError(
            f"{path}: no checkpoint to resume from; expected the checkpoint.pt that `mmoe train` "
            f"writes into --out after every epoch"
        )
    try:
        # weights_only: a checkpoint is tensors, numbers, text and containers of them, nothing to unpickle.
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails in many ways on a damaged file
        raise MmoeError(
            f"{path}: not a readable checkpoint ({type(error).__name__}: {_first_line(error)}); "
            f"expected the checkpoint.pt of `mmoe train`"
        ) from None
    if not isinstance(saved, dict) or any(key not in saved for key in CHECKPOINT_KEYS) or saved["identity"] is None:
        raise MmoeError(
            f"{path}: not a resumable mmoe checkpoint (written by another program or an older mmoe); "
            f"expected a checkpoint.pt of format {CHECKPOINT_FORMAT}"
        )
    if saved["format"] != CHECKPOINT_FORMAT:
        raise MmoeError(f"{path}: checkpoint format {saved['format']!r}; expected format {CHECKPOINT_FORMAT}")
    return saved


def check_checkpoint_identity(path: str | Path, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """MmoeError naming every field where the checkpoint's run differs from the one being resumed.
    Only the fields in `wanted` are compared (the CLI checks model, options and data source before
    reading the data; training checks everything)."""
    differences = []
    for key in sorted(wanted):
        old, new = saved.get(key), wanted.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            differences += [
                f"{key}.{sub}: {old.get(sub)!r} in the checkpoint, {new.get(sub)!r} now"
                for sub in sorted(set(old) | set(new))
                if old.get(sub) != new.get(sub)
            ]
        else:
            differences.append(f"{key}: {old!r} in the checkpoint, {new!r} now")
    if differences:
        shown = "; ".join(text[:160] for text in differences[:4]) + (" ..." if len(differences) > 4 else "")
        raise MmoeError(
            f"{path}: the checkpoint belongs to a different run ({shown}); expected the same model, "
            f"hyperparameters, data and training options as the run that wrote it"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else "no detail"
