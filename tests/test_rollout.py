"""Autoregressive rollout: stride, history buffer, batching, periodic boxes and the divergence guard."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from mdnext.errors import MDNextError
from mdnext.models.baselines import Autoregressive, ConstantAcceleration, ConstantVelocity, ZeroDisplacement
from mdnext.models.linear import LinearModel
from mdnext.neighbors import radius_graph
from mdnext.rollout import RolloutError, rollout

SPECIES = ["Ar"]


def trajectory(n_frames: int, n_atoms: int, velocity: np.ndarray, acceleration: float = 0.0, seed: int = 0) -> np.ndarray:
    """(T, N, 3) x_t = x_0 + v t + a t² / 2 with random x_0 and per-atom v."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)[:, None, None]
    start = rng.uniform(0, 5, size=(1, n_atoms, 3))
    return start + velocity * t + 0.5 * acceleration * velocity * t**2


def test_constant_velocity_continues_a_uniform_motion_with_stride() -> None:
    velocity = np.random.default_rng(1).normal(scale=0.1, size=(1, 4, 3))
    x = trajectory(40, 4, velocity)
    stride, history = 3, 1
    seed = torch.from_numpy(x[: history * stride + 1])  # frames 0..3, newest is 3
    out = rollout(ConstantVelocity(history, SPECIES), seed, torch.zeros(4, dtype=torch.long), 5, stride)
    assert out.shape == (1, 5, 4, 3) and out.dtype == torch.float64
    expected = x[3 + stride * np.arange(1, 6)]
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=0, atol=1e-12)


def test_constant_acceleration_continues_a_uniformly_accelerated_motion() -> None:
    velocity = np.random.default_rng(2).normal(scale=0.1, size=(1, 3, 3))
    x = trajectory(60, 3, velocity, acceleration=0.05)
    stride = 2
    seed = torch.from_numpy(x[3 : 3 + 2 * stride + 1])  # extra older frames would be ignored; newest is frame 7
    out = rollout(ConstantAcceleration(2, SPECIES), seed, torch.zeros(3, dtype=torch.long), 10, stride)
    np.testing.assert_allclose(out[0].numpy(), x[7 + stride * np.arange(1, 11)], rtol=0, atol=1e-11)


def test_history_buffer_matches_the_recurrence() -> None:
    """AR(3) rollout equals d_{n+1} = sum_j c_j d_{n-j} iterated by hand, with stride 2 and a longer seed."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 2, 3))
    stride, coefficients = 2, np.array([0.7, -0.2, 0.4])
    model = Autoregressive(3, SPECIES)
    model.coefficients.copy_(torch.from_numpy(coefficients))
    out = rollout(model, torch.from_numpy(x), torch.zeros(2, dtype=torch.long), 4, stride)
    frames = [x[11 - 3 * stride], x[11 - 2 * stride], x[11 - stride], x[11]]
    for _ in range(4):
        d = [frames[-1 - j] - frames[-2 - j] for j in range(3)]
        frames.append(frames[-1] + sum(c * dj for c, dj in zip(coefficients, d)))
    np.testing.assert_allclose(out[0].numpy(), np.stack(frames[4:]), rtol=0, atol=1e-12)


def test_linear_model_iterates_x_at_w_plus_b() -> None:
    model = LinearModel(0, SPECIES)
    weight = torch.tensor([[0.99, 0.01, 0.0], [-0.01, 0.99, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    bias = torch.tensor([0.01, 0.02, -0.01], dtype=torch.float64)
    with torch.no_grad():
        model.linear.weight.copy_(weight.T)
        model.linear.bias.copy_(bias)
    x0 = torch.rand(1, 1, 5, 3, dtype=torch.float64)
    out = rollout(model, x0, torch.zeros(5, dtype=torch.long), 3, 1)
    expected, current = [], x0[0, 0]
    for _ in range(3):
        current = current @ weight + bias
        expected.append(current)
    torch.testing.assert_close(out[0], torch.stack(expected), rtol=0, atol=1e-14)


def test_batched_starts_equal_separate_rollouts() -> None:
    rng = np.random.default_rng(4)
    seeds = torch.from_numpy(rng.normal(size=(3, 5, 4, 3)))
    model = ConstantAcceleration(2, SPECIES)
    species = torch.zeros(4, dtype=torch.long)
    together = rollout(model, seeds, species, 6, 2)
    assert together.shape == (3, 6, 4, 3)
    for b in range(3):
        torch.testing.assert_close(together[b], rollout(model, seeds[b], species, 6, 2)[0], rtol=0, atol=0)


def test_periodic_seed_wrapped_or_not_gives_the_same_motion() -> None:
    cell = np.array([[5.0, 0.0, 0.0], [1.0, 6.0, 0.0], [0.0, 0.5, 7.0]])
    velocity = np.random.default_rng(5).normal(scale=0.6, size=(1, 6, 3))
    x = trajectory(45, 6, velocity)
    fractional = x @ np.linalg.inv(cell)
    wrapped = (fractional - np.floor(fractional)) @ cell
    assert np.abs(wrapped[:3] - x[:3]).max() > 1.0
    species = torch.zeros(6, dtype=torch.long)
    model = ConstantVelocity(1, SPECIES)
    from_unwrapped = rollout(model, torch.from_numpy(x[:3]), species, 20, 2, torch.from_numpy(cell), True)
    from_wrapped = rollout(model, torch.from_numpy(wrapped[:3]), species, 20, 2, torch.from_numpy(cell), True)
    # positions accumulate unwrapped: the wrapped start moves by the same displacements
    np.testing.assert_allclose(from_unwrapped[0].numpy(), x[2 + 2 * np.arange(1, 21)], atol=1e-11)
    np.testing.assert_allclose((from_wrapped - from_unwrapped).numpy(), np.broadcast_to(wrapped[2] - x[2], (1, 20, 6, 3)), atol=1e-11)
    # wrap=True puts both into the box, identically
    a = rollout(model, torch.from_numpy(x[:3]), species, 20, 2, torch.from_numpy(cell), True, wrap=True)
    b = rollout(model, torch.from_numpy(wrapped[:3]), species, 20, 2, torch.from_numpy(cell), True, wrap=True)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-10)
    inside = a.numpy() @ np.linalg.inv(cell)
    assert inside.min() >= -1e-12 and inside.max() < 1.0


class Scripted(ZeroDisplacement):
    """Returns ``values[k]`` (Å, all atoms) on its k-th call; records its mode and grad state."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0, SPECIES)
        self.values = values
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, data: Any) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return torch.full_like(data.pos, self.values[len(self.calls) - 1], dtype=torch.float64)


