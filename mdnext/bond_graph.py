"""Bonded neighbourhoods on (batched) graphs: bond angles and the topological class of edges.

Bonds arrive as ``bond_index`` (2, M) int64, each bond once in either direction, node indices
already offset per structure in a batch (see :mod:`mdnext.topology` for bond lists).
"""

from __future__ import annotations

from typing import Any

import torch

from mdnext.errors import MDNextError

#: Edge classes of :func:`edge_separation`: bonded (1-2), one atom apart (1-3), further or unconnected.
SEPARATIONS = ("1-2", "1-3", "other")


def _pair_keys(first: torch.Tensor, second: torch.Tensor, n_nodes: int) -> torch.Tensor:
    return first * n_nodes + second


def required_bond_index(data: Any, user: str) -> torch.Tensor:
    """The windows' ``bond_index`` (2, M), or a one-line :class:`MDNextError` saying that ``user`` needs it."""
    bond_index = getattr(data, "bond_index", None)
    if bond_index is None:
        raise MDNextError(f"{user} needs a bond topology, and the input has no bonds: read a topology with bonds, "
                          "or declare a linear chain (--bonds chain)")
    return bond_index


def _two_bond_paths(bond_index: torch.Tensor, n_nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every path a-b-c along two bonds with a != c (both orders), as three (P,) int64 tensors."""
    directed = torch.cat([bond_index, bond_index.flip(0)], dim=1)
    order = torch.argsort(directed[0], stable=True)
    partners = directed[1][order]  # grouped by their first atom
    counts = torch.bincount(directed[0], minlength=n_nodes)
    offsets = torch.cumsum(counts, 0) - counts
    middle = directed[1]  # for every directed bond a -> b, the partners c of b
    repeats = counts[middle]
    first = torch.repeat_interleave(directed[0], repeats)
    centre = torch.repeat_interleave(middle, repeats)
    within = torch.arange(int(repeats.sum()), device=bond_index.device) - torch.repeat_interleave(
        torch.cumsum(repeats, 0) - repeats, repeats)
    third = partners[torch.repeat_interleave(offsets[middle], repeats) + within]
    keep = first != third
    return first[keep], centre[keep], third[keep]


def angle_triplets(bond_index: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Bond angles a-b-c (b the vertex), each once (a < c): (3, A) int64, from (2, M) bonds."""
    first, centre, third = _two_bond_paths(bond_index, n_nodes)
    once = first < third
    return torch.stack([first[once], centre[once], third[once]])


def edge_separation(edge_index: torch.Tensor, bond_index: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Topological class of each edge: 0 bonded (1-2), 1 one atom apart (1-3), 2 otherwise.

    Args:
        edge_index: (2, E) int64 neighbour-graph edges.
        bond_index: (2, M) int64 bonds, each once in either direction (batched graphs: the
            node indices already offset per structure).
        n_nodes: Number of nodes in the graph.

    Returns:
        (E,) int64 index into :data:`SEPARATIONS`.
    """
    separation = torch.full_like(edge_index[0], 2)
    if bond_index.numel() == 0 or edge_index.numel() == 0:
        return separation
    first, _, third = _two_bond_paths(bond_index, n_nodes)
    keys13 = torch.unique(_pair_keys(first, third, n_nodes))
    keys12 = torch.unique(_pair_keys(torch.cat([bond_index[0], bond_index[1]]),
                                     torch.cat([bond_index[1], bond_index[0]]), n_nodes))
    edge_keys = _pair_keys(edge_index[0], edge_index[1], n_nodes)
    separation[torch.isin(edge_keys, keys13)] = 1
    separation[torch.isin(edge_keys, keys12)] = 0
    return separation
