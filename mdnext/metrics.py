"""The metrics, one definition each (used by training, evaluation and the benchmarks).

* :func:`mse`: mean squared error over atoms and x/y/z of predicted displacements, Å².
* :func:`evaluate_windows`: :func:`mse` over all windows of a loader (a global per-atom mean).
* :func:`rollout_rmsd`: RMSD over atoms after h autoregressive steps, averaged over starts, Å.
* :func:`equivariance_error`: max |f(g·x) − g·f(x)| over random E(3) maps and permutations, Å.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from mdnext.data import DataError, encode_species
from mdnext.frames import Frames
from mdnext.models.base import DisplacementModel
from mdnext.neighbors import minimum_image, smallest_periodic_height
from mdnext.rollout import RolloutError, rollout


def mse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over atoms and x/y/z of ``(pred - target) ** 2``, in float64 (Å² for displacements).

    On the tutorial's data this is its loss ``mean((yhat - y) ** 2)``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    diff = pred.to(torch.float64) - target.to(torch.float64)
    return float(diff.pow(2).mean())


def evaluate_windows(model: DisplacementModel, loader: Iterable[Any], device: torch.device | str | None = None) -> float:
    """:func:`mse` of ``model`` over every window the loader yields, Å².

    Each atom of each window weighs the same (the global mean over all atoms and
    coordinates, not a mean of per-batch means). Runs in eval mode under ``torch.no_grad()``;
    batches are moved to ``device`` when one is given.

    Raises:
        DataError: The loader yields no windows.
    """
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for data in loader:
                if device is not None:
                    data = data.to(device)
                diff = model(data).to(torch.float64) - data.y.to(torch.float64)
                total += float(diff.pow(2).sum())
                count += diff.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise DataError("no windows to evaluate (the split is empty or too short)")
    return total / count


def even_subset(values: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spaced entries of ``values``, first and last included."""
    if values.size <= limit:
        return values
    picks = np.unique(np.round(np.linspace(0, values.size - 1, limit)).astype(np.int64))
    return values[picks]


def rollout_rmsd(
    model: DisplacementModel,
    frames: Frames,
    frame_range: range | None = None,
    horizons: Sequence[int] = (1, 10, 100),
    stride: int = 1,
    max_starts: int = 64,
    starts_per_call: int = 32,
    max_step_rms: float = float("inf"),
) -> dict[int, float]:
    """RMSD over atoms after h rollout steps against the true frame, averaged over starts, Å.

    A start t needs its seed ``t - K s, …, t`` (K = ``model.history``, s = ``stride``) and the
    frame ``t + H s`` of the largest horizon H that fits inside ``frame_range``; every such t
    is a start, thinned to at most ``max_starts`` evenly spaced ones. Step h of the rollout is
    compared with frame ``t + h s`` without alignment (by minimum image under PBC). Horizons
    that do not fit the range even once are left out of the result, with a warning; the
    result is empty when none fits.

    Args:
        model: Any displacement model.
        frames: The trajectory (its species must be in ``model.species``).
        frame_range: Contiguous frames to use (e.g. the test split); default all.
        horizons: Numbers of rollout steps h >= 1 to score.
        stride: Spacing s of the model's frames, in data frames.
        max_starts: Cap on the number of starts (bounds the cost).
        starts_per_call: Starts rolled out together in one batch.
        max_step_rms: Divergence guard passed to :func:`~mdnext.rollout.rollout`; by default
            only non-finite predictions stop it, so a poor but finite model is scored. Under
            periodic boundaries it is at most half the smallest periodic cell height: a longer
            step cannot be told from its periodic images, and a rollout running off to huge
            coordinates would otherwise score near zero by minimum image.

    Returns:
        ``{h: mean RMSD in Å}`` for the horizons that fit, in the order given; ``inf`` for the
        horizons at or after a step where the rollout diverged (non-finite prediction). The
        horizons before it are then scored again on their own (so from the starts that fit them).
    """
    frame_range = range(frames.n_frames) if frame_range is None else frame_range
    if frame_range.step != 1 or frame_range.start < 0 or frame_range.stop > frames.n_frames:
        raise DataError(f"frame range {frame_range} is not a contiguous part of the {frames.n_frames} frames")
    if any(int(h) != h or h < 1 for h in horizons):
        raise DataError(f"horizons must be whole numbers >= 1, got {list(horizons)}")
    history = model.history
    first = frame_range.start + history * stride
    last_frame = frame_range.stop - 1
    fitting = [int(h) for h in horizons if first + h * stride <= last_frame]
    omitted = [int(h) for h in horizons if int(h) not in fitting]
    if omitted:
        warnings.warn(
            f"rollout_rmsd: horizon(s) {omitted} do not fit in frames {frame_range.start}..{frame_range.stop - 1} "
            f"with history {history} and stride {stride}; left out",
            stacklevel=2,
        )
    if not fitting:
        return {}
    longest = max(fitting)
    starts = even_subset(np.arange(first, last_frame - longest * stride + 1), int(max_starts))
    codes = encode_species(frames.species, model.species)
    positions = frames.positions
    pbc = torch.from_numpy(np.array(frames.pbc))
    if frames.is_periodic:
        cells = torch.from_numpy(np.asarray(frames.cell[frame_range]))
        max_step_rms = min(max_step_rms, 0.5 * smallest_periodic_height(cells, pbc))
    sums = dict.fromkeys(fitting, 0.0)
    seed_offsets = np.arange(-history * stride, 1)
    for chunk_start in range(0, starts.size, int(starts_per_call)):
        chunk = starts[chunk_start : chunk_start + int(starts_per_call)]
        seed = torch.from_numpy(np.stack([np.asarray(positions[t + seed_offsets]) for t in chunk]))
        cell = None if frames.cell is None else torch.from_numpy(np.asarray(frames.cell[chunk]))
        try:
            predicted = rollout(model, seed, codes, longest, stride, cell, pbc, max_step_rms=max_step_rms,
                                bonds=frames.bonds)
        except RolloutError as exc:  # diverged: score the horizons before the failing step alone
            shorter = [h for h in fitting if exc.step is not None and h < exc.step]
            scored = rollout_rmsd(model, frames, frame_range, shorter, stride, max_starts, starts_per_call,
                                  max_step_rms) if shorter else {}
            return {h: scored.get(h, math.inf) for h in fitting}
        for h in fitting:
            targets = chunk + h * stride
            truth = torch.from_numpy(np.asarray(positions[targets], dtype=np.float64))
            diff = predicted[:, h - 1] - truth
            if frames.is_periodic:
                diff = minimum_image(diff, torch.from_numpy(np.asarray(frames.cell[targets])).unsqueeze(-3), pbc)
            sums[h] += float(diff.pow(2).sum(-1).mean(-1).sqrt().sum())
    return {h: sums[h] / starts.size for h in fitting}


