"""NumPy ``.npz`` trajectories: the tutorial's format and mdnext's own.

* Tutorial format: a single array under key ``arr`` of shape (T, N, 2) or (T, N, 3), in the
  data's own length unit (read as Å); 2D data is padded with z = 0. It has no species, so every
  atom is a bead of species ``"X"``; dt is unknown.
* mdnext format (what :class:`NpzWriter` writes): named arrays ``positions`` (T, N, 3) Å,
  ``species`` (N,), ``pbc`` (3,), optional ``masses`` (N,) amu, ``cell`` (T, 3, 3) Å,
  ``dt`` () ps, ``time`` (T,) ps, ``atoms_<field>`` (N,) per-atom topology and ``bonds``
  (M, 2) atom index pairs, plus ``mdnext_format`` () = 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mdnext.errors import InputError
from mdnext.frames import ATOM_FIELDS, Frames
from mdnext.plugin import ReaderPlugin, WriterPlugin

FORMAT_VERSION = 1
#: Species given to the beads of a tutorial-format file, which names none.
BEAD_SPECIES = "X"


class NpzReader(ReaderPlugin):
    """Reads the tutorial's ``arr`` npz and mdnext's own named-array npz."""

    name = "npz"
    formats = frozenset({"npz"})

    def read(self, path: Path, fmt: str, *, topology: Any = None, select: str | None = None) -> Frames:
        if topology is not None or select is not None:
            raise InputError(f"{path}: npz files carry their own atoms; --topology and --select do not apply")
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if "positions" in keys:
                return _read_named(path, data)
            if keys == {"arr"}:
                arr = data["arr"]
                if arr.ndim != 3 or arr.shape[-1] not in (2, 3):
                    raise InputError(f"{path}: key 'arr' must have shape (T, N, 2) or (T, N, 3), got {arr.shape}")
                return Frames(positions=arr, species=np.full(arr.shape[1], BEAD_SPECIES))
        raise InputError(f"{path}: expected key 'arr' (tutorial) or 'positions' (mdnext), found {sorted(keys)}")


def _read_named(path: Path, data: Any) -> Frames:
    version = int(data["mdnext_format"]) if "mdnext_format" in data.files else FORMAT_VERSION
    if version > FORMAT_VERSION:
        raise InputError(f"{path}: mdnext npz format {version} is newer than this mdnext reads ({FORMAT_VERSION})")

    def optional(key: str) -> np.ndarray | None:
        return data[key] if key in data.files else None

    positions = data["positions"]
    species = optional("species")
    if species is None:
        species = np.full(positions.shape[1] if positions.ndim == 3 else 0, BEAD_SPECIES)
    dt = optional("dt")
    pbc = optional("pbc")
    return Frames(
        positions=positions,
        species=species,
        masses=optional("masses"),
        cell=optional("cell"),
        pbc=np.zeros(3, bool) if pbc is None else pbc,
        dt=None if dt is None else float(dt),
        time=optional("time"),
        atoms={field: data[f"atoms_{field}"] for field in ATOM_FIELDS if f"atoms_{field}" in data.files},
        bonds=optional("bonds"),
    )


class NpzWriter(WriterPlugin):
    """Writes mdnext's named-array npz (uncompressed, loadable without pickle)."""

    name = "npz"
    formats = frozenset({"npz"})

    def write(self, frames: Frames, path: Path, fmt: str) -> None:
        arrays: dict[str, np.ndarray] = {
            "mdnext_format": np.array(FORMAT_VERSION),
            "positions": np.asarray(frames.positions, dtype=np.float64),
            "species": frames.species.astype(str),
            "pbc": frames.pbc,
        }
        if frames.masses is not None:
            arrays["masses"] = frames.masses
        if frames.cell is not None:
            arrays["cell"] = frames.cell
        if frames.dt is not None:
            arrays["dt"] = np.array(frames.dt)
        if frames.time is not None:
            arrays["time"] = frames.time
        if frames.bonds is not None:
            arrays["bonds"] = frames.bonds
        for field, values in frames.atoms.items():
            arrays[f"atoms_{field}"] = values.astype(str) if values.dtype == object else values
        with open(path, "wb") as handle:  # a file object keeps numpy from appending ".npz"
            np.savez(handle, **arrays)
