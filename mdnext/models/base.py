"""The interface every displacement model implements.

A model maps a *window* — the current positions and the k past displacements of each atom —
to the displacement of each atom ``stride`` frames ahead. Windows arrive as a
:class:`torch_geometric.data.Batch` with these fields (n atoms over B structures):

* ``pos`` (n, 3) float64, positions at the current frame t, Å.
* ``history`` (n, k, 3) float64, past displacements, Å: ``history[:, j] = x[t - j s] - x[t - (j + 1) s]``
  (so ``history[:, 0]`` is the most recent one), by minimum image under periodic boundaries.
* ``species`` (n,) int64, index into the model's ``species`` list.
* ``cell`` (B, 3, 3) float64 lattice vectors as rows, Å (zeros without a box); ``pbc`` (B, 3) bool.
* ``batch`` (n,) int64, the structure of each atom; ``y`` (n, 3) float64 target displacement
  ``x[t + s] - x[t]`` (training and evaluation only).

``forward`` returns the predicted displacement, (n, 3) float64 in Å.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch


class DisplacementModel(torch.nn.Module):
    """Base class: a model rebuilt from ``name`` and plain-data ``hparams``.

    Args:
        history: Number k of past displacements the model reads.
        species: Species names, in the order of the ``species`` codes.
    """

    name: ClassVar[str] = ""
    #: Whether the model has parameters trained by gradient descent.
    trainable: ClassVar[bool] = False
    #: Smallest history this model needs.
    min_history: ClassVar[int] = 0
    #: Whether a new model, after its closed-form fit, already is a sensible predictor (e.g. a
    #: physics prior plus a zero-initialised learned part), so that it may win as epoch 0.
    starts_at_prior: ClassVar[bool] = False

    def __init__(self, history: int, species: list[str]) -> None:
        super().__init__()
        if history < self.min_history:
            raise ValueError(f"model {self.name!r} needs history >= {self.min_history}, got {history}")
        self.history = int(history)
        self.species = list(species)

    @property
    def hparams(self) -> dict[str, Any]:
        """Plain data (str, int, float, lists) from which ``type(self)(**hparams)`` rebuilds the model."""
        return {"history": self.history, "species": self.species}

    def fit_closed_form(self, loader: Any) -> None:
        """Fit what has a closed form (normalisation, least-squares coefficients) on training windows.

        ``loader`` yields batches as described in this module. The default does nothing.
        """

    def forward(self, data: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
