"""Windows with a future horizon and the multi-step (unrolled) training loss."""

import numpy as np
import pytest
import torch

from mdnext.checkpoint import build_model
from mdnext.data import WindowDataset, make_datasets, make_loader
from mdnext.errors import MDNextError
from mdnext.frames import Frames
from mdnext.models.baselines import ConstantVelocity, ZeroDisplacement
from mdnext.trainer import TrainConfig, _mean_loss, fit, rollout_loss


def drifting(n_frames: int = 30, seed: int = 0) -> Frames:
    """4 atoms: a random walk of positions (so every displacement differs)."""
    steps = np.random.default_rng(seed).normal(scale=0.1, size=(n_frames, 4, 3))
    return Frames(positions=np.cumsum(steps, axis=0), species=["A"] * 4)


def test_future_holds_the_next_displacements():
    frames = drifting()
    base = WindowDataset(frames, history=2, stride=2)
    windows = base.with_horizon(3)
    assert len(windows) == len(base) - 4  # two more strides of room at the end
    item = windows[5]
    t = windows.windows[5][1]
    x = frames.positions
    for j in range(3):
        np.testing.assert_allclose(item.future[:, j].numpy(), x[t + 2 * (j + 1)] - x[t + 2 * j])
    torch.testing.assert_close(item.y, item.future[:, 0])
    assert not hasattr(base[0], "future") or base[0].future is None
    with pytest.raises(MDNextError, match="horizon"):
        base.with_horizon(0)


def test_rollout_loss_by_hand():
    speed = np.array([0.3, -0.1, 0.2])
    positions = np.arange(20)[:, None, None] * speed + np.zeros((20, 3, 3))
    frames = Frames(positions=positions, species=["A"] * 3)
    batch = next(iter(make_loader(WindowDataset(frames, history=1).with_horizon(4), 5)))
    # constant velocity is exact on uniform motion
    assert float(rollout_loss(ConstantVelocity(1, ["A"]), batch)) == pytest.approx(0.0, abs=1e-24)
    # standing still: the error after j steps is j v, weighed by 1/j: mean_j j * mean(v²)
    expected = np.mean([j * np.mean(speed**2) for j in range(1, 5)])
    assert float(rollout_loss(ZeroDisplacement(1, ["A"]), batch)) == pytest.approx(expected, rel=1e-12)
    # one step: the plain MSE
    one = next(iter(make_loader(WindowDataset(frames, history=1), 5)))
    assert float(rollout_loss(ZeroDisplacement(1, ["A"]), one)) == pytest.approx(np.mean(speed**2), rel=1e-12)


def test_validation_rollouts_pick_the_best_epoch():
    """``val_horizon`` scores validation windows by rollouts of that many steps, not one step."""
    datasets = make_datasets(drifting(80), history=2)
    model = build_model("linear", {"history": 2, "species": ["A"]})
    state = fit(model, datasets.train, datasets.val, TrainConfig(epochs=1, batch_size=8, val_horizon=5, quiet=True))
    five_steps = _mean_loss(model, datasets.val.with_horizon(5), 8, torch.device("cpu")) / state.loss_scale
    one_step = _mean_loss(model, datasets.val, 8, torch.device("cpu")) / state.loss_scale
    assert state.log[-1]["val_loss"] == pytest.approx(five_steps, rel=1e-12)
    assert five_steps != pytest.approx(one_step, rel=1e-3)
    with pytest.raises(MDNextError, match="too short for 30-step validation rollouts"):
        fit(build_model("linear", {"history": 2, "species": ["A"]}), datasets.train, datasets.val,
            TrainConfig(epochs=1, val_horizon=30, quiet=True))
