"""Radius graph (vesin) against a brute-force O(N²) reference with explicit periodic images."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mdnext.errors import InputError
from mdnext.neighbors import MAX_SPAN, PositionsOutOfRange, minimum_image, radius_graph

ORTHO = np.diag([6.0, 7.0, 8.0])
TRICLINIC = np.array([[6.0, 0.0, 0.0], [1.5, 6.5, 0.0], [-1.0, 2.0, 7.0]])


def brute_force(pos: np.ndarray, cell: np.ndarray, pbc, cutoff: float) -> list[tuple]:
    """All (i, j, vector) with 0 < |pos[j] - pos[i] + S @ cell| < cutoff, over enough images S."""
    reach = []
    for axis in range(3):
        if pbc[axis]:
            # Images up to the number of plane spacings the cutoff can span.
            normal = np.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3])
            spacing = abs(np.linalg.det(cell)) / np.linalg.norm(normal)
            extent = int(np.ceil(cutoff / spacing)) + 1
            reach.append(range(-extent, extent + 1))
        else:
            reach.append([0])
    pairs = []
    for shift in itertools.product(*reach):
        offset = np.array(shift, dtype=float) @ cell
        vec = pos[None, :, :] - pos[:, None, :] + offset
        dist = np.linalg.norm(vec, axis=-1)
        for i, j in zip(*np.nonzero((dist < cutoff) & (dist > 0))):
            pairs.append((int(i), int(j), vec[i, j]))
    return pairs


def as_keys(edges: list[tuple]) -> list[tuple]:
    return sorted((i, j, *np.round(v, 8)) for i, j, v in edges)


def graph_keys(pos, cell, pbc, cutoff, batch=None) -> list[tuple]:
    edge_index, edge_vec = radius_graph(
        torch.as_tensor(pos),
        cutoff,
        batch,
        torch.as_tensor(cell).reshape(-1, 3, 3),
        torch.as_tensor(pbc).reshape(-1, 3),
    )
    assert edge_index.dtype == torch.long and edge_vec.dtype == torch.float64
    return as_keys(list(zip(edge_index[0].tolist(), edge_index[1].tolist(), edge_vec.numpy())))


def random_positions(cell: np.ndarray, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 3)) @ cell


@pytest.mark.parametrize("cell", [ORTHO, TRICLINIC], ids=["orthorhombic", "triclinic"])
@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False), (False, True, False)])
@pytest.mark.parametrize("cutoff", [2.5, 4.0, 9.0])
def test_matches_brute_force(cell, pbc, cutoff):
    pos = random_positions(cell, 14, seed=1)
    expected = as_keys(brute_force(pos, cell, pbc, cutoff))
    assert len(expected) > 0
    assert graph_keys(pos, cell, pbc, cutoff) == expected


def test_cutoff_longer_than_box_counts_every_image():
    cell = np.diag([3.0, 3.5, 4.0])
    pos = random_positions(cell, 5, seed=2)
    cutoff = 7.0  # twice the box: each pair appears through many images, and each atom meets itself
    expected = brute_force(pos, cell, (True, True, True), cutoff)
    got = graph_keys(pos, cell, (True, True, True), cutoff)
    assert len(got) == len(expected) > 5 * 4 * 8
    assert got == as_keys(expected)
    assert any(i == j for i, j, *_ in got)


def test_single_atom_meets_its_own_images():
    cell = np.diag([3.0, 3.0, 10.0])
    keys = graph_keys(np.array([[1.0, 2.0, 3.0]]), cell, (True, True, False), 3.5)
    assert sorted(tuple(k[2:4]) for k in keys) == [(-3.0, 0.0), (0.0, -3.0), (0.0, 3.0), (3.0, 0.0)]
    assert keys == as_keys(brute_force(np.array([[1.0, 2.0, 3.0]]), cell, (True, True, False), 3.5))


def test_non_periodic_and_zero_cell():
    pos = np.random.default_rng(3).uniform(0, 8, (20, 3))
    expected = as_keys(brute_force(pos, np.zeros((3, 3)), (False,) * 3, 3.0))
    assert graph_keys(pos, np.zeros((3, 3)), (False,) * 3, 3.0) == expected
    # A cell given for a non-periodic structure changes nothing.
    assert graph_keys(pos, TRICLINIC, (False,) * 3, 3.0) == expected


def test_unwrapped_positions_give_the_same_vectors():
    pos = random_positions(TRICLINIC, 12, seed=4)
    far = pos + np.array([3, -7, 11]) @ TRICLINIC
    # Move a few atoms by different lattice translations, as in an unwrapped trajectory.
    far[::3] += np.array([-40, 25, 3]) @ TRICLINIC
    assert graph_keys(far, TRICLINIC, (True,) * 3, 4.0) == graph_keys(pos, TRICLINIC, (True,) * 3, 4.0)


def test_slab_with_zero_vertical_vector():
    cell = np.array([[6.0, 0.0, 0.0], [1.0, 6.0, 0.0], [0.0, 0.0, 0.0]])
    pos = random_positions(np.array([[6.0, 0, 0], [1.0, 6.0, 0], [0, 0, 9.0]]), 12, seed=5)
    # The reference needs an invertible cell for its image range; c is never used as a shift.
    reference_cell = cell + np.array([[0.0, 0, 0], [0, 0, 0], [0, 0, 1.0]])
    expected = as_keys(brute_force(pos, reference_cell, (True, True, False), 4.0))
    assert graph_keys(pos, cell, (True, True, False), 4.0) == expected


def test_batch_of_two_structures_with_different_sizes():
    pos_a = random_positions(ORTHO, 9, seed=6)
    pos_b = random_positions(TRICLINIC, 13, seed=7)
    pos = np.concatenate([pos_a, pos_b])
    batch = torch.tensor([0] * 9 + [1] * 13)
    cells = np.stack([ORTHO, TRICLINIC])
    pbc = np.array([[True, True, True], [False, False, False]])
    got = graph_keys(pos, cells, pbc, 4.0, batch)
    expected = brute_force(pos_a, ORTHO, pbc[0], 4.0) + [
        (i + 9, j + 9, v) for i, j, v in brute_force(pos_b, TRICLINIC, pbc[1], 4.0)
    ]
    assert got == as_keys(expected)


def test_interleaved_batch_vector():
    """Atoms of two structures need not be contiguous in the batch."""
    pos_a = random_positions(ORTHO, 6, seed=8)
    pos_b = random_positions(ORTHO, 7, seed=9)
    order = np.random.default_rng(0).permutation(13)
    pos = np.concatenate([pos_a, pos_b])[order]
    batch = torch.tensor(([0] * 6 + [1] * 7))[order]
    cells = np.stack([ORTHO, ORTHO])
    pbc = np.ones((2, 3), dtype=bool)
    got = graph_keys(pos, cells, pbc, 3.5, batch)
    back = {old: new for new, old in enumerate(order)}
    expected = [(back[i], back[j], v) for i, j, v in brute_force(pos_a, ORTHO, pbc[0], 3.5)]
    expected += [(back[i + 6], back[j + 6], v) for i, j, v in brute_force(pos_b, ORTHO, pbc[1], 3.5)]
    assert got == as_keys(expected)


def test_many_open_structures_far_apart_in_one_call():
    """Non-periodic structures share one vesin call; structures scattered over kilometres of
    space, interleaved atoms and an empty structure still give each structure's own edges."""
    rng = np.random.default_rng(3)
    sizes = [20] * 5 + [0] + [1] + [20] * 57  # an empty and a one-atom structure among 64
    parts = [rng.uniform(0, 8, (n, 3)) + rng.uniform(-3000, 3000, 3) for n in sizes]
    pos = np.concatenate(parts)
    batch = torch.cat([torch.full((n,), b) for b, n in enumerate(sizes)])
    order = rng.permutation(len(pos))
    cells, pbc = np.zeros((64, 3, 3)), np.zeros((64, 3), dtype=bool)
    got = graph_keys(pos[order], cells, pbc, 5.0, batch[order])
    back = {old: new for new, old in enumerate(order)}
    expected, offset = [], 0
    for part in parts:
        expected += [(back[i + offset], back[j + offset], v) for i, j, v in brute_force(part, ORTHO, (False,) * 3, 5.0)]
        offset += len(part)
    assert got == as_keys(expected)


