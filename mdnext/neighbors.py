"""Radius graphs under periodic boundaries (vesin) and minimum-image vectors.

The neighbour list is vesin's cell list: O(N) time and memory, exact for any cutoff,
including cutoffs longer than half the box (an atom then meets several periodic images of
the same neighbour, each as its own edge). Mixed boundaries (a slab periodic in x and y
only, a wire periodic in z only) are supported; the lattice vectors along non-periodic
directions are then ignored and may be zero.
"""

from __future__ import annotations

import math

import torch
from vesin import NeighborList

from mdnext.errors import InputError

_AXES = "xyz"

#: Largest extent (Å) of the positions handed to vesin along a non-periodic direction. Its cell
#: list crashes the process (SIGFPE) on coordinates spanning ~1e6 Å; only a diverged
#: prediction gets near this.
MAX_SPAN = 1e5


class PositionsOutOfRange(InputError):
    """Positions that are not finite or too far apart for the neighbour list."""


def _check_span(pos: torch.Tensor, pbc: torch.Tensor) -> None:
    """Raise :class:`PositionsOutOfRange` unless ``pos`` (n, 3) is finite and spans at most
    :data:`MAX_SPAN` along every non-periodic direction (pbc (3,) bool)."""
    if not pos.shape[0]:
        return
    if not bool(torch.isfinite(pos).all()):
        raise PositionsOutOfRange("non-finite positions (a diverged prediction?)")
    span = torch.where(pbc, torch.zeros(3, dtype=pos.dtype), pos.amax(dim=0) - pos.amin(dim=0)).max()
    if float(span) > MAX_SPAN:
        raise PositionsOutOfRange(f"positions span {float(span):.3g} Å, beyond the {MAX_SPAN:.0e} Å the neighbour "
                                  "list handles (a diverged prediction?)")


