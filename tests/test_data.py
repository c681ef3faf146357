"""Windows, chronological splits, species codes and seeded loaders (mdnext.data)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mdnext.data import (
    DataError,
    WindowDataset,
    chronological_split,
    encode_species,
    make_datasets,
    make_loader,
    species_list,
)
from mdnext.errors import MDNextError
from mdnext.frames import Frames
from mdnext.models.baselines import Autoregressive, CentredAutoregressive, ConstantVelocity, structure_mean


def random_walk(n_frames: int, n_atoms: int, step: float = 0.3, seed: int = 0, **kwargs) -> Frames:
    rng = np.random.default_rng(seed)
    positions = 5.0 + np.cumsum(rng.normal(scale=step, size=(n_frames, n_atoms, 3)), axis=0)
    species = kwargs.pop("species", ["O", "H", "H", "C", "N"][:n_atoms] * (n_atoms // 5 + 1))[:n_atoms]
    return Frames(positions=positions, species=species, **kwargs)


def test_split_ranges_are_chronological_and_cover_all_frames() -> None:
    split = chronological_split(100)
    assert split == {"train": range(0, 70), "val": range(70, 80), "test": range(80, 100)}
    # the tutorial's 2048 frames: the last 20% for testing
    assert chronological_split(2048, 0.2, 0.0)["test"] == range(1638, 2048)
    assert len(chronological_split(2048, 0.2, 0.0)["val"]) == 0


@pytest.mark.parametrize(("history", "stride", "test_fraction", "val_fraction"), [(2, 2, 0.2, 0.1), (0, 1, 0.2, 0.0), (3, 5, 0.25, 0.15)])
def test_split_too_few_frames_names_the_minimum(history: int, stride: int, test_fraction: float, val_fraction: float) -> None:
    with pytest.raises(DataError) as info:
        chronological_split(3, test_fraction, val_fraction, history=history, stride=stride)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, MDNextError)
    needed = int(re.search(r"at least (\d+) frames", message).group(1))
    # the stated minimum works and nothing shorter does
    chronological_split(needed, test_fraction, val_fraction, history=history, stride=stride)
    for n in range(1, needed):
        with pytest.raises(DataError):
            chronological_split(n, test_fraction, val_fraction, history=history, stride=stride)


@pytest.mark.parametrize("bad", [{"test_fraction": 1.0}, {"val_fraction": -0.1}, {"test_fraction": 0.6, "val_fraction": 0.4}, {"stride": 0}, {"history": -1}])
def test_split_rejects_impossible_requests(bad: dict) -> None:
    with pytest.raises(DataError):
        chronological_split(1000, **bad)


@pytest.mark.parametrize(("n_frames", "history", "stride"), [(30, 1, 3), (40, 0, 1), (57, 4, 2), (50, 1, 5)])
def test_window_counts_and_no_window_crosses_a_boundary(n_frames: int, history: int, stride: int) -> None:
    frames = random_walk(n_frames, 2)
    datasets = make_datasets(frames, history, stride, test_fraction=0.25, val_fraction=0.25)
    for name in ("train", "val", "test"):
        dataset = getattr(datasets, name)
        (frame_range,) = datasets.ranges[name]
        assert len(dataset) == len(frame_range) - history * stride - stride
        for _, t in dataset.windows:
            assert frame_range.start <= t - history * stride and t + stride <= frame_range.stop - 1
    # the windows of one split are all windows inside its range
    whole = WindowDataset(frames, history, stride)
    assert len(whole) == n_frames - history * stride - stride


def test_window_contents_match_the_definition() -> None:
    frames = random_walk(30, 3, species=["O", "H", "H"])
    x = frames.positions
    history, stride = 3, 2
    dataset = WindowDataset(frames, history, stride, species=["H", "O"])
    for index in (0, 5, len(dataset) - 1):
        _, t = dataset.windows[index]
        item = dataset[index]
        assert item.pos.dtype == item.history.dtype == item.y.dtype == torch.float64
        assert item.history.shape == (3, history, 3)
        np.testing.assert_array_equal(item.pos.numpy(), x[t])
        for j in range(history):
            np.testing.assert_allclose(item.history[:, j].numpy(), x[t - j * stride] - x[t - (j + 1) * stride], rtol=0, atol=1e-13)
        np.testing.assert_allclose(item.y.numpy(), x[t + stride] - x[t], rtol=0, atol=1e-13)
        assert item.species.tolist() == [1, 0, 0] and item.species.dtype == torch.long
        assert item.cell.shape == (1, 3, 3) and not item.cell.any()
        assert item.pbc.shape == (1, 3) and item.pbc.dtype == torch.bool and not item.pbc.any()


@pytest.mark.parametrize(
    "cell",
    [np.diag([6.0, 7.0, 8.0]), np.array([[6.0, 0.0, 0.0], [2.0, 7.0, 0.0], [1.0, -1.5, 8.0]])],
    ids=["orthorhombic", "triclinic"],
)
def test_wrapped_trajectory_gives_the_same_windows(cell: np.ndarray) -> None:
    unwrapped = random_walk(60, 5, step=0.4, cell=cell, pbc=True)
    wrapped = unwrapped.wrapped()
    assert np.abs(wrapped.positions - unwrapped.positions).max() > 5.0  # atoms did cross the box
    a = WindowDataset(unwrapped, 3, 2)
    b = WindowDataset(wrapped, 3, 2)
    assert len(a) == len(b)
    for index in range(len(a)):
        np.testing.assert_allclose(a[index].history.numpy(), b[index].history.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(a[index].y.numpy(), b[index].y.numpy(), rtol=0, atol=1e-12)
    item = b[0]
    np.testing.assert_array_equal(item.cell[0].numpy(), cell)
    assert item.pbc.all()


def test_several_trajectories_of_different_atom_sets() -> None:
    water = random_walk(40, 3, species=["O", "H", "H"], seed=1)
    co = random_walk(25, 2, species=["C", "O"], seed=2)
    assert species_list([water, co]) == ["C", "H", "O"]
    datasets = make_datasets([water, co], history=2, stride=1, test_fraction=0.2, val_fraction=0.2)
    assert datasets.species == ["C", "H", "O"]
    assert datasets.ranges["test"] == [range(32, 40), range(20, 25)]
    expected = sum(len(r) - 3 for r in datasets.ranges["train"])
    assert len(datasets.train) == expected
    trajectories = {i for i, _ in datasets.train.windows}
    assert trajectories == {0, 1}
    batch = next(iter(make_loader(datasets.train, batch_size=len(datasets.train))))
    assert batch.num_graphs == len(datasets.train)
    assert batch.pos.shape[0] == datasets.train.n_atoms
    assert batch.cell.shape == (len(datasets.train), 3, 3) and batch.pbc.shape == (len(datasets.train), 3)
    codes = {tuple(datasets.train[i].species.tolist()) for i in range(len(datasets.train))}
    assert codes == {(2, 1, 1), (0, 2)}
    # the splits read the trajectory's own positions: no copy is made
    assert datasets.train._tracks[0].positions is datasets.test._tracks[0].positions


def test_short_trajectory_is_named() -> None:
    with pytest.raises(DataError, match=r"trajectory 1: .* at least \d+ frames"):
        make_datasets([random_walk(100, 2), random_walk(8, 2)], history=2, stride=2)


def test_unknown_species_is_an_error() -> None:
    with pytest.raises(DataError, match="species C not in the species list"):
        encode_species(np.array(["H", "C"]), ["H", "O"])
    with pytest.raises(DataError):
        WindowDataset(random_walk(10, 2, species=["C", "O"]), 1, 1, species=["O"])


def test_seeded_loader_repeats_its_order() -> None:
    dataset = WindowDataset(random_walk(80, 2), 1, 1)

    def order(seed: int) -> list[float]:
        return [float(v) for batch in make_loader(dataset, 7, shuffle=True, seed=seed) for v in batch.pos[:, 0]]

    first = order(3)
    assert first == order(3)
    assert first != order(4)
    assert sorted(first) == sorted(order(4))
    unshuffled = [float(v) for batch in make_loader(dataset, 7) for v in batch.pos[:, 0]]
    assert unshuffled == [float(v) for i in range(len(dataset)) for v in dataset[i].pos[:, 0]]


def test_models_read_only_their_own_history() -> None:
    frames = random_walk(30, 3)
    batch = next(iter(make_loader(WindowDataset(frames, 4, 1), 5)))
    assert batch.history.shape[1] == 4
    torch.testing.assert_close(ConstantVelocity(1, ["C", "H", "O"])(batch), batch.history[:, 0])
    model = Autoregressive(2, ["C", "H", "O"])
    model.coefficients.copy_(torch.tensor([0.5, 0.25], dtype=torch.float64))
    torch.testing.assert_close(model(batch), 0.5 * batch.history[:, 0] + 0.25 * batch.history[:, 1])


def test_autoregressive_fit_recovers_known_coefficients() -> None:
    """AR(2) displacements d_t = 1.2 d_{t-1} - 0.5 d_{t-2} + noise, windows with more history (4)."""
    rng = np.random.default_rng(7)
    n_frames, n_atoms = 1500, 8
    coefficients = np.array([1.2, -0.5])
    displacements = np.zeros((n_frames, n_atoms, 3))
    noise = rng.normal(scale=0.05, size=displacements.shape)
    for t in range(2, n_frames):
        displacements[t] = coefficients[0] * displacements[t - 1] + coefficients[1] * displacements[t - 2] + noise[t]
    frames = Frames(positions=np.cumsum(displacements, axis=0), species=["Ar"] * n_atoms)
    dataset = WindowDataset(frames, history=4, stride=1)
    model = Autoregressive(2, ["Ar"])
    model.fit_closed_form(make_loader(dataset, 256))
    np.testing.assert_allclose(model.coefficients.numpy(), coefficients, atol=0.02)
    # a lag the data does not use gets a coefficient near zero
    model3 = Autoregressive(3, ["Ar"])
    model3.fit_closed_form(make_loader(dataset, 256))
    np.testing.assert_allclose(model3.coefficients.numpy(), [*coefficients, 0.0], atol=0.03)


def test_centred_autoregressive_fits_centroid_and_relative_motion_apart() -> None:
    """Each chain drifts at its own constant velocity; relative motion is AR(2) with zero mean.

    One set of coefficients cannot be exact for both; the centred fit recovers the drift's
    constant velocity (coefficients summing to 1) and the AR(2) law, and predicts the drift.
    """
    rng = np.random.default_rng(11)
    n_frames, n_atoms = 1500, 6
    relative = np.zeros((n_frames, n_atoms, 3))
    noise = rng.normal(scale=0.05, size=relative.shape)
    for t in range(2, n_frames):
        relative[t] = 1.2 * relative[t - 1] - 0.5 * relative[t - 2] + noise[t]
    relative -= relative.mean(axis=1, keepdims=True)
    trajectories = [Frames(positions=np.cumsum(relative + velocity, axis=0), species=["Ar"] * n_atoms)
                    for velocity in (np.array([0.3, -0.1, 0.0]), np.array([0.0, 0.2, 0.1]))]
    windows = [WindowDataset(frames, history=2, stride=1) for frames in trajectories]
    loaders = [batch for dataset in windows for batch in make_loader(dataset, 128)]
    centred = CentredAutoregressive(2, ["Ar"])
    centred.fit_closed_form(loaders)
    np.testing.assert_allclose(centred.relative_coefficients.numpy(), [1.2, -0.5], atol=0.02)
    assert float(centred.centroid_coefficients.sum()) == pytest.approx(1.0, abs=1e-9)
    batch = loaders[0]
    drift = structure_mean(centred(batch), batch.batch)
    torch.testing.assert_close(drift, structure_mean(batch.y, batch.batch), rtol=0, atol=1e-9)
    plain = Autoregressive(2, ["Ar"])
    plain.fit_closed_form(loaders)
    assert float((plain(batch) - batch.y).square().mean()) > 1.05 * float((centred(batch) - batch.y).square().mean())


def test_structure_mean_per_structure_and_single() -> None:
    values = torch.arange(12, dtype=torch.float64).reshape(6, 2)
    batch = torch.tensor([0, 0, 1, 1, 1, 2])
    expected = torch.tensor([[1.0, 2.0]] * 2 + [[6.0, 7.0]] * 3 + [[10.0, 11.0]], dtype=torch.float64)
    torch.testing.assert_close(structure_mean(values, batch), expected)
    torch.testing.assert_close(structure_mean(values, None), values.mean(0).expand(6, 2))


def test_batches_match_single_windows_in_order() -> None:
    frames = random_walk(30, 4, cell=np.eye(3) * 6.0, pbc=True).wrapped()
    dataset = WindowDataset(frames, history=3, stride=2).with_horizon(2)
    indices = np.array([5, 0, 11, 3])
    batch = dataset.batch(indices)
    assert batch.num_graphs == 4 and batch.batch.tolist() == sum(([i] * 4 for i in range(4)), [])
    for position, index in enumerate(indices):
        window = dataset[int(index)]
        atoms = slice(4 * position, 4 * (position + 1))
        for key in ("pos", "history", "y", "future", "species"):
            assert torch.equal(batch[key][atoms], window[key]), key
        assert torch.equal(batch.cell[position], window.cell[0])
    # by hand: the newest past displacement of window t is x[t] - x[t - s] by minimum image
    t = dataset.windows[5][1]
    raw = frames.positions[t] - frames.positions[t - 2]
    expected = raw - 6.0 * np.round(raw / 6.0)
    np.testing.assert_allclose(batch.history[:4, 0].numpy(), expected, atol=1e-12)


def test_sharded_loader_splits_each_global_batch_between_ranks() -> None:
    dataset = WindowDataset(random_walk(60, 3), history=2)
    single = [b.pos for b in make_loader(dataset, 8, shuffle=True, seed=4)]
    shards = [[b.pos for b in make_loader(dataset, 8, shuffle=True, seed=4, rank=r, world_size=2)] for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(single) - 1  # 57 windows: the last batch of 1 is too small for 2
    for step, (a, b) in enumerate(zip(*shards)):
        assert torch.equal(torch.cat([a, b]), single[step])
    with pytest.raises(DataError, match="rank 2"):
        make_loader(dataset, 8, rank=2, world_size=2)


def test_limit_and_subset() -> None:
    dataset = WindowDataset(random_walk(60, 3), history=2)
    limited = make_loader(dataset, 8, shuffle=True, seed=1, limit=20)
    assert sum(b.num_graphs for b in limited) == 20
    first = [b.pos for b in limited]
    assert all(torch.equal(a, b) for a, b in zip(first, [b.pos for b in limited]))  # same seed, same windows
    subset = dataset.subset(5)
    assert len(subset) == 5 and subset.windows[0] == dataset.windows[0] and subset.windows[-1] == dataset.windows[-1]
    assert dataset.subset(1000) is dataset
    assert len(set(subset.windows)) == 5


def test_windows_read_a_memory_map_without_keeping_it_resident(tmp_path) -> None:
    walk = random_walk(40, 5)
    stored = np.memmap(tmp_path / "pos.f64", dtype="<f8", mode="w+", shape=walk.positions.shape)
    stored[:] = walk.positions
    stored.flush()
    mapped = walk.replace(positions=np.memmap(tmp_path / "pos.f64", dtype="<f8", mode="r", shape=walk.positions.shape))
    assert isinstance(mapped.positions, np.memmap)
    in_memory, lazy = WindowDataset(walk, history=2), WindowDataset(mapped, history=2)
    for a, b in zip(make_loader(in_memory, 7), make_loader(lazy, 7)):
        assert torch.equal(a.history, b.history) and torch.equal(a.y, b.y)
