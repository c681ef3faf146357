"""The ASE calculator and learned-dynamics driver: equality with extrapolate, ASE machinery, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.lj import LennardJones
from ase.geometry import find_mic
from ase.io.trajectory import Trajectory
from ase.md.verlet import VelocityVerlet
from torch_geometric.data import Batch, Data

import mdnext
from mdnext.checkpoint import TrainedModel, build_model
from mdnext.data import WindowDataset, make_loader
from mdnext.errors import InputError, MDNextError
from mdnext.frames import Frames
from mdnext.plugins.ase_dynamics import DISPLACEMENT_KEY, LearnedDynamics, MDNextCalculator
from mdnext.topology import chain_bonds

MD_STEP = 5 * units.fs
SAVE_EVERY = 4  # frames are 20 fs = 0.02 ps apart
SEED = 40  # frames given as the seed (the last is the current frame)
TOLERANCE = 1e-6  # Å


def argon_images(n_frames: int, temperature_k: float = 60.0) -> list[Atoms]:
    """``n_frames`` frames of a rattled 32-atom Lennard-Jones argon box, every 4 × 5 fs velocity-Verlet steps."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True) * (2, 2, 2)
    atoms.rattle(stdev=0.05, seed=1)
    atoms.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, smooth=True)  # Å, eV
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(size=(32, 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB * temperature_k))
    dyn = VelocityVerlet(atoms, timestep=MD_STEP)
    images: list[Atoms] = []

    def grab() -> None:
        image = atoms.copy()
        image.info["time"] = dyn.get_time()  # ASE time units; the reader turns it into ps
        images.append(image)

    dyn.attach(grab, interval=SAVE_EVERY)
    dyn.run(SAVE_EVERY * (n_frames - 1))
    return images


def fitted_autoregressive(frames: Frames, history: int = 2, stride: int = 1) -> TrainedModel:
    """The least-squares autoregressive model fitted on all windows of ``frames``."""
    model = build_model("autoregressive", {"history": history, "species": ["Ar"]})
    model.fit_closed_form(make_loader(WindowDataset(frames, history, stride), batch_size=64))
    return TrainedModel(model.eval(), stride=stride, dt=frames.dt)


def run_dynamics(images: list[Atoms], trained: TrainedModel, n_steps: int, path: Path, **kwargs) -> np.ndarray:
    """Positions of the frames an attached Trajectory records over ``run(n_steps)``: (n_steps + 1, N, 3)."""
    atoms = images[-1].copy()
    with Trajectory(path, "w") as traj:
        dyn = LearnedDynamics(atoms, trained, history=images[:-1], trajectory=traj, **kwargs)
        dyn.run(n_steps)
    with Trajectory(path) as traj:
        return np.stack([image.positions for image in traj])


@pytest.fixture(scope="module")
def images() -> list[Atoms]:
    return argon_images(120)


@pytest.fixture(scope="module")
def frames(images: list[Atoms]) -> Frames:
    return mdnext.load(images)


@pytest.fixture(scope="module")
def autoregressive(frames: Frames) -> TrainedModel:
    return fitted_autoregressive(frames)


def test_frames_read_with_dt(frames: Frames) -> None:
    assert frames.n_frames == 120 and frames.is_periodic
    assert frames.dt == pytest.approx(SAVE_EVERY * 5e-3)


def test_dynamics_equals_extrapolate_autoregressive(images, frames, autoregressive, tmp_path) -> None:
    reference = mdnext.extrapolate(autoregressive, frames[:SEED], 100).positions
    recorded = run_dynamics(images[:SEED], autoregressive, 100, tmp_path / "ar.traj")
    assert recorded.shape == (101, 32, 3)
    np.testing.assert_array_equal(recorded[0], frames.positions[SEED - 1])  # ASE records step 0 first
    deviation = np.abs(recorded[1:] - reference).max()
    print(f"autoregressive: max |LearnedDynamics - extrapolate| over 100 steps = {deviation:.3g} Å")
    assert deviation < TOLERANCE
    assert np.abs(reference[-1] - frames.positions[SEED - 1]).max() > 0.05  # the atoms did move