def test_permuting_atoms_permutes_the_graph():
    pos = random_positions(TRICLINIC, 15, seed=10)
    perm = np.random.default_rng(1).permutation(15)
    got = graph_keys(pos[perm], TRICLINIC, (True,) * 3, 4.0)
    # Atom p of the permuted system is atom perm[p] of the original one.
    original = graph_keys(pos, TRICLINIC, (True,) * 3, 4.0)
    inverse = np.argsort(perm)
    assert got == sorted((int(inverse[i]), int(inverse[j]), *v) for i, j, *v in original)


def test_no_zero_length_edges_and_empty_cases():
    pos = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
    keys = graph_keys(pos, np.zeros((3, 3)), (False,) * 3, 1.5)
    assert [(i, j) for i, j, *_ in keys] == [(0, 2), (1, 2), (2, 0), (2, 1)]
    # A lone atom, and atoms too far apart, give no edges.
    edge_index, edge_vec = radius_graph(
        torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [9.0, 9.0, 9.0]], dtype=torch.float64),
        2.0,
        torch.tensor([0, 0, 1]),
        torch.zeros(2, 3, 3, dtype=torch.float64),
        torch.zeros(2, 3, dtype=torch.bool),
    )
    assert edge_index.shape == (2, 0) and edge_vec.shape == (0, 3)


