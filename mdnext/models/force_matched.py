"""A tabulated bead-spring force field fitted to the trajectory by force matching, integrated by Verlet.

For coarse-grained chains (identical beads, a bond topology) the next displacement is, to
O(Δt⁴), the last one plus the acceleration times Δt²: ``x_{t+s} - x_t = d_0 + a(x_t)``,
``a`` in Å per (s frames)². ``a`` is a sum of central and angular terms, each a tabulated
function (linear interpolation between evenly spaced knots, a "hat" basis):

* bonds i-j: ``f_b(r) r̂_ij`` on i (and the opposite on j);
* angles a-b-c: ``g(θ) ∇θ`` on each of the three atoms (θ at the vertex b);
* the 1-3 pairs a-c of the angles (a Urey-Bradley term): ``f_13(r) r̂_ac``;
* pairs further apart within ``cutoff``: ``f_p(r) r̂_ij``.

The tables are fitted in closed form (linear least squares, as in multiscale
coarse-graining by force matching) on the training windows: the observed second
differences are the "forces" (equal masses: tables are per bead, shared by all species).
Equivariant by construction. Needs the windows' ``bond_index``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch_geometric.utils import scatter

from mdnext.bond_graph import angle_triplets, edge_separation, required_bond_index
from mdnext.errors import MDNextError
from mdnext.models.base import DisplacementModel
from mdnext.models.baselines import NormalEquations
from mdnext.neighbors import minimum_image, radius_graph

#: The tabulated terms, in the order of ``ranges`` and ``tables``.
TABLES = ("bond", "angle", "1-3", "pair")
#: Feature elements (float64: 32 MB) of one block of atoms during the fit, which so needs
#: memory for one block, not for a whole batch of windows (tables × knots × 3 per atom).
FEATURE_BLOCK_ELEMENTS = 2**22
#: Relative weight of the second-difference penalty that keeps each table smooth where data is sparse.
SMOOTHNESS = 1e-6


def _knot_position(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor, knots: int) -> tuple[torch.Tensor, ...]:
    """Lower knot index (m,) int64 and the weight (m,) of the knot above, for ``knots`` even knots in [low, high]."""
    step = (high - low).clamp(min=1e-12) / (knots - 1)
    position = ((values - low) / step).clamp(0.0, knots - 1.0)
    lower = position.floor().clamp(max=knots - 2)
    return lower.long(), position - lower


def interpolate(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The table (knots,) at ``values`` (m,): linear interpolation between ``knots`` even knots in [low, high].

    Values outside the range take the nearest end knot's value (the table is constant there).
    """
    lower, upper_weight = _knot_position(values, low, high, table.shape[0])
    return table[lower] * (1.0 - upper_weight) + table[lower + 1] * upper_weight