def test_non_finite_step_is_named() -> None:
    model = Scripted([0.1, 0.1, float("nan"), 0.1])
    with pytest.raises(RolloutError, match="rollout step 3 of 4: .*non-finite") as info:
        rollout(model, torch.zeros(1, 1, 2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.long), 4, 1)
    assert info.value.step == 3 and isinstance(info.value, MDNextError)


def test_oversized_step_is_named() -> None:
    seed = torch.from_numpy(trajectory(3, 2, np.full((1, 2, 3), 0.01)))  # seed RMS 0.01 Å
    model = Autoregressive(1, SPECIES)
    model.coefficients.fill_(3.0)  # grows 3x per step: 0.03, 0.09, 0.27, 0.81, then 2.43 > 100 x 0.01
    with pytest.raises(RolloutError, match="rollout step 5 of 10: displacement RMS") as info:
        rollout(model, seed, torch.zeros(2, dtype=torch.long), 10, 1)
    assert info.value.step == 5
    # without history the bound is an absolute 5 Å; an explicit bound overrides either
    with pytest.raises(RolloutError, match="step 2 of 3"):
        rollout(Scripted([1.0, 6.0, 1.0]), seed[:1], torch.zeros(2, dtype=torch.long), 3, 1)
    out = rollout(Scripted([1.0, 6.0, 1.0]), seed[:1], torch.zeros(2, dtype=torch.long), 3, 1, max_step_rms=10.0)
    assert out.shape == (1, 3, 2, 3)


class ScriptedWithNeighbours(Scripted):
    """:class:`Scripted` moving every second atom only, after building the neighbour list of its
    input as the e3nn model does."""

    def forward(self, data: Any) -> torch.Tensor:
        radius_graph(data.pos, 5.0, getattr(data, "batch", None), data.cell, data.pbc)
        moved = super().forward(data)
        moved[0::2] = 0.0
        return moved


def test_positions_beyond_the_neighbour_list_are_a_named_divergence() -> None:
    """vesin crashes the process (SIGFPE) on coordinates ~1e6 Å apart; a rollout that gets there is stopped."""
    with pytest.raises(RolloutError, match="rollout step 2 of 3: positions span 1e\\+06 Å") as info:
        rollout(ScriptedWithNeighbours([1e6, 0.0, 0.0]), torch.zeros(1, 1, 2, 3, dtype=torch.float64),
                torch.zeros(2, dtype=torch.long), 3, 1, max_step_rms=float("inf"))
    assert info.value.step == 2


def test_runs_in_eval_mode_without_grad_and_restores_the_mode() -> None:
    model = Scripted([0.0, 0.0])
    model.train()
    rollout(model, torch.zeros(2, 1, 1, 3, dtype=torch.float64), torch.zeros(1, dtype=torch.long), 2, 1)
    assert model.calls == [(False, False), (False, False)]
    assert model.training


def test_short_seed_and_bad_shapes_are_errors() -> None:
    species = torch.zeros(2, dtype=torch.long)
    with pytest.raises(RolloutError, match="needs 7 seed frames, got 5"):
        rollout(ConstantAcceleration(2, SPECIES), torch.zeros(1, 5, 2, 3, dtype=torch.float64), species, 3, 3)
    with pytest.raises(RolloutError, match="species"):
        rollout(ZeroDisplacement(0, SPECIES), torch.zeros(1, 1, 2, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.long), 1)
    with pytest.raises(RolloutError, match="need a cell"):
        rollout(ZeroDisplacement(0, SPECIES), torch.zeros(1, 1, 2, 3, dtype=torch.float64), species, 1, pbc=True)
