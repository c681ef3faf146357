"""Autoregressive extrapolation: feed a model its own predictions through a history buffer.

Each step predicts the frame ``stride`` data frames ahead of the newest one and shifts that
displacement into the model's history (K past displacements at spacing s, newest first), so
the generated frames are s data frames apart. Several starts run together as one batch of
graphs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from mdnext.checkpoint import TrainedModel
from mdnext.data import encode_species, wrap_positions
from mdnext.errors import FramesError, InputError, MDNextError
from mdnext.frames import Frames, concatenate
from mdnext.models.base import DisplacementModel
from mdnext.neighbors import PositionsOutOfRange, minimum_image
from mdnext.topology import check_bonds

#: Default guard: a step whose displacement RMS exceeds this multiple of the seed's is a divergence.
SEED_RMS_FACTOR = 100.0
#: Default guard in Å when the seed carries no displacement (history 0 or a still seed).
ABSOLUTE_STEP_RMS = 5.0


class RolloutError(MDNextError, RuntimeError):
    """A rollout that diverged (non-finite or implausibly large step); ``step`` is 1-based."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


def _device(model: torch.nn.Module, fallback: torch.device) -> torch.device:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return fallback if tensor is None else tensor.device


def _batch(pos: torch.Tensor, history: torch.Tensor, species: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
           bonds: torch.Tensor | None) -> Batch:
    """A batch of B structures from pos (B, N, 3), history (B, N, K, 3), cell (B, 3, 3), pbc (3,), bonds (2, M)."""
    n_starts = pos.shape[0]
    pbc_row = pbc.reshape(1, 3)
    topology = {} if bonds is None else {"bond_index": bonds}
    return Batch.from_data_list(
        [
            Data(pos=pos[b], history=history[b], species=species, cell=cell[b].unsqueeze(0), pbc=pbc_row, **topology)
            for b in range(n_starts)
        ]
    )