def test_dynamics_equals_extrapolate_with_stride(images, frames, tmp_path) -> None:
    trained = fitted_autoregressive(frames, history=2, stride=3)
    reference = mdnext.extrapolate(trained, frames[:SEED], 30).positions
    recorded = run_dynamics(images[:SEED], trained, 30, tmp_path / "stride.traj")
    assert np.abs(recorded[1:] - reference).max() < TOLERANCE


def test_dynamics_equals_extrapolate_equivariant(images, frames, tmp_path) -> None:
    """A small e3nn model with a random (non-zero) head, so the residual network takes part."""
    torch.manual_seed(0)
    net = build_model("equivariant", {"history": 2, "species": ["Ar"], "cutoff": 4.0,
                                      "hidden_irreps": "8x0e + 4x1o", "num_layers": 1, "radial_hidden": 8})
    torch.nn.init.normal_(net.head.weight, std=1e-3)
    trained = TrainedModel(net.eval(), stride=1, dt=frames.dt)
    reference = mdnext.extrapolate(trained, frames[:SEED], 15).positions
    prior = mdnext.extrapolate(TrainedModel(net.prior_model, 1, frames.dt), frames[:SEED], 15).positions
    assert np.abs(reference - prior).max() > 1e-4  # the residual is not zero
    recorded = run_dynamics(images[:SEED], trained, 15, tmp_path / "eq.traj")
    deviation = np.abs(recorded[1:] - reference).max()
    print(f"random-head equivariant: max |LearnedDynamics - extrapolate| over 15 steps = {deviation:.3g} Å")
    assert deviation < TOLERANCE


def test_no_wrap_unless_asked(images, frames, autoregressive, tmp_path) -> None:
    cell = frames.cell[0]
    unwrapped = run_dynamics(images[:SEED], autoregressive, 20, tmp_path / "raw.traj")
    fractional = unwrapped @ np.linalg.inv(cell)
    assert ((fractional < 0) | (fractional >= 1)).any()  # some atoms sit outside the box: not wrapped
    wrapped = run_dynamics(images[:SEED], autoregressive, 20, tmp_path / "wrap.traj", wrap=True)
    reference = mdnext.extrapolate(autoregressive, frames[:SEED], 20, wrap=True).positions
    assert np.abs(wrapped[1:] - reference).max() < TOLERANCE
    inside = wrapped[1:] @ np.linalg.inv(cell)
    assert ((inside >= 0) & (inside < 1)).all()
    np.testing.assert_allclose(wrapped[1:], unwrapped[1:] - np.floor(fractional[1:]) @ cell, atol=1e-9)


def test_observers_runs_and_trajectory_path(images, frames, autoregressive, tmp_path) -> None:
    atoms = images[SEED - 1].copy()
    path = tmp_path / "path.traj"
    dyn = LearnedDynamics(atoms, autoregressive, history=images[: SEED - 1], trajectory=str(path))
    calls: list[int] = []
    every_five: list[int] = []
    dyn.attach(lambda: calls.append(dyn.nsteps))
    dyn.attach(lambda: every_five.append(dyn.nsteps), interval=5)
    dyn.run(10)
    dyn.run(5)  # continues with the same history buffer
    assert calls == list(range(16)) and every_five == [0, 5, 10, 15]
    assert dyn.get_time() == pytest.approx(15 * SAVE_EVERY * MD_STEP)
    reference = mdnext.extrapolate(autoregressive, frames[:SEED], 15).positions
    with Trajectory(path) as traj:
        recorded = np.stack([image.positions for image in traj])
    assert len(recorded) == 16  # ASE writes step 0 once, on the first run only
    assert np.abs(recorded[1:] - reference).max() < TOLERANCE
    np.testing.assert_allclose(atoms.positions, reference[-1], atol=TOLERANCE)
    np.testing.assert_array_equal(atoms.cell.array, frames.cell[SEED - 1])


