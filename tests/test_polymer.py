"""The bead-spring polymer simulator and the bundled trajectory it generated."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mdnext.polymer import (
    BOLTZMANN,
    KJ_PER_MOL,
    ForceField,
    baoab,
    energy_and_forces,
    main,
    simulate_polymer,
    zigzag,
)

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "paths.npz"


def spiral(n_beads: int, per_turn: int, seed: int = 0) -> np.ndarray:
    """A tight, slightly noisy spiral: bonds and angles off rest, pairs inside the WCA cutoff."""
    turn = np.arange(n_beads) * 2.0 * math.pi / per_turn
    radius = 0.5 + 0.025 * np.arange(n_beads)
    x = np.stack([radius * np.cos(turn), radius * np.sin(turn)], axis=1)
    return x + np.random.default_rng(seed).normal(0.0, 0.02, x.shape)


def kinetic_energy(v: np.ndarray, mass: float) -> float:
    """Kinetic energy in kJ/mol of velocities (N, 2) Å/ps."""
    return 0.5 * mass * float(np.sum(v * v)) / KJ_PER_MOL


@pytest.mark.parametrize(("n_beads", "per_turn"), [(5, 4), (12, 9)])
def test_forces_are_minus_the_gradient_of_the_energy(n_beads: int, per_turn: int) -> None:
    ff = ForceField()
    x = spiral(n_beads, per_turn)
    energy, forces = energy_and_forces(x, ff)
    no_wca = energy_and_forces(x, ForceField(wca_epsilon=0.0))[0]
    assert energy - no_wca > 1.0  # the repulsion is part of what is checked
    step = 1e-6
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += step
        minus[index] -= step
        gradient[index] = (energy_and_forces(plus, ff)[0] - energy_and_forces(minus, ff)[0]) / (2 * step)
    np.testing.assert_allclose(forces, -gradient, rtol=1e-6, atol=1e-5 * np.abs(forces).max())


@pytest.mark.parametrize("ratio", [0.9, 1.0, 1.1, 2 ** (1 / 6) * (1 - 1e-9), 2 ** (1 / 6) * (1 + 1e-9), 1.15, 1.5])
def test_wca_is_lennard_jones_cut_and_shifted_at_its_minimum(ratio: float) -> None:
    ff = ForceField()
    r = ratio * ff.wca_sigma
    x = np.array([[0.0, 0.0], [0.1, 0.3], [r - 0.1, 0.3], [r, 0.0]])  # only beads 0 and 3 interact
    wca = energy_and_forces(x, ff)[0] - energy_and_forces(x, ForceField(wca_epsilon=0.0))[0]
    s6 = (ff.wca_sigma / r) ** 6
    expected = 4 * ff.wca_epsilon * (s6 * s6 - s6) + ff.wca_epsilon if ratio < 2 ** (1 / 6) else 0.0
    assert wca == pytest.approx(expected, abs=1e-9)


def test_zigzag_is_at_the_energy_minimum_of_bonds_and_angles() -> None:
    x = zigzag(12)
    energy, forces = energy_and_forces(x)
    assert energy == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(forces, 0.0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(np.diff(x, axis=0), axis=1), ForceField().bond_length)


def test_without_friction_total_energy_is_conserved() -> None:
    mass, kt = 12.0, BOLTZMANN * 300.0
    rng = np.random.default_rng(1)
    x = zigzag(12)
    v = math.sqrt(kt * KJ_PER_MOL / mass) * rng.standard_normal(x.shape)
    totals, potentials = [], []
    for _ in range(40):  # 4000 steps of 0.25 fs
        potential = energy_and_forces(x)[0]
        potentials.append(potential)
        totals.append(potential + kinetic_energy(v, mass))
        x, v = baoab(x, v, 100, rng, temperature=300.0, mass=mass, friction=0.0, timestep=0.00025)
    assert np.ptp(potentials) > 1.0 * kt  # energy really flows between kinetic and potential
    assert np.abs(np.array(totals) - totals[0]).max() < 5e-3 * kt


def test_langevin_thermostat_reaches_the_target_temperature() -> None:
    mass, temperature = 12.0, 450.0
    rng = np.random.default_rng(0)
    x, v = baoab(zigzag(12), np.zeros((12, 2)), 1000, rng, temperature=temperature, mass=mass,
                 friction=50.0, timestep=0.001)  # from rest: heats up
    per_dof = []
    for _ in range(2000):
        x, v = baoab(x, v, 10, rng, temperature=temperature, mass=mass, friction=50.0, timestep=0.001)
        per_dof.append(kinetic_energy(v, mass) / v.size)
    assert np.mean(per_dof) / (0.5 * BOLTZMANN * temperature) == pytest.approx(1.0, abs=0.04)


def test_simulation_is_seeded_and_deterministic() -> None:
    kwargs = dict(n_beads=6, n_frames=20, equilibration_steps=200)
    first = simulate_polymer(seed=3, **kwargs)
    assert first.shape == (20, 6, 2) and first.dtype == np.float64
    np.testing.assert_array_equal(first, simulate_polymer(seed=3, **kwargs))
    assert not np.array_equal(first, simulate_polymer(seed=4, **kwargs))


def test_bundled_file_has_the_tutorial_format_and_learnable_statistics() -> None:
    with np.load(BUNDLED, allow_pickle=False) as data:
        assert data.files == ["arr"]
        arr = data["arr"]
    assert arr.shape == (2048, 12, 2) and arr.dtype == np.float64 and np.isfinite(arr).all()
    bonds = np.linalg.norm(np.diff(arr, axis=1), axis=-1)
    assert 0.33 < bonds.mean() < 0.40 and bonds.max() < 0.8  # near the tutorial's 0.363, not torn
    step = np.diff(arr, axis=0)
    zero = np.sqrt(np.mean(step**2))
    velocity = np.sqrt(np.mean(np.diff(step, axis=0) ** 2))
    acceleration = np.sqrt(np.mean(np.diff(step, n=2, axis=0) ** 2))
    assert 0.003 < zero < 0.012  # moving (tutorial: 0.0060 Å per frame), not exploding
    assert velocity < 0.2 * zero and acceleration < 0.6 * velocity  # smooth on the saved step


def test_documented_command_reproduces_the_bundled_file_bit_for_bit(tmp_path: Path) -> None:
    out = tmp_path / "paths.npz"
    assert main([str(out)]) == 0
    assert out.read_bytes() == BUNDLED.read_bytes()


def test_main_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "paths.npz"
    out.write_bytes(b"keep")
    assert main([str(out)]) == 2
    err = capsys.readouterr().err
    assert "file exists" in err and str(out) in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"keep"
