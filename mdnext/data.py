"""Windows of past displacements → next displacement, chronological splits and PyG batching.

A *window* at the current frame t of a trajectory x (stride s, history K) reads the frames
t - K s, …, t and targets t + s; it is a :class:`torch_geometric.data.Data` with the fields of
the batch contract in :mod:`mdnext.models.base`:

* ``pos`` (N, 3) float64 ``x[t]``, Å;
* ``history`` (N, K, 3) float64, ``history[:, j] = x[t - j s] - x[t - (j + 1) s]``, Å;
* ``y`` (N, 3) float64 ``x[t + s] - x[t]``, Å;
* ``species`` (N,) int64 codes into the dataset's species list;
* ``cell`` (1, 3, 3) float64 lattice vectors (rows) at frame t, zeros without a box, Å;
* ``pbc`` (1, 3) bool.

Under periodic boundaries every displacement is taken by minimum image (in float64), so a
trajectory wrapped into its box gives the same windows as the unwrapped one. The displacements
are computed once per trajectory and stride and stored; items only index them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from mdnext.errors import MDNextError
from mdnext.frames import Frames
from mdnext.neighbors import minimum_image

SPLITS = ("train", "val", "test")


class DataError(MDNextError, ValueError):
    """Frames that cannot be cut into the requested windows or splits."""


def window_span(history: int, stride: int) -> int:
    """Number of consecutive frames one window touches: ``history * stride + stride + 1``."""
    return history * stride + stride + 1


def _check_history_stride(history: int, stride: int) -> None:
    if int(history) != history or history < 0:
        raise DataError(f"history must be a whole number >= 0, got {history}")
    if int(stride) != stride or stride < 1:
        raise DataError(f"stride must be a whole number >= 1, got {stride}")


def _split_sizes(n_frames: int, test_fraction: float, val_fraction: float) -> tuple[int, int, int]:
    n_test = int(round(test_fraction * n_frames))
    n_val = int(round(val_fraction * n_frames))
    return n_frames - n_test - n_val, n_val, n_test


def _split_fits(n_frames: int, test_fraction: float, val_fraction: float, span: int) -> bool:
    n_train, n_val, n_test = _split_sizes(n_frames, test_fraction, val_fraction)
    return (
        n_train >= span
        and (test_fraction == 0 or n_test >= span)
        and (val_fraction == 0 or n_val >= span)
    )


def chronological_split(
    n_frames: int,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    *,
    history: int = 0,
    stride: int = 1,
) -> dict[str, range]:
    """Frame ranges for train, validation and test, in time order.

    Test is the last ``round(test_fraction * n_frames)`` frames (the tutorial's last 20% by
    default), validation the ``round(val_fraction * n_frames)`` frames just before it, and
    train everything before that. Windows are later cut inside each range, so none crosses a
    boundary. A fraction of 0 gives an empty range.

    Args:
        n_frames: Number of frames T in the trajectory.
        test_fraction: Fraction of frames for the test range, in [0, 1).
        val_fraction: Fraction of frames for the validation range, in [0, 1).
        history: History K of the windows, to check that every non-empty range holds one.
        stride: Stride s of the windows, in frames.

    Returns:
        ``{"train": range, "val": range, "test": range}`` of frame indices.

    Raises:
        DataError: Bad fractions, or too few frames for one window of ``history`` and
            ``stride`` in each non-empty range (the message says how many are needed).
    """
    _check_history_stride(history, stride)
    for label, value in (("test", test_fraction), ("validation", val_fraction)):
        if not (0.0 <= value < 1.0):
            raise DataError(f"{label} fraction must be in [0, 1), got {value}")
    if test_fraction + val_fraction >= 1.0:
        raise DataError(
            f"test fraction {test_fraction} plus validation fraction {val_fraction} leaves no training frames"
        )
    span = window_span(history, stride)
    if not _split_fits(n_frames, test_fraction, val_fraction, span):
        needed = _frames_needed(test_fraction, val_fraction, span)
        raise DataError(
            f"{n_frames} frames are too few: history {history} and stride {stride} need {span} frames per window, "
            f"so test fraction {test_fraction:g} and validation fraction {val_fraction:g} need at least {needed} frames"
        )
    n_train, n_val, _ = _split_sizes(n_frames, test_fraction, val_fraction)
    return {
        "train": range(0, n_train),
        "val": range(n_train, n_train + n_val),
        "test": range(n_train + n_val, n_frames),
    }


def _frames_needed(test_fraction: float, val_fraction: float, span: int) -> int:
    """Smallest trajectory length whose every non-empty split holds one window of ``span`` frames."""
    nonempty = 1 + (test_fraction > 0) + (val_fraction > 0)
    start = span * nonempty
    for fraction in (test_fraction, val_fraction, 1.0 - test_fraction - val_fraction):
        if fraction > 0:
            start = max(start, math.floor((span - 0.5) / fraction) - 1)
    n = start
    while not _split_fits(n, test_fraction, val_fraction, span):
        n += 1
    return n


def species_list(frames_list: Sequence[Frames]) -> list[str]:
    """The sorted union of the species of all trajectories."""
    names: set[str] = set()
    for frames in frames_list:
        names.update(str(s) for s in np.unique(frames.species))
    return sorted(names)


def encode_species(species: np.ndarray, known: Sequence[str]) -> torch.Tensor:
    """(N,) int64 codes of ``species`` into the list ``known``.

    Raises:
        DataError: A species that is not in ``known`` (the message lists both).
    """
    index = {name: code for code, name in enumerate(known)}
    missing = sorted({str(s) for s in species} - set(index))
    if missing:
        raise DataError(f"species {', '.join(missing)} not in the species list [{', '.join(known)}]")
    return torch.tensor([index[str(s)] for s in species], dtype=torch.long)


def wrap_positions(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """Positions wrapped into the box along periodic directions, as :meth:`Frames.wrapped` does.

    Args:
        positions: (..., M, 3) float64 positions, Å.
        cell: (..., 3, 3) lattice vectors as rows, Å (invertible), broadcast over leading dims.
        pbc: (3,) bool periodic directions.
    """
    pbc = torch.as_tensor(pbc, dtype=torch.bool, device=positions.device)
    if not bool(pbc.any()):
        return positions
    fractional = positions @ torch.linalg.inv(cell)
    fractional = fractional - torch.floor(fractional) * pbc.to(torch.float64)
    return fractional @ cell


@dataclasses.dataclass(frozen=True)
class _Track:
    """One trajectory's frames [offset, offset + len) as tensors, with forward displacements.

    ``disp[u] = x[offset + u + s] - x[offset + u]`` (minimum image under PBC, cell of the later frame).
    """

    pos: torch.Tensor  # (L, N, 3) float64
    disp: torch.Tensor  # (L - s, N, 3) float64
    cell: torch.Tensor  # (L, 3, 3) float64, zeros without a box
    pbc: torch.Tensor  # (1, 3) bool
    species: torch.Tensor  # (N,) int64
    offset: int


def _make_track(frames: Frames, frame_range: range, stride: int, species: Sequence[str]) -> _Track:
    start, stop = frame_range.start, frame_range.stop
    pos = torch.from_numpy(np.array(frames.positions[start:stop], dtype=np.float64))
    if frames.cell is not None:
        cell = torch.from_numpy(np.array(frames.cell[start:stop], dtype=np.float64))
    else:
        cell = torch.zeros(pos.shape[0], 3, 3, dtype=torch.float64)
    pbc = torch.from_numpy(np.array(frames.pbc, dtype=bool))
    disp = pos[stride:] - pos[:-stride] if pos.shape[0] > stride else pos[:0]
    if frames.is_periodic and disp.shape[0]:
        disp = minimum_image(disp, cell[stride:].unsqueeze(-3), pbc)
    return _Track(
        pos=pos,
        disp=disp.contiguous(),
        cell=cell,
        pbc=pbc.reshape(1, 3),
        species=encode_species(frames.species, species),
        offset=start,
    )


def _check_ranges(frames_list: Sequence[Frames], ranges: Sequence[range] | None) -> list[range]:
    if ranges is None:
        return [range(f.n_frames) for f in frames_list]
    if len(ranges) != len(frames_list):
        raise DataError(f"got {len(ranges)} frame ranges for {len(frames_list)} trajectories")
    checked = []
    for i, (frames, r) in enumerate(zip(frames_list, ranges)):
        if r.step != 1 or r.start < 0 or r.stop > frames.n_frames:
            raise DataError(f"trajectory {i}: frame range {r} is not a contiguous part of its {frames.n_frames} frames")
        checked.append(r)
    return checked


class WindowDataset(torch.utils.data.Dataset):
    """All windows of history ``history`` and stride ``stride`` inside given frame ranges.

    A window at current frame t needs frames ``t - history * stride`` to ``t + stride``
    inside its trajectory's range, so no window crosses a split boundary. Trajectories may
    hold the same or different atom sets.

    Args:
        frames_list: Trajectories (a single :class:`Frames` is accepted too).
        history: Number K >= 0 of past displacements per window.
        stride: Spacing s >= 1 between the frames of a window, in frames.
        ranges: One frame range per trajectory (contiguous); default all frames.
        species: Species names defining the integer codes; default :func:`species_list`.
    """

    def __init__(
        self,
        frames_list: Sequence[Frames] | Frames,
        history: int,
        stride: int = 1,
        ranges: Sequence[range] | None = None,
        species: Sequence[str] | None = None,
    ) -> None:
        if isinstance(frames_list, Frames):
            frames_list = [frames_list]
        _check_history_stride(history, stride)
        ranges = _check_ranges(frames_list, ranges)
        species = species_list(frames_list) if species is None else list(species)
        tracks = [_make_track(f, r, stride, species) for f, r in zip(frames_list, ranges)]
        self._init(tracks, history, stride, ranges, species)

    @classmethod
    def _from_tracks(
        cls, tracks: list[_Track], history: int, stride: int, ranges: list[range], species: list[str],
        horizon: int = 1,
    ) -> WindowDataset:
        dataset = cls.__new__(cls)
        dataset._init(tracks, history, stride, ranges, species, horizon)
        return dataset

    def with_horizon(self, horizon: int) -> WindowDataset:
        """The windows of the same ranges that also carry the next ``horizon`` displacements.

        Items then hold ``future`` (N, horizon, 3) float64, Å: ``future[:, j] = x[t + (j+1) s] - x[t + j s]``
        (``y`` is ``future[:, 0]``); a window needs ``t + horizon * s`` inside its range.
        """
        if int(horizon) != horizon or horizon < 1:
            raise DataError(f"horizon must be a whole number >= 1, got {horizon}")
        return self._from_tracks(self._tracks, self.history, self.stride, self.ranges, self.species, int(horizon))

    def _init(self, tracks: list[_Track], history: int, stride: int, ranges: list[range], species: list[str],
              horizon: int = 1) -> None:
        self.history = int(history)
        self.stride = int(stride)
        self.horizon = int(horizon)
        self.species = list(species)
        self.ranges = list(ranges)
        self._tracks = tracks
        which, frame = [], []
        for i, r in enumerate(ranges):
            first, last = r.start + history * stride, r.stop - 1 - horizon * stride
            if last >= first:
                which.append(np.full(last - first + 1, i, dtype=np.int64))
                frame.append(np.arange(first, last + 1, dtype=np.int64))
        self._which = np.concatenate(which) if which else np.zeros(0, dtype=np.int64)
        self._frame = np.concatenate(frame) if frame else np.zeros(0, dtype=np.int64)

    @property
    def windows(self) -> list[tuple[int, int]]:
        """(trajectory index, current frame t) of every window, in item order."""
        return list(zip(self._which.tolist(), self._frame.tolist()))

    @property
    def n_atoms(self) -> int:
        """Total number of atoms over all windows (the weight of a global per-atom mean)."""
        return int(sum(self._tracks[i].pos.shape[1] for i in self._which.tolist()))

    def __len__(self) -> int:
        return int(self._frame.shape[0])

    def __getitem__(self, index: int) -> Data:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        track = self._tracks[int(self._which[index])]
        u = int(self._frame[index]) - track.offset
        lags = u - self.stride * torch.arange(1, self.history + 1)
        history = track.disp[lags].permute(1, 0, 2).contiguous()
        data = Data(
            pos=track.pos[u],
            history=history,
            y=track.disp[u],
            species=track.species,
            cell=track.cell[u].unsqueeze(0),
            pbc=track.pbc,
        )
        if self.horizon > 1:
            data.future = track.disp[u + self.stride * torch.arange(self.horizon)].permute(1, 0, 2).contiguous()
        return data


@dataclasses.dataclass(frozen=True)
class Datasets:
    """Train, validation and test windows of the same trajectories.

    Attributes:
        train, val, test: The windows inside each split's frame ranges.
        species: Species names behind the integer codes.
        ranges: ``{"train"|"val"|"test": [range per trajectory]}``.
        history: History K of the windows.
        stride: Stride s of the windows, in frames.
    """

    train: WindowDataset
    val: WindowDataset
    test: WindowDataset
    species: list[str]
    ranges: dict[str, list[range]]
    history: int
    stride: int


def make_datasets(
    frames_list: Sequence[Frames] | Frames,
    history: int,
    stride: int = 1,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    species: Sequence[str] | None = None,
) -> Datasets:
    """Split every trajectory chronologically and cut the windows of each split.

    Each trajectory is split on its own (see :func:`chronological_split`); its positions and
    displacements are converted once and shared by the three splits.

    Raises:
        DataError: A trajectory too short for the splits (named by index), an unknown species.
    """
    if isinstance(frames_list, Frames):
        frames_list = [frames_list]
    if not frames_list:
        raise DataError("no trajectories given")
    _check_history_stride(history, stride)
    species = species_list(frames_list) if species is None else list(species)
    splits = []
    for i, frames in enumerate(frames_list):
        try:
            splits.append(chronological_split(frames.n_frames, test_fraction, val_fraction, history=history, stride=stride))
        except DataError as exc:
            prefix = f"trajectory {i}: " if len(frames_list) > 1 else ""
            raise DataError(f"{prefix}{exc}") from None
    tracks = [_make_track(f, range(f.n_frames), stride, species) for f in frames_list]
    ranges = {name: [split[name] for split in splits] for name in SPLITS}
    datasets = {name: WindowDataset._from_tracks(tracks, history, stride, ranges[name], species) for name in SPLITS}
    return Datasets(**datasets, species=species, ranges=ranges, history=int(history), stride=int(stride))


def make_loader(dataset: WindowDataset, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A PyG loader over ``dataset``; with ``shuffle`` its order comes from a generator seeded by ``seed``.

    Two loaders made with the same seed yield the same sequence of batches (epoch after epoch).
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise DataError(f"batch size must be a whole number >= 1, got {batch_size}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=int(batch_size), shuffle=shuffle, generator=generator)
