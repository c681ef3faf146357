"""Learned dynamics in ASE: train on a Lennard-Jones argon trajectory and continue it.

The script simulates 32 argon atoms at liquid density in a periodic box with ASE's
Lennard-Jones calculator (melted and equilibrated at 100 K with Langevin dynamics, then NVE
velocity Verlet with 10 fs steps, a frame every 100 fs), loads the list of ``Atoms`` with
``mdnext.load`` (dt comes from ``atoms.info["time"]``), and trains mdnext's e3nn model on it:
at 100 fs the motion is already hard for the physical baselines, and the model's one-step
error is a few percent of the best one's. It then continues the trajectory with
:class:`LearnedDynamics`, an ASE integrator whose step is the model's predicted displacement,
with an ``ase.io.Trajectory`` attached and ASE's MD log, and checks that the frames equal those
of ``mdnext.extrapolate`` for the same model and seed frames.

The log's temperature comes from finite-difference velocities (displacement / 100 fs), so it
is compared with the reference trajectory's temperature measured the same way. A learned
model conserves no energy: over the 10 ps of the default run the learned liquid heats up.

Run::

    python examples/ase_lj.py                 # 10 epochs: 30 s in all
    python examples/ase_lj.py --out results/  # keep learned.traj and learned.log there
    python examples/ase_lj.py --quick         # smoke test: 100 frames, 1 epoch, 20 steps: ~10 s

Times measured on 2 idle CPU cores (on a busy machine, set ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.io.trajectory import Trajectory
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

import mdnext
from mdnext.evaluation import format_table
from mdnext.plugins.ase_dynamics import LearnedDynamics
from mdnext.trainer import TrainConfig

MD_STEP_FS = 10.0
SAVE_EVERY = 10  # MD steps between saved frames: dt = 100 fs = 0.1 ps
#: Rollout steps over which LearnedDynamics is compared with mdnext.extrapolate (see below).
COMPARED_STEPS = 20


def simulate_argon(n_frames: int, seed: int = 0) -> list[Atoms]:
    """``n_frames`` frames of 32 liquid argon atoms (1.4 g/cm³, 11.5 Å periodic box) near 100 K.

    Each frame is a copy of the atoms with its time in ``info["time"]`` (ASE time units),
    which is where ``mdnext.load`` finds dt. Positions are unwrapped, as ASE integrates them.
    """
    atoms = bulk("Ar", "fcc", a=5.744, cubic=True) * (2, 2, 2)
    atoms.calc = LennardJones(sigma=3.405, epsilon=0.0103, rc=8.5, smooth=True)  # Å, eV
    rng = np.random.default_rng(seed)
    for temperature_k, steps in ((300, 200), (100, 300)):  # melt for 2 ps, equilibrate for 3 ps
        Langevin(atoms, MD_STEP_FS * units.fs, temperature_K=temperature_k, friction=0.01,
                 fixcm=False, rng=rng).run(steps)
    Stationary(atoms)  # no centre-of-mass drift
    dyn = VelocityVerlet(atoms, timestep=MD_STEP_FS * units.fs)
    images: list[Atoms] = []

    def save_frame() -> None:
        image = atoms.copy()  # positions, momenta, cell, pbc; not the calculator
        image.info["time"] = dyn.get_time()
        images.append(image)

    dyn.attach(save_frame, interval=SAVE_EVERY)
    dyn.run(SAVE_EVERY * (n_frames - 1))
    return images


def finite_difference_temperature(positions: np.ndarray, masses: np.ndarray, dt_ps: float) -> float:
    """Mean temperature in K from velocities (x[t+1] - x[t]) / dt; positions (T, N, 3) Å, masses amu."""
    velocities = np.diff(positions, axis=0) / (dt_ps * 1000.0 * units.fs)  # Å per ASE time unit
    kinetic = 0.5 * (masses[:, None] * velocities**2).sum(axis=(1, 2))  # eV per frame
    return float(np.mean(2.0 * kinetic / (3 * len(masses) * units.kB)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory, where learned.traj and learned.log are replaced "
                             "(default: a new temporary one)")
    parser.add_argument("--frames", type=int, default=300, help="frames of reference MD (default 300)")
    parser.add_argument("--steps", type=int, default=100, help="LearnedDynamics steps (default 100)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 100 frames, 1 epoch, 20 steps")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.epochs, args.steps = 100, 1, 20
    return args


def main() -> None:
    args = parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mdnext_ase_"))
    out.mkdir(parents=True, exist_ok=True)

    images = simulate_argon(args.frames)
    frames = mdnext.load(images)
    expected_dt = SAVE_EVERY * MD_STEP_FS / 1000.0  # ps
    if frames.dt is None:  # e.g. images without info["time"]: say it explicitly
        frames = mdnext.load(images, dt=expected_dt)
    temperature = np.mean([image.get_temperature() for image in images])
    fd_temperature = finite_difference_temperature(frames.positions, frames.masses, frames.dt)
    print(f"reference MD: {frames}")
    print(f"dt read from the ASE images: {frames.dt:.6g} ps (expected {expected_dt:g} ps)")
    print(f"mean T {temperature:.0f} K; from finite differences over {frames.dt:g} ps: {fd_temperature:.0f} K")

    # 8 past displacements, a 6.5 Å neighbour graph; a fixed number of epochs, so the same model every run
    config = TrainConfig(epochs=args.epochs, batch_size=8, lr=1e-2, quiet=True)
    trained = mdnext.train(frames, history=8, model_options={"cutoff": 6.5}, config=config,
                           horizons=(1,) if args.quick else (1, 10))
    print(f"\ntrained {trained.metrics['epochs']} epochs in {trained.metrics['train_seconds']:.0f} s")
    print(format_table(trained.metrics, "e3nn (k=8)"))

    # LearnedDynamics: the current frame plus the k earlier ones, one data frame apart.
    atoms = images[-1].copy()
    seed = images[-(trained.history * trained.stride + 1):-1]
    traj_path, log_path = out / "learned.traj", out / "learned.log"
    with Trajectory(traj_path, "w") as traj:
        dyn = LearnedDynamics(atoms, trained, history=seed, trajectory=traj, logfile=str(log_path))
        dyn.run(args.steps)
        dyn.close()  # closes the log file

    learned = np.stack([image.positions for image in ase.io.read(traj_path, index=":")])
    future = mdnext.extrapolate(trained, frames, args.steps)
    # learned[0] is the starting frame. The two agree to rounding; a learned rollout that heats up
    # is chaotic, and after ~60 steps such differences (1e-14 Å) can grow to whole Å, so compare
    # the first COMPARED_STEPS steps.
    deviation = np.abs(learned[1:COMPARED_STEPS + 1] - future.positions[:COMPARED_STEPS]).max()
    print(f"\nLearnedDynamics: {len(learned) - 1} steps of {dyn.dt / units.fs:g} fs written to {traj_path}")
    learned_temperature = finite_difference_temperature(learned, frames.masses, frames.dt)
    print(f"mean T from finite differences: {learned_temperature:.0f} K (reference MD: {fd_temperature:.0f} K)")
    print(f"max deviation from mdnext.extrapolate over the first {min(COMPARED_STEPS, args.steps)} steps: "
          f"{deviation:.3g} Å")
    log = log_path.read_text().splitlines()  # a header, then one line per step
    every = max(args.steps // 10, 1)
    print(f"\nMD log ({log_path}), every {every} steps:")
    print("\n".join(log[:1] + log[1::every]))


if __name__ == "__main__":
    main()
