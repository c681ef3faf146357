"""The metrics against hand-computed values (mdnext.metrics)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch_geometric.utils import scatter

from mdnext.data import DataError, WindowDataset, make_loader
from mdnext.frames import Frames
from mdnext.metrics import equivariance_error, evaluate_windows, mse, rollout_rmsd
from mdnext.models.baselines import (
    Autoregressive,
    CentredAutoregressive,
    ConstantAcceleration,
    ConstantVelocity,
    ZeroDisplacement,
)
from mdnext.models.base import DisplacementModel
from mdnext.models.linear import LinearModel

SPECIES = ["Ar"]


def test_mse_on_a_tiny_tensor() -> None:
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    assert mse(pred, target) == pytest.approx((0 + 4 + 9 + 0 + 0 + 1) / 6, abs=1e-15)
    # the tutorial's loss
    assert mse(pred, target) == pytest.approx(float(torch.mean((pred - target) ** 2)), abs=1e-15)
    with pytest.raises(ValueError):
        mse(pred, target[:1])


def test_evaluate_windows_is_a_global_mean_over_atoms() -> None:
    rng = np.random.default_rng(0)
    big = Frames(positions=np.cumsum(rng.normal(size=(8, 3, 3)), axis=0), species=["Ar"] * 3)
    small = Frames(positions=np.cumsum(rng.normal(scale=5.0, size=(8, 1, 3)), axis=0), species=["Ar"])
    dataset = WindowDataset([big, small], history=1, stride=1)
    squares = [float((dataset[i].y ** 2).sum()) for i in range(len(dataset))]
    expected = sum(squares) / (3 * dataset.n_atoms)
    model = ZeroDisplacement(0, SPECIES)
    for batch_size in (1, 4, len(dataset)):
        assert evaluate_windows(model, make_loader(dataset, batch_size)) == pytest.approx(expected, rel=1e-14)
    with pytest.raises(DataError, match="no windows"):
        evaluate_windows(model, make_loader(WindowDataset(big, history=7, stride=1), 2))


def uniform_motion(n_frames: int, n_atoms: int, velocity: np.ndarray, **kwargs: Any) -> Frames:
    start = np.random.default_rng(1).uniform(0, 6, size=(1, n_atoms, 3))
    return Frames(positions=start + velocity * np.arange(n_frames)[:, None, None], species=["Ar"] * n_atoms, **kwargs)


@pytest.mark.parametrize("periodic", [False, True])
def test_rollout_rmsd_of_a_constant_velocity_trajectory(periodic: bool) -> None:
    velocity = np.array([0.03, -0.04, 0.12])  # |v| = 0.13 Å per frame, every atom
    kwargs = {"cell": np.array([[6.0, 0, 0], [1.0, 7.0, 0], [0, 0, 8.0]]), "pbc": True} if periodic else {}
    frames = uniform_motion(80, 5, velocity, **kwargs)
    if periodic:
        frames = frames.wrapped()
    horizons, stride = (1, 3, 5), 2
    exact = rollout_rmsd(ConstantVelocity(1, SPECIES), frames, range(20, 80), horizons, stride)
    assert set(exact) == set(horizons)
    assert max(exact.values()) < 1e-11
    still = rollout_rmsd(ZeroDisplacement(0, SPECIES), frames, range(20, 80), horizons, stride)
    for h in horizons:
        assert still[h] == pytest.approx(0.13 * h * stride, abs=1e-12)


def test_rollout_rmsd_by_hand_and_the_cap_on_starts() -> None:
    rng = np.random.default_rng(2)
    frames = Frames(positions=np.cumsum(rng.normal(scale=0.1, size=(40, 4, 3)), axis=0), species=["Ar"] * 4)
    x = frames.positions
    result = rollout_rmsd(ZeroDisplacement(0, SPECIES), frames, range(10, 40), horizons=(2, 4), stride=3, max_starts=1000)
    starts = range(10, 40 - 4 * 3)  # every start leaves room for the largest horizon
    for h in (2, 4):
        by_hand = np.mean([np.sqrt(np.mean(np.sum((x[t + 3 * h] - x[t]) ** 2, axis=-1))) for t in starts])
        assert result[h] == pytest.approx(by_hand, rel=1e-13)

    class Counting(ZeroDisplacement):
        graphs = 0

        def forward(self, data: Any) -> torch.Tensor:
            Counting.graphs += int(data.num_graphs)
            return super().forward(data)

    rollout_rmsd(Counting(0, SPECIES), frames, range(10, 40), horizons=(2, 4), stride=3, max_starts=5, starts_per_call=2)
    assert Counting.graphs == 5 * 4  # 5 starts, 4 steps each


def test_rollout_rmsd_leaves_out_horizons_that_do_not_fit() -> None:
    frames = uniform_motion(30, 2, np.array([0.1, 0.0, 0.0]))
    model = ConstantAcceleration(2, SPECIES)
    with pytest.warns(UserWarning, match=r"horizon\(s\) \[10, 100\] do not fit"):
        result = rollout_rmsd(model, frames, range(0, 20), horizons=(1, 10, 100), stride=2)
    assert list(result) == [1]
    with pytest.warns(UserWarning):
        assert rollout_rmsd(model, frames, range(0, 6), horizons=(1,), stride=2) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rollout_rmsd(model, frames, range(0, 30), horizons=(1, 5), stride=2)


def periodic_batch() -> Any:
    rng = np.random.default_rng(3)
    cell = np.array([[7.0, 0.0, 0.0], [1.5, 8.0, 0.0], [-1.0, 0.5, 9.0]])
    positions = rng.uniform(0, 7, size=(1, 6, 3)) + np.cumsum(rng.normal(scale=0.3, size=(30, 6, 3)), axis=0)
    frames = Frames(positions=positions, species=["Ar", "Kr"] * 3, cell=cell, pbc=True).wrapped()
    dataset = WindowDataset(frames, history=3, stride=1)
    return dataset, next(iter(make_loader(dataset, 4)))


def test_baselines_are_equivariant() -> None:
    dataset, batch = periodic_batch()
    autoregressive = Autoregressive(3, ["Ar", "Kr"])
    autoregressive.fit_closed_form(make_loader(dataset, 8))
    centred = CentredAutoregressive(3, ["Ar", "Kr"])
    centred.fit_closed_form(make_loader(dataset, 8))
    models = [ZeroDisplacement(0, ["Ar", "Kr"]), ConstantVelocity(1, ["Ar", "Kr"]), ConstantAcceleration(2, ["Ar", "Kr"]),
              autoregressive, centred]
    for model in models:
        assert equivariance_error(model, batch, n_trials=4) < 1e-12
    assert equivariance_error(models[1], dataset[0]) < 1e-12  # a single window works too


class Centred(DisplacementModel):
    """E(3)-equivariant and uses pos: each atom's offset from its structure's centroid."""

    def forward(self, data: Any) -> torch.Tensor:
        centroid = scatter(data.pos, data.batch, dim=0, reduce="mean")
        return 0.1 * (data.pos - centroid[data.batch])


class ByIndex(DisplacementModel):
    """Rotation-equivariant but depends on atom order."""

    def forward(self, data: Any) -> torch.Tensor:
        return data.history[:, 0] * torch.arange(data.pos.shape[0], dtype=torch.float64)[:, None]


class Pseudovector(DisplacementModel):
    """Equivariant under rotations, not reflections: a cross product."""

    def forward(self, data: Any) -> torch.Tensor:
        return torch.linalg.cross(data.history[:, 0], data.history[:, 1])


def test_equivariance_error_detects_each_broken_symmetry() -> None:
    _, batch = periodic_batch()
    assert equivariance_error(Centred(0, SPECIES), batch) < 1e-12  # translations and permutations handled
    assert equivariance_error(ByIndex(1, SPECIES), batch) > 0.1
    assert equivariance_error(Pseudovector(2, SPECIES), batch, n_trials=1) < 1e-12  # trial 0 is a rotation
    assert equivariance_error(Pseudovector(2, SPECIES), batch, n_trials=2) > 1e-3  # trial 1 reflects
    linear = LinearModel(0, SPECIES)
    with torch.no_grad():
        linear.linear.weight.copy_(torch.tensor([[0.9, 0.2, 0.0], [0.1, 1.1, -0.3], [0.0, 0.2, 0.8]]))
        linear.linear.bias.copy_(torch.tensor([0.5, -0.5, 0.2]))
    assert equivariance_error(linear, batch) > 1.0
    assert math.isfinite(equivariance_error(linear, batch, seed=1))


def test_rollout_rmsd_marks_diverging_horizons_infinite() -> None:
    """A model that blows up after a few steps gets inf beyond the divergence, finite before."""
    from mdnext.models.base import DisplacementModel

    class Exploding(DisplacementModel):
        name = "exploding"
        min_history = 1

        def forward(self, data):
            # multiplies the last displacement by 1e150 each step: finite twice, then overflows
            return 1e150 * data.history[:, 0].to(torch.float64)

    positions = np.arange(40)[:, None, None] * np.array([0.1, 0.0, 0.0]) + np.zeros((40, 2, 3))
    frames = Frames(positions=positions, species=["A", "A"])
    result = rollout_rmsd(Exploding(1, ["A"]), frames, horizons=(1, 10))
    assert math.isfinite(result[1]) and result[10] == math.inf


def test_rollout_rmsd_runaway_in_a_box_is_divergence_not_a_perfect_score() -> None:
    """Coordinates far beyond the box lose the displacement to rounding under minimum image.

    A periodic rollout whose steps exceed half the cell height counts as diverged (inf).
    """
    from mdnext.models.base import DisplacementModel

    class Runaway(DisplacementModel):
        name = "runaway"
        min_history = 1

        def forward(self, data):
            return torch.full_like(data.pos, 1e18, dtype=torch.float64)

    positions = np.arange(40)[:, None, None] * np.array([0.1, 0.0, 0.0]) + np.array([[1.0, 1.0, 1.0], [3.0, 2.0, 1.0]])
    for pbc, cell in ((True, np.eye(3) * 8.0), ([True, True, False], np.diag([8.0, 8.0, 0.0]))):
        frames = Frames(positions=positions, species=["A", "A"], cell=cell, pbc=pbc)
        assert rollout_rmsd(Runaway(1, ["A"]), frames, horizons=(1, 10)) == {1: math.inf, 10: math.inf}
        assert math.isfinite(rollout_rmsd(ConstantVelocity(1, ["A"]), frames, horizons=(10,))[10])
