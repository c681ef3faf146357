"""Learned dynamics in ASE: train on a Lennard-Jones argon trajectory and continue it.

The script runs a short velocity-Verlet simulation of 32 argon atoms in a periodic box with
ASE's Lennard-Jones calculator (5 fs steps, a frame every 20 fs), loads the list of ``Atoms``
with ``mdnext.load`` (dt comes from ``atoms.info["time"]``), and trains mdnext's e3nn
model on it. It then continues the trajectory with :class:`LearnedDynamics`, an ASE
integrator whose step is the model's predicted displacement, with an ``ase.io.Trajectory``
attached and ASE's MD log, and checks that the frames equal those of
``mdnext.extrapolate`` for the same model and seed frames. The log's temperature comes from
finite-difference velocities; the potential energy is unknown to a learned model (nan).

Run::

    python examples/ase_lj.py                 # 30 s of training: 40 s in all
    python examples/ase_lj.py --out results/  # keep learned.traj and learned.log there
    python examples/ase_lj.py --quick         # smoke test: 100 frames, 1 epoch, 20 steps: ~6 s

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
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

import mdnext
from mdnext.evaluation import format_table
from mdnext.plugins.ase_dynamics import LearnedDynamics
from mdnext.trainer import TrainConfig

MD_STEP_FS = 5.0
SAVE_EVERY = 4  # MD steps between saved frames: dt = 20 fs = 0.02 ps


def simulate_argon(n_frames: int, temperature_k: float = 60.0, seed: int = 0) -> list[Atoms]:
    """``n_frames`` frames of a 32-atom periodic fcc argon box at about ``temperature_k``.

    Each frame is a copy of the atoms with its time in ``info["time"]`` (ASE time units),
    which is where ``mdnext.load`` finds dt.
    """
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True) * (2, 2, 2)  # 10.52 Å cube, pbc
    atoms.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, smooth=True)  # Å, eV
    # Maxwell-Boltzmann momenta at twice the target (half the kinetic energy goes into the potential)
    sigma = np.sqrt(atoms.get_masses()[:, None] * units.kB * 2 * temperature_k)
    atoms.set_momenta(np.random.default_rng(seed).normal(size=(len(atoms), 3)) * sigma)
    Stationary(atoms)  # no centre-of-mass drift
    dyn = VelocityVerlet(atoms, timestep=MD_STEP_FS * units.fs)
    images: list[Atoms] = []

    def save_frame() -> None:
        image = atoms.copy()  # positions, cell, pbc; not the calculator
        image.info["time"] = dyn.get_time()
        images.append(image)

    dyn.attach(save_frame, interval=SAVE_EVERY)
    dyn.run(SAVE_EVERY * (n_frames - 1))
    return images


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory; learned.traj and learned.log there are replaced (default: a new temporary one)")
    parser.add_argument("--frames", type=int, default=300, help="frames of reference MD (default 300)")
    parser.add_argument("--steps", type=int, default=100, help="LearnedDynamics steps (default 100)")
    parser.add_argument("--epochs", type=int, default=200, help="at most this many epochs")
    parser.add_argument("--time-limit", type=float, default=30.0, help="training budget, s (default 30)")
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
    print(f"reference MD: {frames}, mean T {temperature:.0f} K")
    print(f"dt read from the ASE images: {frames.dt:.6g} ps (expected {expected_dt:g} ps)")

    config = TrainConfig(epochs=args.epochs, time_limit=args.time_limit, quiet=True)
    trained = mdnext.train(frames, history=4, config=config, horizons=(1,) if args.quick else (1, 10))
    print(f"\ntrained {trained.metrics['epochs']} epochs in {trained.metrics['train_seconds']:.0f} s")
    print(format_table(trained.metrics, "e3nn (k=4)"))

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
    deviation = np.abs(learned[1:] - future.positions).max()  # learned[0] is the starting frame
    print(f"\nLearnedDynamics: {len(learned) - 1} steps of {dyn.dt / units.fs:g} fs written to {traj_path}")
    print(f"max deviation from mdnext.extrapolate: {deviation:.3g} Å")
    log = log_path.read_text().splitlines()  # a header, then one line per step
    every = max(args.steps // 10, 1)
    print(f"\nMD log ({log_path}), every {every} steps:")
    print("\n".join(log[:1] + log[1::every]))


if __name__ == "__main__":
    main()