def _unit(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    length = vectors.norm(dim=-1)
    return vectors / length.clamp(min=1e-12).unsqueeze(-1), length


class ForceMatched(DisplacementModel):
    """Verlet with bond, angle, 1-3 and pair force tables fitted by least squares to the trajectory.

    Args:
        history: Number k of past displacements (at least 1: the last one is the velocity).
        species: Species names (the tables do not depend on them).
        cutoff: Range of the non-bonded pair table, Å (0: no pair table).
        knots: Knots per table.
    """

    name = "force_matched"
    min_history = 1

    def __init__(self, history: int, species: list[str], cutoff: float = 5.0, knots: int = 64) -> None:
        super().__init__(history, species)
        if not cutoff >= 0 or knots < 2:
            raise MDNextError(f"force_matched needs cutoff >= 0 and knots >= 2, got {cutoff}, {knots}")
        self.cutoff, self.knots = float(cutoff), int(knots)
        float64 = {"dtype": torch.float64}
        #: Table ranges (low, high) of :data:`TABLES`: bond length (Å), angle (rad), 1-3 and pair distance (Å).
        self.register_buffer("ranges", torch.tensor([[0.0, 1.0], [0.0, torch.pi], [0.0, 1.0], [0.0, 1.0]], **float64))
        self.register_buffer("tables", torch.zeros(len(TABLES) * self.knots, **float64))

    @property
    def hparams(self) -> dict[str, Any]:
        return {**super().hparams, "cutoff": self.cutoff, "knots": self.knots}

    def _terms(self, data: Any) -> list[tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]]:
        """Per table of :data:`TABLES`: its coordinate (m,) and the atoms (m,) it accelerates with directions (m, 3).

        A positive table entry pulls a pair's atoms together and drives an angle's atoms down
        the gradient of θ (it closes the angle).
        """
        bond_index = required_bond_index(data, "the force_matched model")
        pos = data.pos.to(torch.float64)
        n = pos.shape[0]
        batch = getattr(data, "batch", None)
        batch = torch.zeros(n, dtype=torch.long, device=pos.device) if batch is None else batch
        cell, pbc = data.cell.to(torch.float64), data.pbc.reshape(-1, 3).to(pos.device)
        periodic = bool(pbc.any())

        def vectors(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
            """pos[second] - pos[first], by minimum image in each pair's structure under PBC."""
            difference = pos[second] - pos[first]
            if not periodic or not difference.numel():
                return difference
            owner = batch[first]
            for flags in torch.unique(pbc, dim=0):  # structures that share their periodic directions
                pairs = (pbc[owner] == flags).all(dim=1)
                difference[pairs] = minimum_image(difference[pairs], cell[owner[pairs]], flags)
            return difference

        def central(first: torch.Tensor, second: torch.Tensor) -> tuple:
            unit, length = _unit(vectors(first, second))
            return length, [(first, unit), (second, -unit)]

        bond_index = bond_index.to(pos.device)
        angles = angle_triplets(bond_index, n)
        theta, *gradients = self._angle(vectors(angles[1], angles[0]), vectors(angles[1], angles[2]))
        terms = [central(bond_index[0], bond_index[1]),
                 (theta, [(atoms, -gradient) for atoms, gradient in zip(angles, gradients)]),
                 central(angles[0], angles[2])]
        if self.cutoff > 0:
            edge_index, edge_vec = radius_graph(pos, self.cutoff, batch, cell, pbc)
            other = edge_separation(edge_index, bond_index, n) == 2
            unit, length = _unit(edge_vec[other])
            terms.append((length, [(edge_index[0, other], unit)]))  # both directions are listed: one atom each
        else:
            terms.append((pos.new_zeros(0), []))
        return terms

    @staticmethod
    def _angle(arm_a: torch.Tensor, arm_c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """θ (A,) between arms b→a and b→c, and its gradients (A, 3) with respect to atoms a, b, c."""
        unit_a, length_a = _unit(arm_a)
        unit_c, length_c = _unit(arm_c)
        cos = (unit_a * unit_c).sum(-1)
        theta = torch.atan2(torch.linalg.cross(unit_a, unit_c).norm(dim=-1), cos)
        # In-plane unit vectors perpendicular to each arm, towards the other arm.
        towards_c, _ = _unit(unit_c - cos.unsqueeze(-1) * unit_a)
        towards_a, _ = _unit(unit_a - cos.unsqueeze(-1) * unit_c)
        grad_a = -towards_c / length_a.clamp(min=1e-12).unsqueeze(-1)
        grad_c = -towards_a / length_c.clamp(min=1e-12).unsqueeze(-1)
        return theta, grad_a, -(grad_a + grad_c), grad_c

    def _features(self, terms: list, first: int, stop: int) -> torch.Tensor:
        """(stop - first, tables × knots, 3) float64: the acceleration of atoms ``first``…``stop - 1``
        per unit of each table entry."""
        width = len(TABLES) * self.knots
        features = self.tables.new_zeros((stop - first) * width, 3)
        for table, (values, pushes) in enumerate(terms):
            lower, upper_weight = _knot_position(values, *self.ranges[table], self.knots)
            column = table * self.knots + lower
            for atoms, direction in pushes:  # each term touches two knots: no (terms, knots, 3) temporary
                mine = (atoms >= first) & (atoms < stop)
                row = (atoms[mine] - first) * width + column[mine]
                features.index_add_(0, row, (1.0 - upper_weight[mine]).unsqueeze(-1) * direction[mine])
                features.index_add_(0, row + 1, upper_weight[mine].unsqueeze(-1) * direction[mine])
        return features.reshape(stop - first, width, 3)

    def fit_closed_form(self, loader: Any) -> None:
        """Set each table's range to the training data's, then fit the tables by least squares.

        Args:
            loader: Batches of training windows with ``bond_index``; iterated twice (a list or
                a DataLoader, not a one-shot generator).
        """
        low = torch.full((len(TABLES),), torch.inf, dtype=torch.float64)
        high = torch.full((len(TABLES),), -torch.inf, dtype=torch.float64)
        for data in loader:
            for table, (values, _) in enumerate(self._terms(data)):
                if values.numel():
                    low[table] = min(low[table], values.min().cpu())
                    high[table] = max(high[table], values.max().cpu())
        seen = torch.isfinite(low)
        self.ranges[seen] = torch.stack([low, high], dim=1)[seen].to(self.ranges.device)
        size = len(TABLES) * self.knots
        equations = NormalEquations(size)
        block = max(1, FEATURE_BLOCK_ELEMENTS // (3 * size))
        for data in loader:
            terms = self._terms(data)
            target = data.y.to(torch.float64) - data.history[:, 0].to(torch.float64)
            for first in range(0, target.shape[0], block):
                stop = min(first + block, target.shape[0])
                equations.add(self._features(terms, first, stop), target[first:stop])
        # second differences (1, -2, 1) along each table, none across tables
        curvature = torch.block_diag(*[torch.diff(torch.eye(self.knots, dtype=torch.float64), n=2, dim=0)] * len(TABLES))
        scale = float(equations.gram.diagonal().mean()) or 1.0
        equations.gram += scale * (SMOOTHNESS * curvature.T @ curvature + 1e-12 * torch.eye(size, dtype=torch.float64))
        self.tables.copy_(equations.solve())

    def forward(self, data: Any) -> torch.Tensor:
        """``d_0 + a(x_t)``: (n, 3) float64 Å."""
        n, k = data.pos.shape[0], self.knots
        acceleration = data.pos.new_zeros(n, 3, dtype=torch.float64)
        for table, (values, pushes) in enumerate(self._terms(data)):
            strength = interpolate(values, *self.ranges[table], self.tables[table * k : (table + 1) * k]).unsqueeze(-1)
            for atoms, direction in pushes:
                acceleration += scatter(strength * direction, atoms, 0, dim_size=n)
        return data.history[:, 0].to(torch.float64) + acceleration
