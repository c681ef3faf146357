"""Parameter-free physics extrapolators and the least-squares autoregressive baselines.

All are E(3)-equivariant by construction: they combine past displacements with scalar
coefficients. With ``d_j = history[:, j]`` (``d_0`` the most recent):

* ``zero``: the atoms stand still, 0.
* ``constant_velocity``: ``d_0``.
* ``constant_acceleration``: ``d_0 + (d_0 - d_1) = 2 d_0 - d_1``.
* ``autoregressive``: ``sum_j c_j d_j``, one scalar per lag fitted in closed form.
* ``centred_autoregressive``: the same with separate coefficients for the centroid (the mean
  displacement of the structure's atoms, ``D_j``) and each atom's motion relative to it:
  ``sum_j a_j D_j + b_j (d_j - D_j)``. An isolated system's centre of mass moves at
  constant velocity while its internal motion is damped and oscillates; one set of
  coefficients has to compromise between the two.
"""

from __future__ import annotations

from typing import Any

import torch
from torch_geometric.utils import scatter

from mdnext.models.base import DisplacementModel


class ZeroDisplacement(DisplacementModel):
    """Predicts no motion."""

    name = "zero"

    def forward(self, data: Any) -> torch.Tensor:
        return torch.zeros_like(data.pos, dtype=torch.float64)


class ConstantVelocity(DisplacementModel):
    """Repeats the last displacement."""

    name = "constant_velocity"
    min_history = 1

    def forward(self, data: Any) -> torch.Tensor:
        return data.history[:, 0].to(torch.float64)


class ConstantAcceleration(DisplacementModel):
    """Extrapolates the last two displacements linearly: ``2 d_0 - d_1``."""

    name = "constant_acceleration"
    min_history = 2

    def forward(self, data: Any) -> torch.Tensor:
        history = data.history.to(torch.float64)
        return 2.0 * history[:, 0] - history[:, 1]


class Autoregressive(DisplacementModel):
    """``sum_j c_j d_j``: one scalar coefficient per lag, least squares on the training windows.

    Before fitting, the coefficients are those of constant velocity (1, 0, 0, …).
    """

    name = "autoregressive"
    min_history = 1

    def __init__(self, history: int, species: list[str]) -> None:
        super().__init__(history, species)
        self.register_buffer("coefficients", constant_velocity_lags(self.history))

    def fit_closed_form(self, loader: Any) -> None:
        """Solve the normal equations ``G c = b``, ``G_jl = sum d_j·d_l``, ``b_j = sum d_j·y``."""
        normal = NormalEquations(self.history)
        for data in loader:
            normal.add(data.history[:, : self.history].to(torch.float64), data.y.to(torch.float64))
        self.coefficients.copy_(normal.solve())

    def forward(self, data: Any) -> torch.Tensor:
        return torch.einsum("nja,j->na", data.history[:, : self.history].to(torch.float64), self.coefficients)


class CentredAutoregressive(DisplacementModel):
    """``sum_j a_j D_j + b_j (d_j - D_j)``: per-lag coefficients for the centroid and the relative motion.

    ``D_j`` is the mean of ``d_j`` over the atoms of each structure (the centre-of-mass
    displacement when all masses are equal). Both sets are fitted by least squares on the
    training windows, each against its own part of the target; before fitting both are
    those of constant velocity.
    """

    name = "centred_autoregressive"
    min_history = 1

    def __init__(self, history: int, species: list[str]) -> None:
        super().__init__(history, species)
        self.register_buffer("centroid_coefficients", constant_velocity_lags(self.history))
        self.register_buffer("relative_coefficients", constant_velocity_lags(self.history))

    def fit_closed_form(self, loader: Any) -> None:
        """Two sets of normal equations: centroid parts against each other, relative parts likewise."""
        centroid, relative = NormalEquations(self.history), NormalEquations(self.history)
        for data in loader:
            history, y = data.history[:, : self.history].to(torch.float64), data.y.to(torch.float64)
            batch = getattr(data, "batch", None)
            history_mean, y_mean = structure_mean(history, batch), structure_mean(y, batch)
            centroid.add(history_mean, y_mean)
            relative.add(history - history_mean, y - y_mean)
        self.centroid_coefficients.copy_(centroid.solve())
        self.relative_coefficients.copy_(relative.solve())

    def forward(self, data: Any) -> torch.Tensor:
        history = data.history[:, : self.history].to(torch.float64)
        history_mean = structure_mean(history, getattr(data, "batch", None))
        return (torch.einsum("nja,j->na", history_mean, self.centroid_coefficients)
                + torch.einsum("nja,j->na", history - history_mean, self.relative_coefficients))


class NormalEquations:
    """Accumulates ``G_jl = sum d_j·d_l`` and ``b_j = sum d_j·y`` over windows; :meth:`solve` gives c.

    Args:
        lags: Number of coefficients.
    """

    def __init__(self, lags: int) -> None:
        self.gram = torch.zeros(lags, lags, dtype=torch.float64)
        self.rhs = torch.zeros(lags, dtype=torch.float64)

    def add(self, history: torch.Tensor, target: torch.Tensor) -> None:
        """Add windows: ``history`` (n, lags, 3) and ``target`` (n, 3), float64."""
        self.gram += torch.einsum("nja,nla->jl", history, history).cpu()
        self.rhs += torch.einsum("nja,na->j", history, target).cpu()

    def solve(self) -> torch.Tensor:
        """The least-squares coefficients (lags,) float64; minimum norm where G is singular."""
        return torch.linalg.lstsq(self.gram, self.rhs.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)


def constant_velocity_lags(lags: int) -> torch.Tensor:
    """Per-lag coefficients (1, 0, 0, …) float64: the next displacement is the last one."""
    coefficients = torch.zeros(lags, dtype=torch.float64)
    coefficients[0] = 1.0
    return coefficients


def structure_mean(values: torch.Tensor, batch: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``values`` (n, ...) over the atoms of each structure, repeated per atom: (n, ...).

    ``batch`` (n,) gives each atom's structure; None means one structure.
    """
    if batch is None:
        return values.mean(0, keepdim=True).expand_as(values)
    return scatter(values, batch, dim=0, reduce="mean")[batch]


#: The baselines reported beside every learned model, in table order.
BASELINES = ("zero", "constant_velocity", "constant_acceleration", "autoregressive", "centred_autoregressive")
#: The baselines whose number of lags is a choice (fitted on all the lags the data offers).
LAG_FITS = ("autoregressive", "centred_autoregressive")