def test_velocities_and_logfile(images, autoregressive, tmp_path) -> None:
    atoms = images[SEED - 1].copy()
    log = tmp_path / "md.log"
    dyn = LearnedDynamics(atoms, autoregressive, history=images[: SEED - 1], logfile=str(log))
    assert dyn.dt == pytest.approx(SAVE_EVERY * MD_STEP)
    np.testing.assert_allclose(atoms.get_velocities() * dyn.dt, atoms.positions - images[SEED - 2].positions,
                               atol=1e-12)  # finite difference of the seed
    dyn.run(3)
    lines = log.read_text().splitlines()
    assert len(lines) == 1 + 4 and "T[K]" in lines[0]
    temperatures = [float(line.split()[-1]) for line in lines[1:]]
    assert all(0 < t < 1000 for t in temperatures)
    assert all(line.split()[2] == "nan" for line in lines[1:])  # no potential energy: not faked
    before = atoms.get_positions()
    predicted = atoms.arrays[DISPLACEMENT_KEY].copy()  # predicted after the last step, used by the next
    dyn.run(1)
    np.testing.assert_allclose(atoms.positions - before, predicted, atol=1e-12)
    np.testing.assert_allclose(atoms.get_velocities() * dyn.dt, predicted, atol=1e-12)


def test_calculator_on_hand_built_window(images, autoregressive) -> None:
    x = [image.positions for image in images[10:13]]
    cell, pbc = images[12].cell, images[12].pbc
    d0 = find_mic(x[2] - x[1], cell, pbc)[0]
    d1 = find_mic(x[1] - x[0], cell, pbc)[0]
    c0, c1 = autoregressive.model.coefficients.tolist()
    expected = c0 * d0 + c1 * d1
    data = Data(pos=torch.from_numpy(x[2]), history=torch.from_numpy(np.stack([d0, d1], axis=1)),
                species=torch.zeros(32, dtype=torch.long), cell=torch.from_numpy(cell.array).unsqueeze(0),
                pbc=torch.from_numpy(pbc).reshape(1, 3))
    np.testing.assert_allclose(autoregressive.model(Batch.from_data_list([data])).numpy(), expected, atol=1e-12)

    atoms = images[12].copy()
    calc = MDNextCalculator(autoregressive, history=images[10:12])  # earlier frames; atoms are the next one
    atoms.calc = calc
    displacement = atoms.calc.get_property("displacement", atoms)
    np.testing.assert_allclose(displacement, expected, atol=1e-12)
    np.testing.assert_allclose(calc.results["displacement"], expected, atol=1e-12)
    np.testing.assert_array_equal(atoms.arrays[DISPLACEMENT_KEY], displacement)
    # A history ending with the current frame gives the same window.
    same = MDNextCalculator(autoregressive, history=np.stack(x))
    np.testing.assert_allclose(same.get_property("displacement", images[12].copy()), expected, atol=1e-12)
    # Current positions wrapped into the box: same minimum-image window, same prediction.
    wrapped = images[12].copy()
    wrapped.wrap()
    assert not np.allclose(wrapped.positions, x[2])
    np.testing.assert_allclose(MDNextCalculator(autoregressive, history=images[10:12]).get_property(
        "displacement", wrapped), expected, atol=1e-9)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_forces()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_potential_energy()


def test_push_invalidates_and_clear_history(images, autoregressive) -> None:
    calc = MDNextCalculator(autoregressive, history=images[10:12])
    atoms = images[12].copy()
    first = calc.get_property("displacement", atoms)
    calc.push(images[11], steps=0)  # replacing the newest frame by itself: same window
    np.testing.assert_allclose(calc.get_property("displacement", atoms), first, atol=1e-12)
    calc.push(images[12])
    calc.push(images[13])  # now the atoms (frame 12) are no longer the newest: taken as frame 14
    assert not np.allclose(calc.get_property("displacement", atoms), first)
    calc.clear_history()
    with pytest.raises(InputError, match="needs the 2 data frames before the current one"):
        calc.get_property("displacement", atoms)


def test_checkpoint_path(images, autoregressive, tmp_path) -> None:
    path = autoregressive.save(tmp_path / "model.pt")
    from_path = MDNextCalculator(path, history=images[10:12])
    from_model = MDNextCalculator(autoregressive, history=images[10:12])
    np.testing.assert_array_equal(from_path.get_property("displacement", images[12].copy()),
                                  from_model.get_property("displacement", images[12].copy()))


def test_species_not_known(images, autoregressive) -> None:
    atoms = images[SEED - 1].copy()
    atoms.set_chemical_symbols(["Ne"] * len(atoms))
    with pytest.raises(InputError, match="species Ne unknown to model 'autoregressive'") as info:
        LearnedDynamics(atoms, autoregressive, history=images[: SEED - 1])
    assert "\n" not in str(info.value)
    calc = MDNextCalculator(autoregressive, history=images[: SEED - 1])
    with pytest.raises(InputError, match="species Ne"):
        calc.get_property("displacement", atoms)


