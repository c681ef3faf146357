"""The common frame tensor that every reader produces and every writer consumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from mdnext.errors import FramesError
from mdnext.topology import bonds_within, check_bonds

#: Per-atom topology fields that writers know how to carry back out (each an (N,) array).
ATOM_FIELDS = ("names", "elements", "types", "resnames", "resids", "segids", "charges")


@dataclasses.dataclass(frozen=True, eq=False)
class Frames:
    """A trajectory of one fixed set of atoms, in Å and ps.

    Attributes:
        positions: (T, N, 3) float64 Cartesian positions in Å. May be a memory map.
        species: (N,) str, element symbols or type names; one per atom.
        masses: (N,) float64 masses in amu, or None where unknown.
        cell: (T, 3, 3) float64 lattice vectors in Å as rows, or None without a box.
        pbc: (3,) bool, periodicity along each lattice vector.
        dt: time between consecutive frames in ps, or None where unknown.
        time: (T,) float64 time stamps in ps, or None (then derived from ``dt`` where known).
        atoms: per-atom topology needed to write the atoms back, a subset of
            :data:`ATOM_FIELDS` mapped to (N,) arrays (names, residues, …).
        source: where the frames came from (``path``, ``format``, ``reader``, …).
        bonds: (M, 2) int64 bonded atom pairs (0-based, ``i < j``, sorted, unique), or None
            where the source has no bond topology (see :mod:`mdnext.topology`).
    """

    positions: np.ndarray
    species: np.ndarray
    masses: np.ndarray | None = None
    cell: np.ndarray | None = None
    pbc: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3, dtype=bool))
    dt: float | None = None
    time: np.ndarray | None = None
    atoms: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    source: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    bonds: np.ndarray | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        positions = self.positions
        if not isinstance(positions, np.memmap) or positions.dtype != np.float64:
            positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim == 3 and positions.shape[-1] == 2:
            positions = np.concatenate([positions, np.zeros(positions.shape[:2] + (1,))], axis=-1)
        if positions.ndim != 3 or positions.shape[-1] != 3:
            raise FramesError(f"positions must have shape (T, N, 3), got {positions.shape}")
        n_frames, n_atoms, _ = positions.shape
        if n_frames < 1 or n_atoms < 1:
            raise FramesError(f"need at least one frame and one atom, got shape {positions.shape}")
        if not isinstance(positions, np.memmap):
            bad = ~np.isfinite(positions)
            if bad.any():
                frame = int(np.argwhere(bad)[0, 0])
                raise FramesError(f"non-finite coordinates (NaN or inf) in frame {frame}")
        set_(self, "positions", positions)

        species = np.asarray(self.species).astype(str)
        if species.shape != (n_atoms,):
            raise FramesError(f"species must have shape ({n_atoms},), got {species.shape}")
        set_(self, "species", species)

        if self.masses is not None:
            masses = np.asarray(self.masses, dtype=np.float64)
            if masses.shape != (n_atoms,) or not np.all(np.isfinite(masses)):
                raise FramesError(f"masses must be {n_atoms} finite numbers, got shape {masses.shape}")
            set_(self, "masses", masses)

        if self.cell is not None:
            cell = np.asarray(self.cell, dtype=np.float64)
            if cell.shape == (3, 3):
                cell = np.broadcast_to(cell, (n_frames, 3, 3)).copy()
            if cell.shape != (n_frames, 3, 3) or not np.all(np.isfinite(cell)):
                raise FramesError(f"cell must have shape ({n_frames}, 3, 3) and be finite, got {cell.shape}")
            set_(self, "cell", cell)

        pbc = np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)).copy()
        if pbc.any() and self.cell is None:
            raise FramesError("periodic boundaries need a cell")
        set_(self, "pbc", pbc)

        if self.dt is not None:
            dt = float(self.dt)
            if not np.isfinite(dt) or dt <= 0:
                raise FramesError(f"dt must be a positive number of ps, got {self.dt}")
            set_(self, "dt", dt)

        if self.time is not None:
            time = np.asarray(self.time, dtype=np.float64)
            if time.shape != (n_frames,) or not np.all(np.isfinite(time)):
                raise FramesError(f"time must be {n_frames} finite numbers in ps, got shape {time.shape}")
            set_(self, "time", time)

        atoms = {}
        for key, values in self.atoms.items():
            if key not in ATOM_FIELDS:
                raise FramesError(f"unknown per-atom field {key!r}; known: {', '.join(ATOM_FIELDS)}")
            values = np.asarray(values)
            if values.shape != (n_atoms,):
                raise FramesError(f"atoms[{key!r}] must have shape ({n_atoms},), got {values.shape}")
            atoms[key] = values
        set_(self, "atoms", atoms)
        set_(self, "source", dict(self.source))
        if self.bonds is not None:
            set_(self, "bonds", check_bonds(self.bonds, n_atoms))

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return self.positions.shape[0]

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return self.positions.shape[1]

    def __len__(self) -> int:
        return self.n_frames

    @property
    def times(self) -> np.ndarray | None:
        """(T,) time stamps in ps: ``time`` if given, else ``arange(T) * dt``, else None."""
        if self.time is not None:
            return self.time
        if self.dt is not None:
            return np.arange(self.n_frames) * self.dt
        return None

    @property
    def species_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct species (sorted) and the (N,) integer code of each atom."""
        unique, codes = np.unique(self.species, return_inverse=True)
        return unique, codes

    @property
    def nbytes(self) -> int:
        """Memory taken by the positions, in bytes."""
        return int(self.positions.nbytes)

    @property
    def is_periodic(self) -> bool:
        """True when the frames have a box with at least one periodic direction."""
        return self.cell is not None and bool(self.pbc.any())

    def replace(self, **changes: Any) -> Frames:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def __getitem__(self, index: int | slice | np.ndarray) -> Frames:
        """Select frames: an int keeps one frame, a slice or index array keeps several.

        A slice with a step multiplies ``dt`` by that step; an index array drops ``dt``
        unless its spacing is uniform.
        """
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 if int(index) != -1 else None)
        times = self.times
        if isinstance(index, slice):
            step = index.step or 1
            dt = None if self.dt is None else self.dt * abs(step)
        else:
            index = np.asarray(index)
            spacing = np.unique(np.diff(index)) if index.ndim == 1 and index.size > 1 else np.array([1])
            dt = self.dt * abs(int(spacing[0])) if self.dt is not None and spacing.size == 1 else None
        positions = self.positions[index]
        return self.replace(
            positions=positions,
            cell=None if self.cell is None else self.cell[index],
            dt=dt,
            time=None if times is None else times[index],
        )

    def select_atoms(self, indices: np.ndarray | list[int]) -> Frames:
        """A copy keeping only the atoms at ``indices`` (in that order), and the bonds between them."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise FramesError("atom selection is empty")
        return self.replace(
            positions=self.positions[:, indices],
            species=self.species[indices],
            masses=None if self.masses is None else self.masses[indices],
            atoms={key: values[indices] for key, values in self.atoms.items()},
            bonds=None if self.bonds is None else bonds_within(self.bonds, indices, self.n_atoms),
        )

    def repeated_frames(self, block_frames: int = 256) -> np.ndarray:
        """Indices t >= 1 of frames identical to frame t - 1 (every coordinate), int64.

        A trajectory that repeats a frame (a restart that wrote its first frame again, a
        concatenation that kept a boundary frame twice) shows a zero displacement there.
        Read ``block_frames`` frames at a time, so a memory map is never resident whole.
        """
        found = []
        for start in range(1, self.n_frames, block_frames):
            stop = min(start + block_frames, self.n_frames)
            block = np.asarray(self.positions[start - 1 : stop])
            same = np.all(block[1:] == block[:-1], axis=(1, 2))
            found.append(start + np.flatnonzero(same))
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def same_atoms(self, other: Frames) -> bool:
        """True when ``other`` has the same number and species of atoms, in the same order."""
        return self.n_atoms == other.n_atoms and bool(np.all(self.species == other.species))

    def wrapped(self) -> Frames:
        """A copy with positions wrapped into the box along its periodic directions."""
        if not self.is_periodic:
            return self
        inverse = np.linalg.inv(self.cell)
        fractional = np.einsum("tni,tij->tnj", self.positions, inverse)
        fractional[..., self.pbc] -= np.floor(fractional[..., self.pbc])
        return self.replace(positions=np.einsum("tni,tij->tnj", fractional, self.cell))

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}: {c}" for s, c in zip(*np.unique(self.species, return_counts=True)))
        box = "no box" if self.cell is None else f"pbc={self.pbc.tolist()}"
        dt = "dt unknown" if self.dt is None else f"dt={self.dt:g} ps"
        return f"Frames({self.n_frames} frames, {self.n_atoms} atoms [{counts}], {dt}, {box})"


def concatenate(parts: list[Frames]) -> Frames:
    """Join frames of the same atoms along time (times are kept as given)."""
    if not parts:
        raise FramesError("nothing to concatenate")
    first = parts[0]
    for part in parts[1:]:
        if not first.same_atoms(part):
            raise FramesError("cannot concatenate frames of different atoms")
        if (first.bonds is None) != (part.bonds is None) or (
                first.bonds is not None and not np.array_equal(first.bonds, part.bonds)):
            raise FramesError("cannot concatenate frames with different bonds")
    cells = [p.cell for p in parts]
    times = [p.times for p in parts]
    return first.replace(
        positions=np.concatenate([p.positions for p in parts]),
        cell=None if any(c is None for c in cells) else np.concatenate(cells),
        time=None if any(t is None for t in times) else np.concatenate(times),
    )