def rollout(
    model: DisplacementModel,
    seed_positions: torch.Tensor | np.ndarray,
    species: torch.Tensor | Sequence[int],
    n_steps: int,
    stride: int = 1,
    cell: torch.Tensor | np.ndarray | None = None,
    pbc: torch.Tensor | Sequence[bool] | bool = False,
    wrap: bool = False,
    max_step_rms: float | None = None,
    bonds: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Extrapolate ``n_steps`` frames, each ``stride`` data frames after the previous one.

    Positions accumulate unwrapped (predicted displacements are added), and the model sees
    these unwrapped positions; ``wrap=True`` wraps only the returned frames into the box.

    Args:
        model: A displacement model with history K = ``model.history``; put in eval mode for
            the rollout (its mode is restored afterwards), run under ``torch.no_grad()``.
        seed_positions: (B, F, N, 3) float64 Å, B starts of F >= K s + 1 consecutive frames at
            the data's time step, oldest first; only the newest K s + 1 are read. (F, N, 3)
            is taken as B = 1.
        species: (N,) int64 species codes into ``model.species``.
        n_steps: Number of frames to generate.
        stride: Spacing s in data frames between the model's input frames and of its output.
        cell: (3, 3) or (B, 3, 3) lattice vectors as rows in Å, or None without a box.
        pbc: (3,) bool periodic directions (or one bool for all three).
        wrap: Wrap the returned positions into the box along periodic directions.
        max_step_rms: Largest allowed RMS displacement of one step of one start, in Å.
            Default: 100× the RMS of the seed's history displacements, or 5 Å when the
            seed has no displacement (history 0, or atoms standing still).
        bonds: (M, 2) bonded atom pairs (see :mod:`mdnext.topology`), for models that use
            the bond topology; None without one.

    Returns:
        (B, n_steps, N, 3) float64 positions in Å; frame i is ``(i + 1) * stride`` data frames
        after the newest seed frame.

    Raises:
        RolloutError: Too short a seed, bad shapes, or a diverging step (non-finite or above
            ``max_step_rms``); the message names the step.
    """
    history, stride, n_steps = model.history, int(stride), int(n_steps)
    if stride < 1 or n_steps < 0:
        raise RolloutError(f"rollout needs stride >= 1 and n_steps >= 0, got stride {stride}, n_steps {n_steps}")
    seed = torch.as_tensor(seed_positions, dtype=torch.float64)
    if seed.ndim == 3:
        seed = seed.unsqueeze(0)
    if seed.ndim != 4 or seed.shape[-1] != 3:
        raise RolloutError(f"seed positions must have shape (B, frames, N, 3), got {tuple(seed.shape)}")
    n_starts, n_seed, n_atoms, _ = seed.shape
    needed = history * stride + 1
    if n_seed < needed:
        raise RolloutError(
            f"model {model.name!r} with history {history} and stride {stride} needs {needed} seed frames, got {n_seed}"
        )
    device = _device(model, seed.device)
    out_device = seed.device
    seed = seed.to(device)
    species = torch.as_tensor(species, dtype=torch.long, device=device)
    if species.shape != (n_atoms,):
        raise RolloutError(f"species must have shape ({n_atoms},), got {tuple(species.shape)}")
    pbc = torch.as_tensor(pbc, dtype=torch.bool, device=device).expand(3).clone()
    if cell is None:
        if bool(pbc.any()):
            raise RolloutError("periodic boundaries need a cell")
        cell = torch.zeros(n_starts, 3, 3, dtype=torch.float64, device=device)
    else:
        cell = torch.as_tensor(cell, dtype=torch.float64, device=device)
        if cell.shape == (3, 3):
            cell = cell.expand(n_starts, 3, 3)
        if cell.shape != (n_starts, 3, 3):
            raise RolloutError(f"cell must have shape (3, 3) or ({n_starts}, 3, 3), got {tuple(cell.shape)}")
    periodic = bool(pbc.any())
    if bonds is not None:
        try:
            pairs = check_bonds(torch.as_tensor(bonds).cpu().numpy(), n_atoms)
        except FramesError as exc:
            raise RolloutError(f"bonds: {exc}") from None
        bonds = torch.as_tensor(pairs, device=device).T.contiguous()

    # frames t - K s, ..., t (oldest first) → history buffer (B, N, K, 3), newest first
    used = seed[:, n_seed - 1 - stride * torch.arange(history, -1, -1, device=device)]
    past = used[:, 1:] - used[:, :-1]
    if periodic and history:
        past = minimum_image(past, cell[:, None, None], pbc)
    buffer = past.flip(1).permute(0, 2, 1, 3).contiguous()
    if max_step_rms is None:
        seed_rms = float(past.pow(2).mean().sqrt()) if history else 0.0
        max_step_rms = SEED_RMS_FACTOR * seed_rms if seed_rms > 0 else ABSOLUTE_STEP_RMS

    current = seed[:, -1].clone()
    frames = torch.empty(n_starts, n_steps, n_atoms, 3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for step in range(n_steps):
                try:
                    predicted = model(_batch(current, buffer, species, cell, pbc, bonds)).to(torch.float64)
                except PositionsOutOfRange as exc:
                    raise RolloutError(f"rollout step {step + 1} of {n_steps}: {exc}", step + 1) from exc
                predicted = predicted.reshape(n_starts, n_atoms, 3)
                _guard(predicted, step + 1, n_steps, max_step_rms)
                current = current + predicted
                frames[:, step] = current
                if history:
                    buffer = torch.cat([predicted.unsqueeze(2), buffer[:, :, :-1]], dim=2)
    finally:
        model.train(was_training)
    if wrap and periodic:
        frames = wrap_positions(frames, cell.unsqueeze(1), pbc)
    return frames.to(out_device)


def _guard(predicted: torch.Tensor, step: int, n_steps: int, max_step_rms: float) -> None:
    """Raise :class:`RolloutError` for a non-finite or oversized step (predicted (B, N, 3))."""
    if not bool(torch.isfinite(predicted).all()):
        raise RolloutError(f"rollout step {step} of {n_steps}: the model predicted non-finite displacements", step)
    rms = predicted.pow(2).mean(dim=(1, 2)).sqrt()
    worst = float(rms.max()) if rms.numel() else 0.0
    if worst > max_step_rms:
        raise RolloutError(
            f"rollout step {step} of {n_steps}: displacement RMS {worst:.3g} Å exceeds the bound "
            f"{max_step_rms:.3g} Å; the rollout has diverged",
            step,
        )


def extrapolate(
    trained: TrainedModel,
    frames: Frames,
    n_frames: int,
    *,
    wrap: bool = False,
    include_input: bool = False,
) -> Frames:
    """Continue ``frames`` by ``n_frames`` predicted frames.

    The history buffer is seeded from the input's last ``k * stride + 1`` frames; new frames
    are ``stride`` input frames apart, their time stamps continue from the input's last frame,
    and the input's topology (species, masses, names, residues), box and pbc are kept.

    Args:
        trained: The model with its stride (see :class:`~mdnext.checkpoint.TrainedModel`).
        frames: The trajectory to continue; positions (T, N, 3) in Å.
        n_frames: Number of frames to add (>= 1).
        wrap: Wrap the new positions into the box along periodic directions.
        include_input: Return the input frames followed by the new ones.

    Returns:
        (n_frames, N, 3) new frames (after the input's when ``include_input``).

    Raises:
        InputError: Too few input frames for the model's history, or ``n_frames`` < 1.
        DataError: Species the model does not know.
        RolloutError: The rollout diverged; the message names the step.
    """
    if int(n_frames) != n_frames or n_frames < 1:
        raise InputError(f"number of frames to extrapolate must be a positive integer, got {n_frames}")
    stride, needed = trained.stride, trained.history * trained.stride + 1
    if frames.n_frames < needed:
        raise InputError(
            f"model history {trained.history} with stride {stride} needs at least {needed} input frames, "
            f"got {frames.n_frames}"
        )
    species = encode_species(frames.species, trained.species)
    cell = frames.cell[-1] if frames.cell is not None else None
    positions = rollout(trained.model, frames.positions[-needed:], species, int(n_frames), stride,
                        cell=cell, pbc=frames.pbc if frames.is_periodic else False, wrap=wrap,
                        bonds=frames.bonds)[0]
    dt = frames.dt if frames.dt is not None else trained.dt
    times = frames.times if frames.times is not None else (None if dt is None else np.arange(frames.n_frames) * dt)
    new_time = None if times is None or dt is None else times[-1] + dt * stride * np.arange(1, n_frames + 1)
    new = frames.replace(
        positions=positions.numpy(),
        cell=None if cell is None else np.broadcast_to(cell, (n_frames, 3, 3)),
        dt=None if dt is None else dt * stride,
        time=new_time,
        source={**frames.source, "extrapolated_by": trained.model.name, "stride": stride},
    )
    if not include_input:
        return new
    joined = concatenate([frames.replace(time=times), new])
    return joined if stride == 1 else joined.replace(dt=None)
