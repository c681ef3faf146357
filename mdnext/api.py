"""The top-level workflow: ``train``, ``evaluate`` and ``extrapolate`` on :class:`Frames`.

``mdnext.train`` fits a model on the training split, scores it against every baseline on the
test split (the last 20% of frames by default) and returns a :class:`TrainedModel`; with an
``output`` path it writes a checkpoint after every epoch (``<output>.last.pt``, for
``resume=True``) and the best model to ``output`` at the end.

Under ``torchrun`` every process calls ``train`` with the same arguments: they train together
(see :mod:`mdnext.trainer`), and rank 0 alone evaluates and writes the checkpoints, metrics and
plots while the others wait, so that every process returns the same model and metrics.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mdnext import distributed
from mdnext.checkpoint import TrainedModel, build_model, data_hash, load_model
from mdnext.data import make_loader, species_list, windows_per_batch
from mdnext.errors import InputError
from mdnext.evaluation import evaluate as _evaluate
from mdnext.evaluation import evaluation_datasets, limit_windows
from mdnext.frames import Frames
from mdnext.io import refuse_existing
from mdnext.rollout import extrapolate
from mdnext.summary import first_items
from mdnext.trainer import TrainConfig, TrainState, fit

__all__ = ["evaluate", "extrapolate", "resume_path", "train"]


def topology_options(model: str, frames_list: Sequence[Frames], model_options: dict[str, Any] | None) -> dict[str, Any]:
    """``model_options`` with the equivariant model's ``bond_types`` on when every trajectory has
    bonds (unless set): with identical beads only the topology tells a bond from a contact."""
    options = dict(model_options or {})
    if model == "equivariant" and all(frames.bonds is not None for frames in frames_list):
        options.setdefault("bond_types", True)
    return options


def _warn_repeated_frames(frames_list: Sequence[Frames]) -> None:
    """Warn about frames identical to the one before (unless the whole trajectory stands still)."""
    for i, frames in enumerate(frames_list):
        repeated = frames.repeated_frames()
        if 0 < len(repeated) < frames.n_frames - 1:
            name = frames.source.get("path", f"trajectory {i}")
            shown = first_items(repeated.tolist(), 5)
            warnings.warn(f"{name}: {len(repeated)} frame(s) repeat the frame before ({shown}), e.g. written twice "
                          "at a restart; windows across them see a zero displacement", stacklevel=3)


def resume_path(output: str | Path) -> Path:
    """Where training writes its resumable last-epoch checkpoint for ``output``."""
    output = Path(output)
    return output.with_name(output.name + ".last.pt")


def train(
    trajectories: Frames | Sequence[Frames],
    model: str = "equivariant",
    *,
    history: int = 4,
    stride: int = 1,
    model_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    horizons: Sequence[int] = (1, 10, 100),
    output: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    init: str | Path | None = None,
    plots: str | Path | None = None,
) -> TrainedModel:
    """Train a displacement model on ``trajectories`` and measure it against the baselines.

    Args:
        trajectories: One trajectory or several (positions in Å; dt in ps where known).
        model: Registry name: ``"equivariant"``, ``"linear"``, or a baseline.
        history: Number k of past displacements the model reads.
        stride: Predict the frame ``stride`` frames ahead (and read history at that spacing).
        model_options: Further model hyperparameters (e.g. ``{"cutoff": 6.5}`` in Å). The
            equivariant model uses the bond topology (``bond_types``; with a single species
            also the force-matched prior) when every trajectory has bonds, unless told otherwise.
        config: Optimisation settings (epochs, batch size, lr, seed, device, …).
        test_fraction, val_fraction: Chronological split: test is the last ``test_fraction``
            of each trajectory, validation the ``val_fraction`` before it.
        horizons: Rollout horizons (steps) for ``rollout_rmsd``.
        output: Checkpoint path; also enables the per-epoch ``<output>.last.pt``.
        overwrite: Replace an existing ``output``.
        resume: Continue from ``<output>.last.pt``.
        init: Fine-tune the model of this checkpoint (same model, history, stride and species)
            instead of building a new one: its prior is kept, and its weights are epoch 0 of
            the best-epoch choice. E.g. with ``config.unroll`` and ``config.val_horizon`` for
            stable long rollouts. Not read when ``resume`` continues an interrupted fine-tuning.
        plots: Directory for loss, parity and rollout plots (PNG).

    Returns:
        The trained model, on the CPU (like a loaded checkpoint; the evaluation runs there);
        ``trained.metrics`` holds the test metrics (see :func:`mdnext.evaluation.evaluate`)
        plus ``train_seconds`` and ``epochs``.

    Raises:
        MDNextError: Bad input or options (on every process under torchrun; a failure in rank
            0's evaluation or writing reaches the others as :class:`~mdnext.distributed.DistributedError`).
    """
    frames_list = [trajectories] if isinstance(trajectories, Frames) else list(trajectories)
    config = config or TrainConfig()
    distributed.setup(config.device)
    if output is not None:
        refuse_existing(output, overwrite)
    species = species_list(frames_list)
    _warn_repeated_frames(frames_list)
    datasets = evaluation_datasets(frames_list, history, stride, species, test_fraction, val_fraction)
    dt = frames_list[0].dt
    training: dict[str, Any] = {
        "config": config.as_dict(), "seed": config.seed, "data_hash": data_hash(frames_list),
        "sources": [dict(f.source) for f in frames_list], "test_fraction": test_fraction,
        "val_fraction": val_fraction,
    }

    if init is not None:
        training["init"] = str(init)
    state = None
    if resume:
        net, state = _resume(output, model, history, stride, species)
    elif init is not None:
        net = _pretrained(init, model, history, stride, species)
    else:
        torch.manual_seed(config.seed)
        net = build_model(model, {"history": history, "species": species,
                                  **topology_options(model, frames_list, model_options)})

    def save_last(current: Any, current_state: TrainState) -> None:
        TrainedModel(current, stride, dt, training).save(
            resume_path(output), overwrite=True, extra={"resume": current_state.as_dict()}
        )

    started = time.perf_counter()
    state = fit(net, datasets.train, datasets.val, config, state=state,
                on_epoch=save_last if output is not None else None, pretrained=init is not None)
    train_seconds = state.elapsed if net.trainable else time.perf_counter() - started
    # mdnext.evaluation scores on the CPU; the model is returned there too.
    trained = TrainedModel(net.cpu().eval(), stride, dt, training)

    def finish() -> dict[str, Any]:
        metrics = _evaluate(trained, frames_list, horizons=horizons, test_fraction=test_fraction,
                            val_fraction=val_fraction, seed=config.seed, max_windows=config.max_windows)
        metrics.update(train_seconds=train_seconds, epochs=state.epoch, best_epoch=state.best_epoch)
        training.update(metrics=metrics, log=state.log)
        if output is not None:
            trained.save(output, overwrite=True)
            resume_path(output).unlink(missing_ok=True)
        if plots is not None:
            _plot(trained, limit_windows(datasets, config.max_windows), metrics, state, Path(plots))
        return metrics

    training.update(metrics=distributed.run_on_main(finish), log=state.log)
    return trained


def _pretrained(path: str | Path, model: str, history: int, stride: int, species: list[str]) -> Any:
    """The model saved in checkpoint ``path``, to fine-tune on data with ``species``."""
    net, checkpoint = load_model(path)
    _check_fits(path, checkpoint, model, history, stride, species)
    return net


def _resume(output: str | Path | None, model: str, history: int, stride: int,
            species: list[str]) -> tuple[Any, TrainState]:
    """The model and trainer state saved in ``<output>.last.pt``."""
    if output is None:
        raise InputError("--resume needs the output path (-o) of the interrupted run")
    path = resume_path(output)
    net, checkpoint = load_model(path)
    if "resume" not in checkpoint:
        raise InputError(f"{path}: no trainer state to resume from")
    _check_fits(path, checkpoint, model, history, stride, species, "; start afresh without --resume")
    return net, TrainState(**checkpoint["resume"])


def _check_fits(path: str | Path, checkpoint: dict[str, Any], model: str, history: int, stride: int,
                species: list[str], hint: str = "") -> None:
    """Raise :class:`InputError` unless ``checkpoint`` holds ``model`` with this history and
    stride, trained on ``species``."""
    found = (checkpoint["model"], checkpoint["history"], checkpoint["stride"])
    if found != (model, history, stride):
        raise InputError(f"{path}: holds model {found[0]!r} with history {found[1]} and stride {found[2]}, "
                         f"not {model!r} with history {history} and stride {stride}{hint}")
    if checkpoint["species"] != species:
        raise InputError(f"{path}: was trained on species {checkpoint['species']}, the data has {species}{hint}")


def evaluate(
    trained: TrainedModel | str | Path,
    trajectories: Frames | Sequence[Frames],
    *,
    horizons: Sequence[int] = (1, 10, 100),
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_windows: int | None = None,
) -> dict[str, Any]:
    """Score a model (or a checkpoint path) and every baseline on the test split; see
    :func:`mdnext.evaluation.evaluate` for the metrics (Å², Å) and ``max_windows``."""
    if not isinstance(trained, TrainedModel):
        trained = TrainedModel.load(trained)
    return _evaluate(trained, trajectories, horizons=horizons, test_fraction=test_fraction,
                     val_fraction=val_fraction, seed=seed, max_windows=max_windows)


def _plot(trained: TrainedModel, datasets: Any, metrics: dict[str, Any], state: TrainState, directory: Path) -> None:
    from mdnext.plots import plot_losses, plot_parity, plot_rollout

    directory.mkdir(parents=True, exist_ok=True)
    if state.log:
        plot_losses(state.log, directory / "loss.png")
    predicted, target = [], []
    with torch.no_grad():
        for batch in make_loader(datasets.test, windows_per_batch(datasets.test.max_atoms)):
            predicted.append(trained.model(batch))
            target.append(batch.y)
    plot_parity(torch.cat(predicted).numpy(), torch.cat(target).numpy(), directory / "parity.png")
    plot_rollout({trained.model.name: metrics["rollout_rmsd"], **metrics["baseline_rollout_rmsd"]},
                 directory / "rollout.png")
