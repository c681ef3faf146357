"""The trainer: Adam on the normalised displacement error, early stopping, resumable.

The loss is the mean squared displacement error divided by the model's own error before
training (``loss_scale``), so it starts at 1 for every model; for the equivariant model, whose
head starts at zero, that is the error of its prior.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from mdnext.data import make_loader
from mdnext.errors import MDNextError
from mdnext.metrics import evaluate_windows
from mdnext.models.base import DisplacementModel


@dataclass
class TrainConfig:
    """Optimisation settings (plain data; stored in checkpoints).

    Attributes:
        epochs: Maximum number of passes over the training windows.
        batch_size: Windows (structures) per batch.
        lr: Initial Adam learning rate; annealed by a cosine to ``lr * min_lr_ratio``.
        patience: Stop after this many epochs without a better validation loss.
        time_limit: Wall-clock budget in seconds (None: none). The schedule follows whichever
            of epochs and time runs out first, so a time-limited run still ends annealed (but
            then depends on the machine's speed).
        seed: Seeds model initialisation and batch order; same seed, same result on CPU
            (with ``MKL_DYNAMIC=FALSE`` in the environment before torch loads, as the CLI
            sets it: otherwise MKL may use fewer threads on a busy machine and round differently).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        quiet: No progress bar.
        unroll: Steps of the training rollout: with ``unroll > 1`` the model is fed its own
            predictions for that many steps and the loss is the accumulated position error
            (see :func:`rollout_loss`); this trades one-step accuracy for stable long rollouts.
    """

    epochs: int = 200
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_ratio: float = 0.01
    patience: int = 40
    time_limit: float | None = None
    seed: int = 0
    device: str = "cpu"
    quiet: bool = False
    grad_clip: float = 10.0
    unroll: int = 1

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
    """``"auto"`` → cuda where available, else cpu; an unavailable cuda is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MDNextError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


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
) -> TrainState:
    """Fit ``model`` on ``train_set`` (closed-form parts first, then Adam if trainable).

    Args:
        model: A freshly built model (or the one ``state`` was saved from, when resuming).
        train_set: Training windows; ``val_set``: validation windows (may be empty: then the
            training loss selects the best epoch).
        config: Optimisation settings.
        state: A saved :class:`TrainState` to resume from (the model's weights must already be
            those of ``state``'s last epoch).
        on_epoch: Called after every epoch with the model (last weights) and the state, e.g.
            to write a resumable checkpoint.

    Returns:
        The final state; the model holds the best weights.
    """
    device = resolve_device(config.device)
    model.to(device)
    if state is None:
        model.fit_closed_form(make_loader(train_set, config.batch_size, shuffle=False))
        state = TrainState()
        if model.trainable:
            state.loss_scale = max(evaluate_windows(model, make_loader(train_set, config.batch_size), device=device), 1e-300)
    if not model.trainable:
        return state
    if config.unroll > 1:
        train_set, val_set = train_set.with_horizon(config.unroll), val_set.with_horizon(config.unroll)

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    val_loader = make_loader(val_set, config.batch_size) if len(val_set) else None
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
        train_loss = _train_epoch(model, train_set, optimizer, config, state, device)
        val_loss = train_loss if val_loader is None else _validate(model, val_loader, device) / state.loss_scale
        state.epoch += 1
        state.elapsed = time.perf_counter() - started
        state.log.append({"epoch": state.epoch, "train_loss": train_loss, "val_loss": val_loss,
                          "lr": optimizer.param_groups[0]["lr"], "seconds": state.elapsed})
        if val_loss < state.best_val:
            state.best_val, state.best_epoch = val_loss, state.epoch
            state.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        bad_epochs = state.epoch - state.best_epoch
        state.optimizer = optimizer.state_dict()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}", best=state.best_epoch)
        if on_epoch is not None:
            on_epoch(model, state)
    if progress is not None:
        progress.close()
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return state


def _train_epoch(model: DisplacementModel, train_set: Any, optimizer: torch.optim.Optimizer,
                 config: TrainConfig, state: TrainState, device: torch.device) -> float:
    """One pass over shuffled training windows; returns the mean normalised loss."""
    model.train()
    loader = make_loader(train_set, config.batch_size, shuffle=True, seed=config.seed + state.epoch)
    total, count = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = rollout_loss(model, batch) / state.loss_scale
        if not torch.isfinite(loss):
            raise MDNextError(f"training diverged at epoch {state.epoch + 1} (loss {loss.item()}); lower --lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        total += loss.item() * batch.num_nodes
        count += batch.num_nodes
    model.eval()
    return total / max(count, 1)


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


def _validate(model: DisplacementModel, loader: Any, device: torch.device) -> float:
    """:func:`rollout_loss` averaged over all atoms of ``loader``, without gradients."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            total += float(rollout_loss(model, batch)) * batch.num_nodes
            count += batch.num_nodes
    return total / max(count, 1)


def _progress(config: TrainConfig, state: TrainState) -> Any:
    if config.quiet:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.epochs, initial=state.epoch, desc="training", unit="epoch", leave=False)