def test_singular_periodic_cell_is_an_input_error():
    pos = torch.zeros(3, 3, dtype=torch.float64)
    pos[:, 0] = torch.arange(3.0)
    with pytest.raises(InputError, match="structure 0: periodic along xyz"):
        radius_graph(pos, 2.0, None, torch.zeros(1, 3, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.bool))
    flat = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    with pytest.raises(InputError, match="periodic along xz"):
        radius_graph(pos, 2.0, None, flat, torch.tensor([[True, False, True]]))


def test_minimum_image_orthorhombic_and_triclinic():
    rng = np.random.default_rng(11)
    for cell in (ORTHO, TRICLINIC):
        short = torch.tensor(rng.uniform(-1.0, 1.0, (50, 3)))
        shifts = torch.tensor(rng.integers(-5, 6, (50, 3)), dtype=torch.float64)
        cell_t = torch.tensor(cell)
        wrapped = minimum_image(short + shifts @ cell_t, cell_t, torch.tensor([True, True, True]))
        assert wrapped.dtype == torch.float64
        assert torch.allclose(wrapped, short, atol=1e-10)


def test_minimum_image_orthorhombic_is_nearest_image():
    cell = torch.tensor(ORTHO)
    vec = torch.tensor(np.random.default_rng(12).uniform(-30, 30, (200, 3)))
    wrapped = minimum_image(vec, cell, torch.tensor([True, True, True]))
    half = torch.diagonal(cell) / 2
    assert bool((wrapped.abs() <= half + 1e-12).all())
    frac = (vec - wrapped) @ torch.linalg.inv(cell)
    assert torch.allclose(frac, frac.round(), atol=1e-10)


def test_minimum_image_mixed_and_non_periodic():
    cell = torch.tensor([[6.0, 0.0, 0.0], [2.0, 6.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    vec = torch.tensor([[13.0, 0.5, 25.0], [-1.0 + 2.0, 6.0 + 0.2, -30.0]], dtype=torch.float64)
    out = minimum_image(vec, cell, torch.tensor([True, True, False]))
    assert torch.allclose(out, torch.tensor([[1.0, 0.5, 25.0], [-1.0, 0.2, -30.0]], dtype=torch.float64))
    # Periodic along one skewed vector only: shift by whole multiples of it, nothing else.
    cell = torch.tensor([[4.0, 3.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    out = minimum_image(torch.tensor([[8.5, 6.0, 1.0]], dtype=torch.float64), cell, torch.tensor([True, False, False]))
    assert torch.allclose(out, torch.tensor([[0.5, 0.0, 1.0]], dtype=torch.float64))
    vec = torch.tensor([[100.0, -50.0, 3.0]], dtype=torch.float64)
    assert torch.equal(minimum_image(vec, torch.zeros(3, 3), torch.zeros(3, dtype=torch.bool)), vec)


def test_minimum_image_per_frame_cells():
    cells = torch.stack([torch.tensor(ORTHO), 1.1 * torch.tensor(ORTHO)])  # (T=2, 3, 3)
    vec = torch.tensor([[[6.5, 0.0, 0.0]], [[6.5, 0.0, 0.0]]], dtype=torch.float64)  # (T, N=1, 3)
    out = minimum_image(vec, cells.unsqueeze(1), torch.tensor([True, True, True]))
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.5, 6.5 - 6.6], dtype=torch.float64))


@pytest.mark.parametrize("far", [2 * MAX_SPAN, 1e30, float("inf"), float("nan")])
def test_positions_out_of_range_are_refused_not_crashed(far: float) -> None:
    """vesin's cell list kills the process (SIGFPE) on coordinates ~1e6 Å apart: refuse them first."""
    pos = torch.rand(24, 3, dtype=torch.float64)
    pos[3, 0] = far
    batch = torch.repeat_interleave(torch.arange(2), 12)
    for b, n in ((batch, 2), (None, 1)):
        with pytest.raises(PositionsOutOfRange, match="non-finite positions|positions span"):
            radius_graph(pos, 5.0, b, torch.zeros(n, 3, 3), torch.zeros(n, 3, dtype=torch.bool))
    # along a periodic direction the coordinates are wrapped first, so a far (finite) atom is fine
    if far < float("inf"):
        pos[3, 0] = 1e7 + 0.25
        cell = 20.0 * torch.eye(3, dtype=torch.float64).unsqueeze(0)
        edges, _ = radius_graph(pos[:12], 5.0, None, cell, torch.tensor([[True, False, False]]))
        assert edges.shape[1] > 0
