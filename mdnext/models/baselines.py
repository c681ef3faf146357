"""Parameter-free physics extrapolators and the least-squares autoregressive baseline.

All are E(3)-equivariant by construction: they combine an atom's own past displacements
with scalar coefficients. With ``d_j = history[:, j]`` (``d_0`` the most recent):

* ``zero``: the atoms stand still, 0.
* ``constant_velocity``: ``d_0``.
* ``constant_acceleration``: ``d_0 + (d_0 - d_1) = 2 d_0 - d_1``.
* ``autoregressive``: ``sum_j c_j d_j``, one scalar per lag fitted in closed form.
"""

from __future__ import annotations

from typing import Any

import torch

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
        initial = torch.zeros(self.history, dtype=torch.float64)
        initial[0] = 1.0
        self.register_buffer("coefficients", initial)

    def fit_closed_form(self, loader: Any) -> None:
        """Solve the normal equations ``G c = b``, ``G_jl = sum d_j·d_l``, ``b_j = sum d_j·y``."""
        gram = torch.zeros(self.history, self.history, dtype=torch.float64)
        rhs = torch.zeros(self.history, dtype=torch.float64)
        for data in loader:
            history = data.history[:, : self.history].to(torch.float64)
            gram += torch.einsum("nja,nla->jl", history, history)
            rhs += torch.einsum("nja,na->j", history, data.y.to(torch.float64))
        solution = torch.linalg.lstsq(gram, rhs.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)
        self.coefficients.copy_(solution)

    def forward(self, data: Any) -> torch.Tensor:
        return torch.einsum("nja,j->na", data.history[:, : self.history].to(torch.float64), self.coefficients)


#: The baselines reported beside every learned model, in table order.
BASELINES = ("zero", "constant_velocity", "constant_acceleration", "autoregressive")
