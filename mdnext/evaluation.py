"""Score a trained model against every baseline on the same test windows.

All models are scored on identical windows: the datasets carry ``max(k, BASELINE_HISTORY)``
past displacements and every model reads the first k it needs. The baselines that have
something to fit (``autoregressive``: least squares; ``linear``: Adam) are fitted on the same
training split as the model.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mdnext import registry
from mdnext.checkpoint import TrainedModel, build_model
from mdnext.data import SPLITS, DataError, Datasets, make_datasets, make_loader, windows_per_batch
from mdnext.frames import Frames
from mdnext.metrics import equivariance_error, evaluate_windows, rollout_rmsd
from mdnext.models.base import DisplacementModel
from mdnext.models.baselines import BASELINES, LAG_FITS
from mdnext.trainer import TrainConfig, fit

#: Lags of the autoregressive baseline (and the history the evaluation windows carry) where
#: the trajectory is long enough; shorter ones get fewer, down to MIN_BASELINE_HISTORY.
BASELINE_HISTORY = 8
#: Constant acceleration needs two past displacements.
MIN_BASELINE_HISTORY = 2
#: Adam settings for the tutorial's linear baseline (12 parameters: a few epochs suffice).
LINEAR_CONFIG = TrainConfig(epochs=20, batch_size=32, lr=1e-3, patience=5, quiet=True)


def evaluation_datasets(frames_list: Sequence[Frames], history: int, stride: int, species: list[str],
                        test_fraction: float, val_fraction: float) -> Datasets:
    """Windows with history for the model and for every baseline.

    They carry ``max(history, BASELINE_HISTORY)`` past displacements, or fewer (down to
    ``max(history, MIN_BASELINE_HISTORY)``) where the splits are too short for that.

    Raises:
        DataError: Even the least history does not fit the splits.
    """
    error = None
    for lags in range(max(history, BASELINE_HISTORY), max(history, MIN_BASELINE_HISTORY) - 1, -1):
        try:
            return make_datasets(frames_list, lags, stride, test_fraction, val_fraction, species)
        except DataError as exc:
            error = exc
    raise error


def limit_windows(datasets: Datasets, max_windows: int | None) -> Datasets:
    """``datasets`` with at most ``max_windows`` evenly spaced windows per split (None: all)."""
    if max_windows is None:
        return datasets
    return dataclasses.replace(datasets, **{name: getattr(datasets, name).subset(max_windows) for name in SPLITS})


def fit_baselines(datasets: Datasets, seed: int = 0) -> dict[str, DisplacementModel]:
    """The baselines (and the linear model) fitted on ``datasets.train``."""
    models: dict[str, DisplacementModel] = {}
    for name in (*BASELINES, "linear"):
        history = datasets.history if name in LAG_FITS else registry.models.get(name).min_history
        torch.manual_seed(seed)
        model = build_model(name, {"history": history, "species": datasets.species})
        config = LINEAR_CONFIG if model.trainable else TrainConfig(quiet=True)
        fit(model, datasets.train, datasets.val, TrainConfig(**{**config.as_dict(), "seed": seed}))
        models[name] = model.eval()
    return models


def score(model: DisplacementModel, datasets: Datasets, frames_list: Sequence[Frames], horizons: Sequence[int],
          max_starts: int = 64) -> dict[str, Any]:
    """Test ``mse`` (Å²) and ``rollout_rmsd`` (Å, averaged over trajectories) of one model."""
    loader = make_loader(datasets.test, windows_per_batch(datasets.test.max_atoms))
    rmsd: dict[str, list[float]] = {}
    for frames, frame_range in zip(frames_list, datasets.ranges["test"]):
        with warnings.catch_warnings():  # a horizon longer than the test span is left out (shown as —)
            warnings.simplefilter("ignore", UserWarning)
            found = rollout_rmsd(model, frames, frame_range, horizons, datasets.stride, max_starts,
                                 starts_per_call=windows_per_batch(frames.n_atoms, 32))
        for horizon, value in found.items():
            rmsd.setdefault(str(horizon), []).append(value)
    return {
        "mse": evaluate_windows(model, loader),
        "rollout_rmsd": {h: float(np.mean(values)) for h, values in rmsd.items()},
    }


def evaluate(
    trained: TrainedModel,
    frames_list: Sequence[Frames] | Frames,
    *,
    horizons: Sequence[int] = (1, 10, 100),
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_windows: int | None = None,
) -> dict[str, Any]:
    """Metrics of ``trained`` and every baseline on the test split of ``frames_list``.

    With ``max_windows``, the test MSE and the baselines' fits use at most that many evenly
    spaced windows per split (for trajectories too long to score whole).

    Returns:
        ``mse`` (Å², mean over test windows, atoms and x/y/z), ``rollout_rmsd`` ({"h": Å}),
        ``baselines`` ({name: mse}), ``baseline_rollout_rmsd`` ({name: {"h": Å}}),
        ``equivariance_error`` (Å) and its ratio to the test displacement RMS
        (``equivariance_error_relative``), ``baseline_equivariance_error`` ({name: Å}),
        ``displacement_rms`` (Å), the ``splits`` (windows per split), ``baseline_history``
        (the autoregressive baseline's number of lags) and, for a model with a prior (the
        equivariant model), ``prior``: its ``name``, ``mse`` and ``rollout_rmsd`` alone.
    """
    if isinstance(frames_list, Frames):
        frames_list = [frames_list]
    datasets = evaluation_datasets(frames_list, trained.history, trained.stride, trained.species,
                                   test_fraction, val_fraction)
    datasets = limit_windows(datasets, max_windows)
    model = trained.model.eval()
    result = score(model, datasets, frames_list, horizons)
    sample = next(iter(make_loader(datasets.test, windows_per_batch(datasets.test.max_atoms, 8))))
    squares = [(float(batch.y.square().sum()), batch.y.numel()) for batch in make_loader(datasets.test, 64)]
    displacement_rms = math.sqrt(sum(total for total, _ in squares) / sum(count for _, count in squares))
    result["equivariance_error"] = equivariance_error(model, sample)
    result["equivariance_error_relative"] = result["equivariance_error"] / displacement_rms
    result["displacement_rms"] = displacement_rms
    prior = getattr(model, "prior_model", None)
    if prior is not None:  # what the learned residual adds, measured against the model's own prior alone
        result["prior"] = {"name": prior.name, **score(prior, datasets, frames_list, horizons)}
    result["baselines"], result["baseline_rollout_rmsd"], result["baseline_equivariance_error"] = {}, {}, {}
    for name, baseline in fit_baselines(datasets, seed).items():
        scores = score(baseline, datasets, frames_list, horizons)
        result["baselines"][name] = scores["mse"]
        result["baseline_rollout_rmsd"][name] = scores["rollout_rmsd"]
        result["baseline_equivariance_error"][name] = equivariance_error(baseline, sample)
    result["splits"] = {name: len(getattr(datasets, name)) for name in ("train", "val", "test")}
    result["history"], result["stride"] = trained.history, trained.stride
    result["baseline_history"] = datasets.history
    return result


def format_table(metrics: dict[str, Any], model_name: str = "model") -> str:
    """The model (and its prior alone), then every baseline: test MSE and rollout RMSD per horizon."""
    horizons = sorted({int(h) for h in metrics["rollout_rmsd"]} |
                      {int(h) for rows in metrics["baseline_rollout_rmsd"].values() for h in rows})
    rows = [(model_name, metrics["mse"], metrics["rollout_rmsd"])]
    if "prior" in metrics:
        prior = metrics["prior"]
        rows.append((f"  its prior ({prior['name']})", prior["mse"], prior["rollout_rmsd"]))
    rows += [(name, metrics["baselines"][name], metrics["baseline_rollout_rmsd"][name]) for name in metrics["baselines"]]
    width = max(24, *(len(name) + 2 for name, _, _ in rows))
    header = f"{'model':<{width}}{'test MSE (Å²)':>15}" + "".join(f"{'RMSD@' + str(h) + ' (Å)':>16}" for h in horizons)
    lines = [header, "-" * len(header)]
    for name, mse, rmsd in rows:
        cells = "".join(f"{rmsd[str(h)]:>16.4g}" if str(h) in rmsd else f"{'—':>16}" for h in horizons)
        lines.append(f"{name:<{width}}{mse:>15.4g}{cells}")
    return "\n".join(lines)
