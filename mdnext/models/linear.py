"""The tutorial's linear baseline: the next frame is ``x @ W + b``, per atom."""

from __future__ import annotations

from typing import Any

import torch

from mdnext.models.base import DisplacementModel


class LinearModel(DisplacementModel):
    """Predicts each atom's next position as ``pos @ W + b`` (W 3×3, b (3,)), kept as in the tutorial.

    It acts on absolute Cartesian positions, so it is neither rotation- nor
    translation-equivariant (that is what it is here to show). The ``torch.nn.Linear(3, 3)``
    holds float64 parameters and is evaluated in float64: ``W = linear.weight.T``,
    ``b = linear.bias``. It starts at ``W = 1``, ``b = 0`` (zero displacement) rather than the
    tutorial's random initialisation; the function class and its optimum are the same. It reads
    no history.

    ``forward`` returns the displacement ``pos @ W + b - pos``, (n, 3) float64 in Å.
    """

    name = "linear"
    trainable = True
    min_history = 0

    def __init__(self, history: int, species: list[str]) -> None:
        super().__init__(history, species)
        self.linear = torch.nn.Linear(3, 3, dtype=torch.float64)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(3, dtype=torch.float64))
            self.linear.bias.zero_()

    def forward(self, data: Any) -> torch.Tensor:
        pos = data.pos.to(torch.float64)
        return self.linear(pos) - pos
