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
trajectory wrapped into its box gives the same windows as the unwrapped one. Frames are read
when a batch is built (array operations, no per-window Python objects), so a memory-mapped
trajectory (:mod:`mdnext.cache`) trains without being loaded whole.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from mdnext.errors import MDNextError
from mdnext.frames import Frames
from mdnext.neighbors import minimum_image

SPLITS = ("train", "val", "test")


#: Atoms per batch of windows scored without gradients (validation, evaluation, rollout
#: starts): bounds the memory of scoring large systems; small ones go many windows at a time.
ATOMS_PER_BATCH = 20_000


def windows_per_batch(n_atoms: int, most: int = 64) -> int:
    """How many windows of ``n_atoms`` atoms to score at once: at most ``most``, at least 1."""
    return max(1, min(int(most), ATOMS_PER_BATCH // max(int(n_atoms), 1)))


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


def read_frames(positions: np.ndarray, frame_indices: np.ndarray) -> np.ndarray:
    """``positions[frame_indices]`` as a float64 array in memory (``frame_indices`` of any shape).

    For a memory map (a cached trajectory, see :mod:`mdnext.cache`) the pages just read are
    released from this process again, so reading a trajectory larger than memory frame by
    frame keeps the resident set small (the operating system's file cache still holds them).
    """
    frames = np.array(positions[frame_indices], dtype=np.float64)
    mapping = getattr(positions, "_mmap", None)
    if mapping is not None and hasattr(mapping, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)
    return frames


@dataclasses.dataclass(frozen=True)
class _Track:
    """One trajectory's positions (read on demand, never copied whole), box and species."""

    positions: np.ndarray  # (T, N, 3) float64, possibly a memory map
    cell: torch.Tensor  # (T, 3, 3) float64, zeros without a box
    pbc: torch.Tensor  # (1, 3) bool
    periodic: bool
    species: torch.Tensor  # (N,) int64
    bonds: torch.Tensor | None  # (2, M) int64, or None without a bond topology

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[1])

    def windows(self, frames: np.ndarray, history: int, stride: int, horizon: int) -> dict[str, torch.Tensor]:
        """Fields of the windows at current frames ``frames`` (b,), stacked: (b, N, …).

        Reads frames ``t - K s … t + horizon s`` and differences neighbouring ones in float64
        (minimum image under PBC with the cell of the later frame).
        """
        offsets = stride * np.arange(-history, horizon + 1)
        pos = torch.from_numpy(read_frames(self.positions, frames[:, None] + offsets))  # (b, K + H + 1, N, 3)
        disp = pos[:, 1:] - pos[:, :-1]
        if self.periodic:
            later = self.cell[torch.from_numpy(frames[:, None] + offsets[1:])]
            disp = minimum_image(disp, later.unsqueeze(-3), self.pbc.reshape(3))
        disp = disp.transpose(1, 2)  # (b, N, K + H, 3), oldest first
        fields = {
            "pos": pos[:, history],
            "history": disp[:, :, :history].flip(2),
            "y": disp[:, :, history],
            "cell": self.cell[torch.from_numpy(frames)],
        }
        if horizon > 1:
            fields["future"] = disp[:, :, history:]
        return fields


def _make_track(frames: Frames, species: Sequence[str]) -> _Track:
    cell = (torch.from_numpy(np.array(frames.cell, dtype=np.float64)) if frames.cell is not None
            else torch.zeros(frames.n_frames, 3, 3, dtype=torch.float64))
    return _Track(
        positions=frames.positions,
        cell=cell,
        pbc=torch.from_numpy(np.array(frames.pbc, dtype=bool)).reshape(1, 3),
        periodic=frames.is_periodic,
        species=encode_species(frames.species, species),
        bonds=None if frames.bonds is None else torch.from_numpy(frames.bonds).T.contiguous(),
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
    hold the same or different atom sets. Frames are read when a window is asked for, so a
    memory-mapped trajectory is never loaded whole.

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
        tracks = [_make_track(f, species) for f in frames_list]
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

    def subset(self, max_windows: int | None) -> WindowDataset:
        """At most ``max_windows`` evenly spaced windows of this dataset (itself when it has no more)."""
        if max_windows is None or len(self) <= max_windows:
            return self
        if int(max_windows) != max_windows or max_windows < 1:
            raise DataError(f"max_windows must be a whole number >= 1, got {max_windows}")
        picks = np.unique(np.round(np.linspace(0, len(self) - 1, int(max_windows))).astype(np.int64))
        subset = self._from_tracks(self._tracks, self.history, self.stride, self.ranges, self.species, self.horizon)
        subset._which, subset._frame = self._which[picks], self._frame[picks]
        return subset

    @property
    def windows(self) -> list[tuple[int, int]]:
        """(trajectory index, current frame t) of every window, in item order."""
        return list(zip(self._which.tolist(), self._frame.tolist()))

    @property
    def n_atoms(self) -> int:
        """Total number of atoms over all windows (the weight of a global per-atom mean)."""
        counts = np.array([track.n_atoms for track in self._tracks], dtype=np.int64)
        return int(counts[self._which].sum()) if len(self) else 0

    @property
    def max_atoms(self) -> int:
        """Atoms in the largest structure (0 without windows)."""
        return max((self._tracks[int(i)].n_atoms for i in np.unique(self._which)), default=0)

    def __len__(self) -> int:
        return int(self._frame.shape[0])

    def __getitem__(self, index: int) -> Data:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        batch = self.batch(np.array([index % len(self)]))
        return Data(**{key: batch[key] for key in batch.keys() if key not in ("batch", "ptr")})

    def batch(self, indices: np.ndarray | Sequence[int]) -> Batch:
        """The windows at ``indices`` as one batch (fields as in :mod:`mdnext.models.base`).

        Windows are gathered with array operations, one read per trajectory, in the order given.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        which, frames = self._which[indices], self._frame[indices]
        structures: list[dict[str, torch.Tensor]] = [{} for _ in indices]
        for track_index in np.unique(which):
            track = self._tracks[int(track_index)]
            chosen = np.flatnonzero(which == track_index)
            fields = track.windows(frames[chosen], self.history, self.stride, self.horizon)
            fields["species"] = track.species.expand(len(chosen), -1)
            fields["pbc"] = track.pbc.expand(len(chosen), -1)
            for row, position in enumerate(chosen):
                structures[position] = {key: value[row] for key, value in fields.items()}
        tracks = [self._tracks[int(i)] for i in which]
        sizes = torch.tensor([track.n_atoms for track in tracks], dtype=torch.long)
        batch = Batch(**{key: torch.cat([part[key] for part in structures]) for key in structures[0] if key != "cell"})
        batch.cell = torch.stack([part["cell"] for part in structures])
        batch.pbc = batch.pbc.reshape(-1, 3)
        batch.batch = torch.repeat_interleave(torch.arange(len(indices)), sizes)
        batch.ptr = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
        if all(track.bonds is not None for track in tracks):
            batch.bond_index = torch.cat([track.bonds + offset for track, offset in zip(tracks, batch.ptr)], dim=1)
        return batch


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
    tracks = [_make_track(f, species) for f in frames_list]
    ranges = {name: [split[name] for split in splits] for name in SPLITS}
    datasets = {name: WindowDataset._from_tracks(tracks, history, stride, ranges[name], species) for name in SPLITS}
    return Datasets(**datasets, species=species, ranges=ranges, history=int(history), stride=int(stride))


class WindowLoader:
    """Batches of windows, optionally shuffled, optionally one rank's share of each batch.

    Each pass draws one order of all windows (a permutation from a generator seeded by
    ``seed`` with ``shuffle``, else item order) and cuts it into batches of ``batch_size``.
    With ``world_size`` P > 1, rank r receives the r-th of P near-equal contiguous parts of
    every batch, so the P ranks together see exactly the single-process batches; a last batch
    smaller than P is skipped by every rank (each rank must take the same number of steps).

    With ``limit``, a pass covers only the first ``limit`` windows of the order (with
    ``shuffle``, a fresh random subset per seed). Every pass yields the same batches; draw a
    new ``seed`` per epoch for a new order.
    """

    def __init__(self, dataset: WindowDataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1, limit: int | None = None) -> None:
        if int(batch_size) != batch_size or batch_size < 1:
            raise DataError(f"batch size must be a whole number >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside a world of {world_size} processes")
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, int(batch_size), bool(shuffle), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.limit = None if limit is None else int(limit)

    def _batches(self) -> list[np.ndarray]:
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).numpy()
        else:
            order = np.arange(n)
        order = order[: self.limit]
        n = len(order)
        chunks = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.world_size == 1:
            return chunks
        return [np.array_split(chunk, self.world_size)[self.rank] for chunk in chunks if len(chunk) >= self.world_size]

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[Batch]:
        for indices in self._batches():
            yield self.dataset.batch(indices)


def make_loader(dataset: WindowDataset, batch_size: int, shuffle: bool = False, seed: int = 0, *,
                rank: int = 0, world_size: int = 1, limit: int | None = None) -> WindowLoader:
    """A :class:`WindowLoader` over ``dataset`` (see there for shuffling, sharding and ``limit``)."""
    return WindowLoader(dataset, batch_size, shuffle, seed, rank, world_size, limit)