def _random_orthogonal(generator: torch.Generator, determinant: float) -> torch.Tensor:
    """A random 3×3 orthogonal matrix (Haar) with the given determinant (+1 or -1), float64."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) * determinant < 0:
        q[:, 0] = -q[:, 0]
    return q


def _permutation_within(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of atom indices that keeps every atom in its structure."""
    perm = torch.arange(batch.numel())
    for graph in torch.unique(batch):
        members = torch.nonzero(batch == graph).flatten()
        perm[members] = members[torch.randperm(members.numel(), generator=generator)]
    return perm


def equivariance_error(model: DisplacementModel, data: Any, n_trials: int = 4, seed: int = 0) -> float:
    """Max over trials and atoms of ``|f(g·x) − g·f(x)|`` in Å (output units).

    Each trial draws an orthogonal matrix R (trials alternate rotations, det +1, and
    rotation-reflections, det −1), a translation (normal, 10 Å scale) and a permutation of
    the atoms within each structure. R acts on ``pos`` (then translated), ``history``, ``y``
    and the cell rows; ``species`` and the bonds follow the permutation. For an
    E(3)-equivariant model the result is at rounding level; the linear model's is large.

    Args:
        model: Any displacement model (evaluated in eval mode under ``torch.no_grad()``).
        data: A window (:class:`~torch_geometric.data.Data`) or a batch of windows.
        n_trials: Number of random transformations.
        seed: Seed of the transformations.
    """
    generator = torch.Generator().manual_seed(int(seed))
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(data.pos.shape[0], dtype=torch.long)
    worst = 0.0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            reference = model(data).to(torch.float64)
            for trial in range(int(n_trials)):
                rotation = _random_orthogonal(generator, 1.0 if trial % 2 == 0 else -1.0)
                shift = 10.0 * torch.randn(3, generator=generator, dtype=torch.float64)
                perm = _permutation_within(batch.cpu(), generator).to(data.pos.device)
                rotation, shift = rotation.to(data.pos.device), shift.to(data.pos.device)
                moved = data.clone()
                moved.pos = data.pos.to(torch.float64)[perm] @ rotation.T + shift
                moved.history = data.history.to(torch.float64)[perm] @ rotation.T
                moved.species = data.species[perm]
                if getattr(data, "bond_index", None) is not None:
                    moved.bond_index = torch.argsort(perm)[data.bond_index]
                if getattr(data, "y", None) is not None:
                    moved.y = data.y.to(torch.float64)[perm] @ rotation.T
                if getattr(data, "cell", None) is not None:
                    moved.cell = data.cell.to(torch.float64) @ rotation.T
                expected = reference[perm] @ rotation.T
                error = (model(moved).to(torch.float64) - expected).norm(dim=-1).max()
                worst = max(worst, float(error))
    finally:
        model.train(was_training)
    return worst
