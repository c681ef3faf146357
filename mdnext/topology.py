"""Bond topology: bond lists of atoms (numpy; for the graphs see :mod:`mdnext.bond_graph`).

A bond list is an (M, 2) int64 array of atom indices (0-based, ``i < j``, sorted, unique).
Coarse-grained chains are the case that needs it: with identical beads, a bonded pair and
a non-bonded pair at the same distance feel different forces, and positions alone cannot
tell them apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mdnext.errors import FramesError

if TYPE_CHECKING:
    from mdnext.frames import Frames


#: Where the bonds come from (:func:`declare_bonds`).
BOND_SOURCES = ("topology", "chain", "none")


def declare_bonds(frames: Frames, source: str) -> Frames:
    """``frames`` with the bonds of its topology (``"topology"``), of a linear chain in atom order
    (``"chain"``) or none (``"none"``)."""
    if not isinstance(source, str) or source not in BOND_SOURCES:
        raise FramesError(f"bond source must be one of {', '.join(BOND_SOURCES)}, got {source!r:.60}; "
                          "to give bonds yourself use frames.replace(bonds=pairs)")
    if source == "topology":
        return frames
    return frames.replace(bonds=chain_bonds(frames.n_atoms) if source == "chain" else None)


def chain_bonds(n_atoms: int) -> np.ndarray:
    """Bonds of a linear chain in atom order: (n_atoms - 1, 2) pairs ``(i, i + 1)``."""
    first = np.arange(max(int(n_atoms) - 1, 0), dtype=np.int64)
    return np.stack([first, first + 1], axis=1)


def check_bonds(bonds: np.ndarray | list, n_atoms: int) -> np.ndarray:
    """Validate and normalise a bond list to (M, 2) int64 with ``i < j``, sorted and unique.

    Raises:
        FramesError: Wrong shape, non-integer or out-of-range indices, or an atom bonded to itself.
    """
    array = np.asarray(bonds)
    if array.size == 0 and array.shape in ((0,), (0, 2)):
        return np.zeros((0, 2), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise FramesError(f"bonds must have shape (M, 2), got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise FramesError(f"bonds must be integer atom indices, got {array.dtype}")
    array = array.astype(np.int64)
    if array.min() < 0 or array.max() >= n_atoms:
        raise FramesError(f"bond atom indices must lie in [0, {n_atoms}), got {array.min()}..{array.max()}")
    if np.any(array[:, 0] == array[:, 1]):
        raise FramesError(f"atom {int(array[array[:, 0] == array[:, 1]][0, 0])} is bonded to itself")
    return np.unique(np.sort(array, axis=1), axis=0)


def bonds_within(bonds: np.ndarray, indices: np.ndarray, n_atoms: int) -> np.ndarray:
    """The bonds between the atoms at ``indices``, renumbered to positions in ``indices``.

    Args:
        bonds: (M, 2) bonds of ``n_atoms`` atoms.
        indices: (n,) distinct atom indices kept, in their new order.
        n_atoms: Number of atoms the bonds refer to.
    """
    new_index = np.full(n_atoms, -1, dtype=np.int64)
    new_index[np.asarray(indices, dtype=np.int64)] = np.arange(len(indices))
    renumbered = new_index[np.asarray(bonds, dtype=np.int64).reshape(-1, 2)]
    return check_bonds(renumbered[(renumbered >= 0).all(axis=1)], len(indices))