def _completed_cell(cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """The cell with its non-periodic rows replaced by unit vectors normal to the periodic ones.

    Fractional coordinates along the periodic lattice vectors are then those of the
    projection of a vector onto their span, whatever the (possibly zero) non-periodic rows.

    Args:
        cell: (..., 3, 3) lattice vectors as rows, Å.
        pbc: (3,) bool, periodic directions (one pattern for the whole stack).

    Returns:
        (..., 3, 3) cell, invertible where the periodic rows are independent.
    """
    periodic = [int(a) for a in torch.nonzero(pbc.to(torch.bool)).flatten()]
    if len(periodic) in (0, 3):
        return cell
    other = [a for a in range(3) if a not in periodic]
    completed = cell.clone()
    if len(periodic) == 2:
        normal = torch.linalg.cross(cell[..., periodic[0], :], cell[..., periodic[1], :])
        completed[..., other[0], :] = torch.nn.functional.normalize(normal, dim=-1)
        return completed
    axis = torch.nn.functional.normalize(cell[..., periodic[0], :], dim=-1)
    # The Cartesian axis least aligned with the periodic vector is never parallel to it.
    helper = torch.nn.functional.one_hot(axis.abs().argmin(dim=-1), 3).to(cell.dtype)
    first = torch.nn.functional.normalize(torch.linalg.cross(axis, helper), dim=-1)
    completed[..., other[0], :] = first
    completed[..., other[1], :] = torch.linalg.cross(axis, first)
    return completed


def minimum_image(vectors: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """Periodic image of each vector nearest the origin, by rounding fractional coordinates.

    Exact for orthorhombic cells; for triclinic cells it is the minimum image whenever the
    vector is short compared with the cell (true of displacements between saved frames).

    Args:
        vectors: (..., 3) float64 difference vectors, Å.
        cell: (3, 3) lattice vectors as rows, Å, or (..., 3, 3) broadcastable with ``vectors``.
        pbc: (3,) bool, periodic directions.

    Returns:
        (..., 3) float64 vectors, Å; unchanged along non-periodic directions.

    Raises:
        InputError: If a periodic direction has a zero or dependent lattice vector.
    """
    vectors = vectors.to(torch.float64)
    pbc = torch.as_tensor(pbc, dtype=torch.bool, device=vectors.device).reshape(3)
    if not bool(pbc.any()):
        return vectors
    cell = _completed_cell(cell.to(device=vectors.device, dtype=torch.float64), pbc)
    _check_invertible(cell, pbc, "minimum_image")
    fractional = (vectors.unsqueeze(-2) @ torch.linalg.inv(cell)).squeeze(-2)
    fractional = fractional - torch.where(pbc, torch.round(fractional), torch.zeros_like(fractional))
    return (fractional.unsqueeze(-2) @ cell).squeeze(-2)


def radius_graph(
    pos: torch.Tensor,
    cutoff: float,
    batch: torch.Tensor | None,
    cell: torch.Tensor,
    pbc: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full neighbour list within ``cutoff`` of each atom, with periodic images.

    Args:
        pos: (n, 3) positions, Å (wrapped or not: only the periodic images matter).
        cutoff: Cutoff radius, Å; pairs at distance < ``cutoff`` are edges.
        batch: (n,) int64 structure of each atom (None: one structure).
        cell: (B, 3, 3) lattice vectors as rows, Å (zeros, or anything, where not periodic).
        pbc: (B, 3) bool periodic directions.

    Returns:
        ``edge_index`` (2, E) int64 and ``edge_vec`` (E, 3) float64. Row 0 holds the centre
        atom i, row 1 the neighbour j, and ``edge_vec = pos[j] - pos[i] + shift``, the
        periodic image's shift included. Both directions of every pair are listed; pairs at
        zero distance (an atom with itself, coincident atoms) are not. The list is built on
        the CPU (one vesin call per periodic structure, one for all non-periodic ones) and returned on ``pos``'s device; it carries
        no gradient.

    Raises:
        InputError: If a periodic direction has a zero or dependent lattice vector.
        PositionsOutOfRange: Non-finite positions, or a non-periodic extent above :data:`MAX_SPAN`.
    """
    device = pos.device
    cpu = torch.device("cpu")
    pos = pos.detach().to(cpu, torch.float64)
    n = pos.shape[0]
    batch = torch.zeros(n, dtype=torch.long) if batch is None else batch.detach().to(cpu, torch.long)
    cell = cell.detach().to(cpu, torch.float64).reshape(-1, 3, 3)
    pbc = pbc.detach().to(cpu, torch.bool).reshape(-1, 3)
    num_structures = cell.shape[0]
    if pbc.shape[0] != num_structures:
        raise ValueError(f"cell has {num_structures} structures but pbc has {pbc.shape[0]}")
    if n and int(batch.max()) >= num_structures:
        raise ValueError(f"batch refers to structure {int(batch.max())} but only {num_structures} cells")
    # Atoms already grouped by structure (one structure, a PyG batch) need no reordering.
    order = torch.argsort(batch, stable=True) if n > 1 and bool((batch[1:] < batch[:-1]).any()) else None
    counts = torch.bincount(batch, minlength=num_structures).tolist()
    sorted_pos = pos if order is None else pos[order]
    calculator = NeighborList(cutoff=float(cutoff), full_list=True)
    if num_structures > 1 and n and not bool(pbc.any()):
        edge_index, edge_vec = _separated_structures(calculator, sorted_pos, batch if order is None else batch[order],
                                                     float(cutoff))
        if order is not None:
            edge_index = order[edge_index]
        return edge_index.to(device), edge_vec.to(device)
    parts = []
    start = 0
    for b, count in enumerate(counts):
        stop = start + count
        if count:
            parts.append((start, *_one_structure(calculator, sorted_pos[start:stop], cell[b], pbc[b], b)))
        start = stop
    if not parts:
        return (
            torch.zeros(2, 0, dtype=torch.long, device=device),
            torch.zeros(0, 3, dtype=torch.float64, device=device),
        )
    if len(parts) == 1:  # no concatenation: the list is as vesin returned it (O(E) copies cost at 100k atoms)
        offset, i, j, edge_vec = parts[0]
        edge_index = torch.stack([i, j])
        if offset:
            edge_index += offset
    else:
        edge_index = torch.cat([torch.stack([i, j]) + offset for offset, i, j, _ in parts], dim=1)
        edge_vec = torch.cat([vec for *_, vec in parts])
    if order is not None:
        edge_index = order[edge_index]
    return edge_index.to(device), edge_vec.to(device)


def _separated_structures(calculator: NeighborList, pos: torch.Tensor, batch: torch.Tensor,
                          cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-periodic structures (atoms grouped by structure) in one vesin call.

    Each structure is moved, corner first, into its own cell of a cubic grid whose cells are
    the largest structure's extent plus twice the cutoff, so that no pair between structures
    is in range; one call then replaces one call per structure (each ~0.1 ms of overhead: most
    of a training step's graph time for a batch of small molecules). A compact grid, not a row,
    because vesin's cell list misbehaves in long, sparse boxes. The vectors are taken from the
    original positions.
    """
    n_structures = int(batch[-1]) + 1
    index = batch.unsqueeze(1).expand(-1, 3)
    low = torch.full((n_structures, 3), torch.inf, dtype=pos.dtype).scatter_reduce(0, index, pos, "amin")
    high = torch.full((n_structures, 3), -torch.inf, dtype=pos.dtype).scatter_reduce(0, index, pos, "amax")
    present = torch.isfinite(low[:, 0])  # structures with atoms
    spacing = (high[present] - low[present]).amax(dim=0) + 2.0 * cutoff
    side = math.ceil(n_structures ** (1.0 / 3.0) - 1e-9)
    structure = torch.arange(n_structures)
    grid = torch.stack([structure % side, (structure // side) % side, structure // (side * side)], dim=1)
    moved = pos - low[batch] + (grid.to(pos.dtype) * spacing)[batch]
    box, open_boundaries = torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.bool)
    _check_span(moved, open_boundaries)
    i, j = calculator.compute(moved, box, open_boundaries, "ij")
    i, j = _as_int64(i), _as_int64(j)
    i, j, edge_vec = _nonzero_length(i, j, pos[j] - pos[i])
    return torch.stack([i, j]), edge_vec


def _one_structure(
    calculator: NeighborList, pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """vesin on one structure: local indices i, j (int64) and vectors (float64) of nonzero length."""
    if bool(pbc.any()):
        completed = _completed_cell(cell, pbc)
        _check_invertible(completed, pbc, f"structure {index}")
        # vesin 0.6 accepts unwrapped positions; wrapping along periodic directions keeps
        # coordinates small for any vesin version. Its vectors include the image shifts.
        fractional = pos @ torch.linalg.inv(completed)
        pos = pos - torch.where(pbc, torch.floor(fractional), torch.zeros_like(fractional)) @ completed
        box = completed
    else:
        box = torch.zeros(3, 3, dtype=torch.float64, device=pos.device)
    _check_span(pos, pbc)
    i, j, vec = calculator.compute(pos.contiguous(), box.contiguous(), pbc.contiguous(), "ijD")
    return _nonzero_length(_as_int64(i), _as_int64(j), vec)


def _nonzero_length(i: torch.Tensor, j: torch.Tensor, vec: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The edges whose vector is not zero (drops coincident atoms); no copy when all are kept."""
    keep = (vec != 0).any(dim=1)
    if bool(keep.all()):
        return i, j, vec
    return i[keep], j[keep], vec[keep]


def _as_int64(index: torch.Tensor) -> torch.Tensor:
    """Atom indices as int64; vesin's uint64 indices (all < 2⁶³) are reinterpreted without a copy."""
    if index.dtype == torch.uint64:
        return index.view(torch.long)
    return index.to(torch.long)


def smallest_periodic_height(cell: torch.Tensor, pbc: torch.Tensor) -> float:
    """Smallest distance between opposite faces over periodic directions (and frames), Å.

    ``cell`` (..., 3, 3) lattice vectors as rows, ``pbc`` (3,) bool (at least one True); the
    height along vector i is the volume over the area spanned by the other two, non-periodic
    rows completed to unit normals first. Minimum image cannot resolve a longer vector.
    """
    pbc = torch.as_tensor(pbc, dtype=torch.bool).reshape(3)
    cell = _completed_cell(cell.to(torch.float64), pbc)
    volume = torch.linalg.det(cell).abs()
    heights = [volume / torch.linalg.norm(torch.linalg.cross(cell[..., (i + 1) % 3, :], cell[..., (i + 2) % 3, :]), dim=-1)
               for i in range(3) if bool(pbc[i])]
    return float(torch.stack(heights).min())


def _check_invertible(cell: torch.Tensor, pbc: torch.Tensor, where: str) -> None:
    """Raise :class:`InputError` if the (completed) cell cannot define periodic images."""
    volume = torch.linalg.det(cell).abs()
    lengths = torch.linalg.norm(cell, dim=-1).prod(dim=-1)
    if bool((volume <= 1e-10 * lengths).any()):
        axes = "".join(a for a, p in zip(_AXES, pbc.tolist()) if p)
        raise InputError(f"{where}: periodic along {axes} but the cell's lattice vectors are zero or dependent")
