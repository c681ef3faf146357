"""The E(3)-equivariant e3nn model: a physics prior plus a learned, gated tensor-product residual.

NequIP-style message passing on a cutoff radius graph (:func:`mdnext.neighbors.radius_graph`):

* node inputs: a constant ``0e``, the species one-hot (``0e``) and the k past displacements
  (k × ``1o``) divided by ``displacement_scale``;
* edges: spherical harmonics up to ``lmax`` of the edge vectors and Bessel functions of the
  edge length times a smooth polynomial envelope that vanishes at the cutoff; with
  ``bond_types``, also the edge's topological class (bonded 1-2, 1-3, other; see
  :mod:`mdnext.bond_graph`) one-hot, times the same envelope, as input of the radial MLPs;
* ``num_layers`` interactions: per-edge tensor products whose weights come from a radial MLP,
  summed over neighbours / √``avg_num_neighbors``, a species-dependent self-connection, a
  gate nonlinearity and a residual connection; the per-edge work runs over blocks of edges
  (:data:`EDGE_BLOCK_ELEMENTS`), so that its memory stays bounded and its cost linear in the
  number of edges;
* a ``1o`` head, initialised to zero so that an untrained model *is* its prior; with
  ``centred_residual`` its mean over each structure's atoms is removed, so the network moves
  atoms relative to each other and leaves the centroid's motion to the prior.

Prediction (Å, float64) = prior + ``residual_scale`` × head. Positions, differences and the
prior stay in float64; only the normalised inputs are cast to the network's dtype.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate

from mdnext.bond_graph import SEPARATIONS, edge_separation, required_bond_index
from mdnext.errors import MDNextError, first_line
from mdnext.models.base import DisplacementModel
from mdnext.models.baselines import (
    Autoregressive,
    CentredAutoregressive,
    ConstantVelocity,
    ZeroDisplacement,
    structure_mean,
)
from mdnext.models.force_matched import ForceMatched
from mdnext.models.tensor_product import EdgeTensorProduct
from mdnext.neighbors import radius_graph

PRIORS = {
    "zero": ZeroDisplacement,
    "constant_velocity": ConstantVelocity,
    "autoregressive": Autoregressive,
    "centred_autoregressive": CentredAutoregressive,
    "force_matched": ForceMatched,
}

#: Elements (about 16 MB in float32) of the largest per-edge intermediate of one block of
#: edges. Whole-graph per-edge tensors grow with the system; above glibc's mmap threshold
#: (32 MB at most) each is fresh zeroed memory, and at 100k atoms those page faults made a
#: step about 2.4x slower per atom than at 3k, with a ~3.8 GB peak (benchmarks/inference.py).
#: Blocks of this size are reused by the allocator: flat cost per atom, ~1.1 GB at 100k atoms.
EDGE_BLOCK_ELEMENTS = 2**22


class BesselBasis(torch.nn.Module):
    """``√2 sin(nπ r/r_c) / (r/r_c)``, n = 1…num_basis, times a smooth cutoff envelope.

    The envelope is the p = 6 polynomial ``1 - 28 x⁶ + 48 x⁷ - 21 x⁸`` (x = r/r_c), which
    goes to zero at the cutoff with its first two derivatives.

    Args:
        cutoff: r_c, Å.
        num_basis: Number of Bessel functions.
    """

    def __init__(self, cutoff: float, num_basis: int) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("frequencies", math.pi * torch.arange(1, num_basis + 1, dtype=torch.float64))

    def envelope(self, length: torch.Tensor) -> torch.Tensor:
        """(E,) edge lengths in Å → (E,) smooth cutoff envelope, 1 at 0 and 0 from the cutoff on."""
        x = length / self.cutoff
        envelope = 1.0 - 28.0 * x**6 + 48.0 * x**7 - 21.0 * x**8
        return torch.where(x < 1.0, envelope, torch.zeros_like(envelope))

    def forward(self, length: torch.Tensor) -> torch.Tensor:
        """(E,) float64 edge lengths in Å (all > 0) → (E, num_basis) float64."""
        x = (length / self.cutoff).unsqueeze(-1)
        bessel = math.sqrt(2.0) * torch.sin(self.frequencies * x) / x
        return bessel * self.envelope(length).unsqueeze(-1)


class Interaction(torch.nn.Module):
    """One gated tensor-product convolution with self-connection and residual, hidden → hidden.

    Args:
        irreps_hidden: Node feature irreps (sorted, simplified), with at least one l > 0 irrep.
        irreps_sh: Edge spherical-harmonic irreps.
        irreps_attr: Node attribute irreps (species one-hot, ``Sx0e``).
        num_basis: Radial basis size.
        radial_hidden: Width of the radial MLP's hidden layer.
    """

    def __init__(
        self, irreps_hidden: o3.Irreps, irreps_sh: o3.Irreps, irreps_attr: o3.Irreps, num_basis: int, radial_hidden: int
    ) -> None:
        super().__init__()
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
        self.gate = Gate(
            scalars,
            [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
            o3.Irreps(f"{gated.num_irreps}x0e"),
            [torch.sigmoid],
            gated,
        )
        # Every hidden irrep reaches itself through the l = 0 harmonic, so all targets are fed.
        self.tp = EdgeTensorProduct(irreps_hidden, irreps_sh, {ir for _, ir in self.gate.irreps_in})
        irreps_mid = self.tp.irreps_out.simplify()
        self.linear_in = o3.Linear(irreps_hidden, irreps_hidden)
        self.radial = FullyConnectedNet([num_basis, radial_hidden, self.tp.weight_numel], torch.nn.functional.silu)
        self.linear_out = o3.Linear(irreps_mid, self.gate.irreps_in)
        self.self_connection = o3.FullyConnectedTensorProduct(irreps_hidden, irreps_attr, self.gate.irreps_in)
        #: Edges per block of the per-edge work (not a hyperparameter: the result is the same).
        self.edge_block = max(1024, EDGE_BLOCK_ELEMENTS // max(irreps_mid.dim, self.tp.weight_numel, radial_hidden))

    def forward(
        self,
        x: torch.Tensor,
        attrs: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_basis: torch.Tensor,
        inv_sqrt_neighbors: torch.Tensor,
    ) -> torch.Tensor:
        """(n, hidden) features → (n, hidden); messages flow from neighbour ``edge_index[1]`` to centre ``[0]``.

        Messages are made and summed ``edge_block`` edges at a time, in edge order (the same
        sums as all at once); a loop over blocks, not over edges.
        """
        centre, neighbour = edge_index
        h = self.linear_in(x)
        summed = h.new_zeros(x.shape[0], self.tp.irreps_out.dim)
        for start in range(0, centre.shape[0], self.edge_block):
            block = slice(start, start + self.edge_block)
            summed = self.tp.add_summed(summed, h[neighbour[block]], edge_sh[block], self.radial(edge_basis[block]),
                                        centre[block])
        summed = summed * inv_sqrt_neighbors
        return x + self.gate(self.linear_out(summed) + self.self_connection(x, attrs))


class EquivariantModel(DisplacementModel):
    """Prior (zero, constant velocity or a least-squares autoregressive fit) plus an e3nn residual.

    Args:
        history: Number k of past displacements read (``history[:, :k]``).
        species: Species names, in the order of the ``species`` codes.
        cutoff: Radius of the neighbour graph, Å.
        prior: One of :data:`PRIORS`; None picks ``"force_matched"`` with ``bond_types`` and a
            single species (a bead-spring chain: the tables do not depend on species), else
            ``"centred_autoregressive"``, for k ≥ 1, and ``"zero"`` for k = 0.
        centred_residual: Remove the mean of the learned residual over each structure's atoms
            (no net drift from the network: momentum conservation for equal masses); None
            means True with the centred or force-matched prior, else False.
        hidden_irreps: Node feature irreps, e.g. ``"16x0e + 8x1o + 4x2e"``; must hold ``1o``.
        lmax: Largest degree of the edge spherical harmonics.
        num_layers: Number of interaction layers.
        num_basis: Number of Bessel radial functions.
        radial_hidden: Width of the radial MLPs' hidden layer.
        bond_types: Give every edge its topological class (bonded, 1-3, other) from the
            bond topology, which the windows must then carry (``bond_index``): for chains
            of identical beads, where distance alone cannot tell a bond from a contact.
            Classes go by atom indices, so with a cutoff beyond half the box every periodic
            image of a bonded partner counts as bonded.
    """

    name = "equivariant"
    trainable = True
    starts_at_prior = True

    def __init__(
        self,
        history: int,
        species: list[str],
        cutoff: float = 5.0,
        prior: str | None = None,
        centred_residual: bool | None = None,
        hidden_irreps: str = "16x0e + 8x1o + 4x2e",
        lmax: int = 2,
        num_layers: int = 2,
        num_basis: int = 8,
        radial_hidden: int = 16,
        bond_types: bool = False,
    ) -> None:
        super().__init__(history, species)
        if prior is None:
            # The force-matched tables are shared by all species: the default only for identical beads.
            bead_spring = bond_types and len(self.species) == 1
            prior = ("force_matched" if bead_spring else "centred_autoregressive") if self.history >= 1 else "zero"
        if prior not in PRIORS:
            raise MDNextError(f"unknown prior {prior!r}; known priors: {', '.join(PRIORS)}")
        if self.history < PRIORS[prior].min_history:
            raise MDNextError(f"prior {prior!r} needs history >= 1; with history 0 use prior 'zero'")
        if not cutoff > 0 or min(lmax, num_layers, num_basis, radial_hidden, len(self.species)) < 1:
            raise MDNextError("cutoff, lmax, num_layers, num_basis, radial_hidden and species must be positive")
        try:
            irreps_hidden = o3.Irreps(hidden_irreps).sort().irreps.simplify()
        except (ValueError, AssertionError) as exc:
            raise MDNextError(f"hidden irreps {hidden_irreps!r}: {first_line(exc)}") from None
        if o3.Irrep("1o") not in irreps_hidden or o3.Irrep("0e") not in irreps_hidden:
            raise MDNextError(f"hidden irreps {hidden_irreps!r} must contain 0e and 1o")
        self.cutoff = float(cutoff)
        self.prior = prior
        momentum_conserving = prior in ("centred_autoregressive", "force_matched")
        self.centred_residual = momentum_conserving if centred_residual is None else bool(centred_residual)
        self.hidden_irreps = str(irreps_hidden)
        self.lmax, self.num_layers = int(lmax), int(num_layers)
        self.num_basis, self.radial_hidden = int(num_basis), int(radial_hidden)
        self.bond_types = bool(bond_types)

        # The force-matched prior's pair table reaches as far as the network's graph.
        prior_options = {"cutoff": self.cutoff} if prior == "force_matched" else {}
        self.prior_model = PRIORS[prior](self.history, self.species, **prior_options)
        irreps_attr = o3.Irreps(f"{len(self.species)}x0e")
        irreps_in = o3.Irreps(f"{1 + len(self.species)}x0e") + o3.Irreps(f"{self.history}x1o" if self.history else "")
        irreps_sh = o3.Irreps.spherical_harmonics(self.lmax)
        self.embed = o3.Linear(irreps_in, irreps_hidden)
        self.spherical_harmonics = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
        self.basis = BesselBasis(self.cutoff, self.num_basis)
        self.layers = torch.nn.ModuleList(
            Interaction(irreps_hidden, irreps_sh, irreps_attr, self.num_basis + len(SEPARATIONS) * self.bond_types,
                        self.radial_hidden)
            for _ in range(self.num_layers)
        )
        self.head = o3.Linear(irreps_hidden, o3.Irreps("1x1o"))
        torch.nn.init.zeros_(self.head.weight)
        float64 = {"dtype": torch.float64}
        self.register_buffer("displacement_scale", torch.tensor(1.0, **float64))
        self.register_buffer("residual_scale", torch.tensor(1.0, **float64))
        self.register_buffer("avg_num_neighbors", torch.tensor(1.0, **float64))

    @property
    def hparams(self) -> dict[str, Any]:
        return {
            **super().hparams,
            "cutoff": self.cutoff,
            "prior": self.prior,
            "centred_residual": self.centred_residual,
            "hidden_irreps": self.hidden_irreps,
            "lmax": self.lmax,
            "num_layers": self.num_layers,
            "num_basis": self.num_basis,
            "radial_hidden": self.radial_hidden,
            "bond_types": self.bond_types,
        }

    def fit_closed_form(self, loader: Any) -> None:
        """Fit the prior, then the scales and the mean neighbour count, on training windows.

        Sets ``displacement_scale`` (RMS of one component of the history displacements, of
        ``y`` when k = 0), ``residual_scale`` (RMS of ``y - prior``) and
        ``avg_num_neighbors`` (edges per atom within the cutoff). A scale that comes out
        zero (motionless data, an exact prior) is left at 1 so that nothing divides by zero.

        Args:
            loader: Batches of training windows; iterated twice, so a list or a DataLoader,
                not a one-shot generator.
        """
        self.prior_model.fit_closed_form(loader)
        displacement_sq = residual_sq = 0.0
        displacement_count = atoms = edges = 0
        with torch.no_grad():
            for data in loader:
                y = data.y.to(torch.float64)
                source = data.history[:, : self.history].to(torch.float64) if self.history else y
                displacement_sq += float(source.square().sum())
                displacement_count += source.numel()
                residual_sq += float((y - self.prior_model(data)).square().sum())
                atoms += y.shape[0]
                edges += self._graph(data)[0].shape[1]
        if atoms == 0:
            raise MDNextError("no training windows to fit the equivariant model's scales on")
        values = (math.sqrt(displacement_sq / displacement_count), math.sqrt(residual_sq / (3 * atoms)), edges / atoms)
        for buffer, value in zip((self.displacement_scale, self.residual_scale, self.avg_num_neighbors), values):
            buffer.fill_(value if math.isfinite(value) and value > 0 else 1.0)

    def _graph(self, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Edge index (2, E) and float64 edge vectors (E, 3), Å, within the cutoff."""
        return radius_graph(data.pos, self.cutoff, getattr(data, "batch", None), data.cell, data.pbc)

    def _edge_classes(self, data: Any, edge_index: torch.Tensor) -> torch.Tensor:
        """(E, 3) float64 one-hot topological class of each edge (bonded 1-2, 1-3, other)."""
        bond_index = required_bond_index(data, "this equivariant model (bond_types)")
        separation = edge_separation(edge_index, bond_index.to(edge_index.device), data.pos.shape[0])
        return torch.nn.functional.one_hot(separation, len(SEPARATIONS)).to(torch.float64)

    def forward(self, data: Any) -> torch.Tensor:
        """Predicted displacement (n, 3) float64, Å: prior + residual_scale × network output."""
        prior = self.prior_model(data)
        dtype = self.head.weight.dtype
        edge_index, edge_vec = self._graph(data)
        attrs = torch.nn.functional.one_hot(data.species.long(), len(self.species)).to(torch.float64)
        history = data.history[:, : self.history].to(torch.float64) / self.displacement_scale
        constant = torch.ones_like(attrs[:, :1])
        node_in = torch.cat([constant, attrs, history.flatten(1)], dim=1).to(dtype)
        edge_sh = self.spherical_harmonics(edge_vec.to(dtype))
        length = torch.linalg.norm(edge_vec, dim=1)
        edge_basis = self.basis(length)
        if self.bond_types:
            edge_basis = torch.cat([edge_basis, self._edge_classes(data, edge_index) * self.basis.envelope(length)[:, None]],
                                   dim=1)
        edge_basis = edge_basis.to(dtype)
        inv_sqrt_neighbors = self.avg_num_neighbors.rsqrt().to(dtype)
        attrs = attrs.to(dtype)
        x = self.embed(node_in)
        for layer in self.layers:
            x = layer(x, attrs, edge_index, edge_sh, edge_basis, inv_sqrt_neighbors)
        residual = self.head(x).to(torch.float64)
        if self.centred_residual:
            residual = residual - structure_mean(residual, getattr(data, "batch", None))
        return prior + self.residual_scale * residual