def test_too_little_history(images, frames, autoregressive) -> None:
    with pytest.raises(InputError, match="needs the 2 data frames before the current one .* got 1") as info:
        LearnedDynamics(images[5].copy(), autoregressive, history=images[4:5])
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="the atoms have 31 atoms, the history frames 32"):
        MDNextCalculator(autoregressive, history=images[:4]).get_property("displacement", images[5][:31])
    strided = fitted_autoregressive(frames, history=2, stride=3)
    with pytest.raises(InputError, match="stride 3 needs the 6 data frames"):
        LearnedDynamics(images[5].copy(), strided, history=images[:5])
    LearnedDynamics(images[6].copy(), strided, history=images[:6])  # 6 earlier frames suffice


def test_timestep(images, autoregressive) -> None:
    seed = dict(history=images[: SEED - 1])
    assert LearnedDynamics(images[SEED - 1].copy(), autoregressive, timestep=20 * units.fs, **seed).dt == \
        pytest.approx(20 * units.fs)
    with pytest.raises(InputError, match="timestep 10 fs differs from the model's fixed step"):
        LearnedDynamics(images[SEED - 1].copy(), autoregressive, timestep=10 * units.fs, **seed)
    unknown = TrainedModel(autoregressive.model, stride=1, dt=None)
    with pytest.raises(InputError, match="dt is unknown"):
        LearnedDynamics(images[SEED - 1].copy(), unknown, **seed)
    assert LearnedDynamics(images[SEED - 1].copy(), unknown, timestep=7 * units.fs, **seed).dt == \
        pytest.approx(7 * units.fs)


@pytest.mark.slow
def test_trained_equivariant_dynamics_equals_extrapolate(tmp_path) -> None:
    """mdnext.train on 300 frames of LJ argon (2 epochs), then 100 learned-dynamics steps."""
    from mdnext.trainer import TrainConfig

    images = argon_images(300)
    frames = mdnext.load(images)
    trained = mdnext.train(frames, "equivariant", history=2, config=TrainConfig(epochs=2, quiet=True), horizons=(1,))
    reference = mdnext.extrapolate(trained, frames[:SEED], 100).positions
    recorded = run_dynamics(images[:SEED], trained, 100, tmp_path / "trained.traj")
    deviation = np.abs(recorded[1:] - reference).max()
    print(f"trained equivariant: max |LearnedDynamics - extrapolate| over 100 steps = {deviation:.3g} Å")
    assert deviation < TOLERANCE


def test_bond_aware_model_takes_its_bonds_from_the_calculator(images, frames, tmp_path) -> None:
    """A model trained with bonds (edge classes, force-matched prior, under PBC) runs in ASE when
    the calculator is given the bonds, and equals extrapolate; without them it refuses."""
    chained = frames.replace(bonds=chain_bonds(frames.n_atoms))  # an artificial chain through the box
    torch.manual_seed(0)
    net = build_model("equivariant", {"history": 2, "species": ["Ar"], "cutoff": 4.0, "bond_types": True,
                                      "hidden_irreps": "8x0e + 4x1o", "num_layers": 1, "radial_hidden": 8})
    net.fit_closed_form(make_loader(WindowDataset(chained, 2, 1), batch_size=64))
    torch.nn.init.normal_(net.head.weight, std=1e-3)
    trained = TrainedModel(net.eval(), stride=1, dt=frames.dt)
    reference = mdnext.extrapolate(trained, chained[:SEED], 10).positions
    recorded = run_dynamics(images[:SEED], MDNextCalculator(trained, bonds="chain"), 10, tmp_path / "bonded.traj")
    assert np.abs(recorded[1:] - reference).max() < TOLERANCE
    with pytest.raises(MDNextError, match="bond topology"):
        MDNextCalculator(trained, history=images[SEED - 3 : SEED - 1]).predict(images[SEED - 1].copy())
    with pytest.raises(InputError, match="bonds: bond atom indices"):
        MDNextCalculator(trained, history=images[SEED - 3 : SEED - 1], bonds=[[0, 99]]).predict(images[SEED - 1])
