"""The tutorial's linear baseline ``x @ W + b`` and its lack of equivariance."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from mdnext.data import WindowDataset, make_loader
from mdnext.frames import Frames
from mdnext.metrics import equivariance_error
from mdnext.models.linear import LinearModel

W = torch.tensor([[0.9, 0.2, -0.1], [0.05, 1.1, 0.3], [-0.2, 0.0, 0.8]], dtype=torch.float64)
B = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)


def model_with(weight_matrix: torch.Tensor, bias: torch.Tensor) -> LinearModel:
    model = LinearModel(0, ["C", "H"])
    with torch.no_grad():
        model.linear.weight.copy_(weight_matrix.T)  # nn.Linear computes x @ weight.T
        model.linear.bias.copy_(bias)
    return model


def window(n_atoms: int = 6, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    data = Data(
        pos=torch.from_numpy(rng.uniform(0, 8, size=(n_atoms, 3))),
        history=torch.zeros(n_atoms, 0, 3, dtype=torch.float64),
        species=torch.from_numpy(rng.integers(0, 2, size=n_atoms)),
        cell=torch.zeros(1, 3, 3, dtype=torch.float64),
        pbc=torch.zeros(1, 3, dtype=torch.bool),
    )
    return Batch.from_data_list([data])


def test_starts_at_zero_displacement_in_float64() -> None:
    model = LinearModel(0, ["C", "H"])
    batch = window()
    out = model(batch)
    assert out.dtype == torch.float64 and out.shape == (6, 3)
    assert torch.equal(out, torch.zeros_like(out))
    assert model.linear.weight.dtype == torch.float64
    assert model.trainable and model.name == "linear" and model.min_history == 0


def test_next_frame_is_x_at_w_plus_b() -> None:
    batch = window()
    out = model_with(W, B)(batch)
    expected = batch.pos @ W + B - batch.pos
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)


def test_not_equivariant() -> None:
    model = model_with(W, B)
    batch = window()
    rotation = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    rotated = batch.clone()
    rotated.pos = batch.pos @ rotation.T
    difference = model(rotated) - model(batch) @ rotation.T
    assert difference.abs().max() > 0.1
    shifted = batch.clone()
    shifted.pos = batch.pos + 3.0
    assert (model(shifted) - model(batch)).abs().max() > 0.1  # a translation changes the displacement
    assert equivariance_error(model, batch) > 0.5


def test_training_on_a_preferred_direction_breaks_equivariance() -> None:
    """Atoms drifting along +x: a few Adam steps learn b ≈ (v, 0, 0), which a rotation does not follow."""
    rng = np.random.default_rng(1)
    drift = np.array([0.2, 0.0, 0.0])
    positions = rng.uniform(0, 5, size=(1, 8, 3)) + drift * np.arange(40)[:, None, None]
    dataset = WindowDataset(Frames(positions=positions, species=["C", "H"] * 4), history=0, stride=1)
    model = LinearModel(0, ["C", "H"])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        for batch in make_loader(dataset, 16, shuffle=True, seed=0):
            optimizer.zero_grad()
            loss = torch.mean((model(batch) - batch.y) ** 2)
            loss.backward()
            optimizer.step()
    batch = next(iter(make_loader(dataset, 16)))
    scale = float(batch.y.norm(dim=-1).mean())
    with torch.no_grad():
        assert float(torch.mean((model(batch) - batch.y) ** 2)) < 0.1 * scale**2  # it did learn the drift
    assert equivariance_error(model, batch) > 1e-2 * scale


def test_rebuilt_from_hparams() -> None:
    model = model_with(W, B)
    rebuilt = LinearModel(**LinearModel(2, ["C", "H"]).hparams)
    assert rebuilt.history == 2 and rebuilt.species == ["C", "H"]
    rebuilt.load_state_dict(model.state_dict())
    batch = window()
    torch.testing.assert_close(rebuilt(batch), model(batch), rtol=0, atol=0)
