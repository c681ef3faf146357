"""The trainer: Adam on the normalised displacement error, early stopping, resumable.

The loss is the mean squared displacement error divided by the model's own error before
training (``loss_scale``), so it starts at 1 for every model; for the equivariant model, whose
head starts at zero, that is the error of its prior.

Under ``torchrun`` (see :mod:`mdnext.distributed`) the gradient steps run data-parallel with
:class:`~torch.nn.parallel.DistributedDataParallel`: every global batch of ``batch_size``
windows is split between the processes, and each process weights its share's loss so that the
averaged gradient is that of the whole batch (the single-process gradient, up to rounding).
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from mdnext import distributed
from mdnext.data import DataError, make_loader, windows_per_batch
from mdnext.errors import MDNextError
from mdnext.models.base import DisplacementModel
from mdnext.neighbors import PositionsOutOfRange


@dataclass
class TrainConfig:
    """Optimisation settings (plain data; stored in checkpoints).

    Attributes:
        epochs: Maximum number of passes over the training windows.
        batch_size: Windows (structures) per optimiser step; under torchrun the global batch,
            split between the processes (at least one window each).
        lr: Initial Adam learning rate; annealed by a cosine to ``lr * min_lr_ratio``.
        patience: Stop after this many epochs without a better validation loss.
        time_limit: Wall-clock budget in seconds (None: none). The schedule follows whichever
            of epochs and time runs out first, so a time-limited run still ends annealed (but
            then depends on the machine's speed).
        seed: Seeds model initialisation and batch order; same seed, same result on CPU
            (with ``MKL_DYNAMIC=FALSE`` in the environment before torch loads, as the CLI
            sets it: otherwise MKL may use fewer threads on a busy machine and round differently).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (under torchrun, cuda is ``cuda:LOCAL_RANK``).
        quiet: No progress bar (processes other than rank 0 never show one).
        unroll: Steps of the training rollout: with ``unroll > 1`` the model is fed its own
            predictions for that many steps and the loss is the accumulated position error
            (see :func:`rollout_loss`); this trades one-step accuracy for stable long rollouts.
        val_horizon: Steps of the validation rollouts (fed the model's own predictions, scored
            as in :func:`rollout_loss`) whose error picks the best epoch and drives early
            stopping; None: ``unroll``. A long one (e.g. 100) keeps the weights that
            extrapolate best, where the one-step loss says little about long rollouts. The
            validation split must hold the history plus this many steps.
        max_windows: For long trajectories: each epoch trains on a fresh random subset of at
            most this many windows, and the closed-form fits, the loss scale and validation use
            at most this many evenly spaced ones (None: all windows).
    """

    epochs: int = 200
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.01
    patience: int = 40
    time_limit: float | None = None
    seed: int = 0
    device: str = "cpu"
    quiet: bool = False
    grad_clip: float = 10.0
    unroll: int = 1
    val_horizon: int | None = None
    max_windows: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain data."""
        return asdict(self)


@dataclass
class TrainState:
    """Where training stands; enough to resume it exactly (tensors and plain data only)."""

    epoch: int = 0
    elapsed: float = 0.0
    loss_scale: float = 1.0
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    optimizer: dict[str, Any] | None = None
    log: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for a checkpoint."""
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → cuda where available, else cpu; an unavailable cuda is a user error.

    Under torchrun cuda means this process's GPU, ``cuda:LOCAL_RANK``.
    """
    return distributed.resolve_device(name)


def _cosine(progress: float, min_ratio: float) -> float:
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def fit(
    model: DisplacementModel,
    train_set: Any,
    val_set: Any,
    config: TrainConfig,
    *,
    state: TrainState | None = None,
    on_epoch: Callable[[DisplacementModel, TrainState], None] | None = None,
    pretrained: bool = False,
) -> TrainState:
    """Fit ``model`` on ``train_set`` (closed-form parts first, then Adam if trainable).

    Under torchrun every process calls this with the same arguments: the closed-form fit runs
    on every process on all training windows (identical results), the gradient steps are
    data-parallel, and every decision (learning rate, early stopping, time limit) follows
    rank 0's numbers, so all processes end with the same weights and state.

    Args:
        model: A freshly built model (or the one ``state`` was saved from, when resuming).
        train_set: Training windows; ``val_set``: validation windows (may be empty: then the
            training loss selects the best epoch).
        config: Optimisation settings.
        state: A saved :class:`TrainState` to resume from (the model's weights must already be
            those of ``state``'s last epoch).
        on_epoch: Called after every epoch with the model (last weights) and the state, e.g.
            to write a resumable checkpoint; on rank 0 only under torchrun.
        pretrained: Fine-tune a trained model: its closed-form parts (prior, scales) are kept.

    The starting weights of a fine-tuned model, or of a new model that ``starts_at_prior``
    (the equivariant model: its prior alone, zero head), compete for the best epoch as epoch
    0, so training never ends worse on validation than it started.

    Returns:
        The final state; the model holds the best weights, on the training device.
    """
    device = distributed.setup(config.device)
    _check_world(config, train_set)
    fresh = state is None
    fixed_train = train_set.subset(config.max_windows)
    val_horizon = config.unroll if config.val_horizon is None else int(config.val_horizon)
    if val_horizon > 1 and len(val_set):
        val_set = val_set.with_horizon(val_horizon)
        if not len(val_set):
            raise DataError(f"the validation split is too short for {val_horizon}-step validation rollouts "
                            "(history plus that many steps); lower the validation horizon or raise the validation fraction")
    val_set = val_set.subset(config.max_windows)
    if fresh:
        if not pretrained:
            model.to("cpu")  # the closed-form fits read the loader's CPU batches
            model.fit_closed_form(make_loader(fixed_train, config.batch_size, shuffle=False))
        state = TrainState()
    model.to(device)
    if not model.trainable:
        return state
    if fresh:
        state.loss_scale = max(_mean_loss(model, fixed_train, config.batch_size, device), 1e-300)
        if (pretrained or model.starts_at_prior) and len(val_set):
            state.best_val = _mean_loss(model, val_set, config.batch_size, device) / state.loss_scale
            state.best_state = _weights_copy(model)
    if config.unroll > 1:
        train_set = train_set.with_horizon(config.unroll)

    objective = _objective(model, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    progress = _progress(config, state)
    started = time.perf_counter() - state.elapsed
    bad_epochs = state.epoch - state.best_epoch
    while state.epoch < config.epochs and bad_epochs < config.patience:
        fraction = state.epoch / config.epochs
        if config.time_limit:
            fraction = max(fraction, state.elapsed / config.time_limit)
            if fraction >= 1.0:
                break
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _cosine(fraction, config.min_lr_ratio)
        try:
            train_loss = _train_epoch(model, train_set, optimizer, config, state, device, objective)
            val_loss = train_loss
            if len(val_set):
                val_loss = _mean_loss(model, val_set, config.batch_size, device) / state.loss_scale
        except PositionsOutOfRange as exc:
            raise MDNextError(f"training diverged at epoch {state.epoch + 1} ({exc}); lower --lr") from exc
        # Elapsed times differ between processes: all follow rank 0's clock (and numbers).
        elapsed, train_loss, val_loss = distributed.broadcast((time.perf_counter() - started, train_loss, val_loss))
        state.epoch += 1
        state.elapsed = elapsed
        state.log.append({"epoch": state.epoch, "train_loss": train_loss, "val_loss": val_loss,
                          "lr": optimizer.param_groups[0]["lr"], "seconds": state.elapsed})
        if val_loss < state.best_val:
            state.best_val, state.best_epoch = val_loss, state.epoch
            state.best_state = _weights_copy(model)
        bad_epochs = state.epoch - state.best_epoch
        state.optimizer = optimizer.state_dict()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}", best=state.best_epoch)
        if on_epoch is not None and distributed.is_main():
            on_epoch(model, state)
    if progress is not None:
        progress.close()
    del objective  # releases the DistributedDataParallel wrapper
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return state


def _weights_copy(model: DisplacementModel) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's state (the best epoch's weights)."""
    return copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})


def _check_world(config: TrainConfig, train_set: Any) -> None:
    """Every process needs at least one window of every global batch."""
    world = distributed.world_size()
    if world > 1 and min(config.batch_size, len(train_set)) < world:
        raise MDNextError(f"batch size {config.batch_size} with {len(train_set)} training windows leaves "
                          f"some of the {world} processes without windows: use --batch-size >= {world}")


class _Objective(torch.nn.Module):
    """The training loss as a module, so that DistributedDataParallel sees one forward per backward
    (an unrolled loss calls the model several times)."""

    def __init__(self, model: DisplacementModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> torch.Tensor:
        return rollout_loss(self.model, batch)


def _objective(model: DisplacementModel, device: torch.device) -> torch.nn.Module:
    """:class:`_Objective`, wrapped in DistributedDataParallel when several processes train.

    The wrapper broadcasts rank 0's weights and buffers once; the buffers (prior coefficients,
    scales) are fitted identically on every process and never change, so they are not
    broadcast again at every step.
    """
    objective = _Objective(model)
    if distributed.world_size() == 1:
        return objective
    ddp = torch.nn.parallel.DistributedDataParallel
    # torch >= 2.13 renamed broadcast_buffers (now deprecated) to forward_sync_buffers
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
    return ddp(objective, device_ids=[device.index] if device.type == "cuda" else None, **{no_sync: False})


def _train_epoch(model: DisplacementModel, train_set: Any, optimizer: torch.optim.Optimizer,
                 config: TrainConfig, state: TrainState, device: torch.device,
                 objective: torch.nn.Module | None = None) -> float:
    """One pass over shuffled training windows; returns the mean normalised loss (all processes).

    Each process gets its share of every global batch (see :func:`mdnext.data.make_loader`) and
    minimises its per-atom mean loss times ``world × local atoms / global atoms``: averaged over
    the processes (as DistributedDataParallel averages gradients), that is the per-atom mean
    over the global batch, whatever the shares' sizes.
    """
    objective = _Objective(model) if objective is None else objective
    world = distributed.world_size()
    model.train()
    loader = make_loader(train_set, config.batch_size, shuffle=True, seed=config.seed + state.epoch,
                         rank=distributed.rank(), world_size=world, limit=config.max_windows)
    total, count = 0.0, 0.0
    for batch in loader:
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        local = objective(batch)
        atoms = float(batch.num_nodes)
        global_atoms, global_sum = distributed.all_reduce_sum([atoms, local.item() * atoms])
        loss = global_sum / global_atoms / state.loss_scale
        if not math.isfinite(loss):
            raise MDNextError(f"training diverged at epoch {state.epoch + 1} (loss {loss}); lower --lr")
        (local * (world * atoms / global_atoms) / state.loss_scale).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        total += global_sum / state.loss_scale
        count += global_atoms
    model.eval()
    return total / max(count, 1.0)


def rollout_loss(model: DisplacementModel, batch: Any) -> torch.Tensor:
    """Mean squared displacement error, over a short rollout when the batch has ``future``.

    Without ``future`` this is the one-step MSE (Å²). With ``future`` (n, m, 3) the model is fed
    its own predictions for m steps (positions and history buffer updated as in
    :func:`mdnext.rollout.rollout`, gradients flowing through the history), and the loss is
    the mean over steps j of the squared accumulated position error divided by j (Å²): a
    random-walk error then weighs the same at every step.
    """
    future = getattr(batch, "future", None)
    if future is None:
        return torch.mean((model(batch) - batch.y) ** 2)
    steps = future.shape[1]
    current, error, total = batch, torch.zeros_like(batch.pos), 0.0
    for step in range(steps):
        predicted = model(current)
        error = error + predicted - future[:, step]
        total = total + torch.mean(error**2) / (step + 1)
        if step + 1 < steps:
            current = current.clone()
            current.pos = current.pos + predicted
            current.history = torch.cat([predicted.unsqueeze(1), current.history[:, :-1]], dim=1)
    return total / steps


#: Most windows per batch of a loss without gradients (a larger batch is cheaper per window).
VALIDATION_WINDOWS = 256


def _mean_loss(model: DisplacementModel, dataset: Any, batch_size: int, device: torch.device) -> float:
    """:func:`rollout_loss` averaged over all atoms of ``dataset`` (Å²), without gradients.

    Under torchrun each process scores a contiguous share of the windows and the sums are
    added up, so every process gets the same number.
    """
    indices = distributed.shard(len(dataset))
    batch_size = max(int(batch_size), windows_per_batch(dataset.max_atoms, VALIDATION_WINDOWS))
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for first in range(indices.start, indices.stop, batch_size):
            batch = dataset.batch(range(first, min(first + batch_size, indices.stop))).to(device)
            total += float(rollout_loss(model, batch)) * batch.num_nodes
            count += batch.num_nodes
    total, count = distributed.all_reduce_sum([total, count])
    if count == 0:
        raise DataError("no windows to evaluate (the split is empty or too short)")
    return total / count


def _progress(config: TrainConfig, state: TrainState) -> Any:
    if config.quiet or not distributed.is_main():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.epochs, initial=state.epoch, desc="training", unit="epoch", leave=False)
