"""Make a liquid-argon Lennard-Jones trajectory with ASE for the coarse-time-step benchmark.

Argon (σ = 3.405 Å, ε/k_B = 119.8 K) starts on an fcc lattice at liquid density
(1.4 g/cm³ by default), is melted and equilibrated with Langevin dynamics (discarded), then
run in NVE with ASE's velocity Verlet (10 fs steps); every ``interval``-th step is saved
(20 steps = 200 fs by default). Positions are kept unwrapped, as ASE integrates them.

Why 200 fs: at 100 K the displacements over successive 100 fs are still correlated (~0.76),
so constant velocity beats zero displacement (MSE ratio ~0.48); over 200 fs the correlation
is ~0.39 and constant velocity is ~1.2× worse than zero, which is what "coarse" means here.
10 fs is ~0.005 in LJ time units (σ√(m/ε) ≈ 2.15 ps), a standard step: the NVE energy stays
constant to ~0.01 meV/atom.

The forces come from :class:`LennardJonesVesin`, an ASE calculator with the same smooth
cutoff as ``ase.calculators.lj.LennardJones(smooth=True)`` (equal energies and forces) but a
vectorised vesin neighbour list: several times faster than ASE's loop over atoms (6.4 ms per
108-atom step), so the default trajectory (108 atoms, 2000 frames of 20 steps, 41,500 steps
with the discarded stages) takes ~45 s of CPU (65-95 s on a busy 2-core machine).

Usage::

    python benchmarks/make_lj.py -o benchmarks/data/lj_argon.extxyz
    python benchmarks/make_lj.py -o small.extxyz --cells 2 --frames 100 --cutoff 5.5   # 32 atoms
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_masses, atomic_numbers
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet
from vesin import NeighborList

import mdnext
from mdnext.errors import InputError
from mdnext.frames import Frames

#: Argon's Lennard-Jones length σ, Å.
ARGON_SIGMA = 3.405
#: Argon's Lennard-Jones well depth ε / k_B, K.
ARGON_EPSILON_K = 119.8
#: Grams per atomic mass unit.
GRAMS_PER_AMU = 1.66053906660e-24


class LennardJonesVesin(Calculator):
    """Lennard-Jones pair potential with a smooth cutoff, vectorised over vesin pairs.

    ``u(r) = 4ε[(σ/r)¹² − (σ/r)⁶] · S(r²)``, where the switch ``S`` goes from 1 at ``ro`` to
    0 at ``rc`` as ``S(s) = (s_c − s)² (s_c + 2s − 3s_o) / (s_c − s_o)³`` in ``s = r²``
    (continuous energy and forces): the form of ASE's ``LennardJones(smooth=True)``.

    Args:
        sigma: σ, Å.
        epsilon: ε, eV.
        rc: Cutoff radius, Å (default 3σ, as ASE).
        ro: Onset of the switch, Å (default 0.66 rc, as ASE).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces"]

    def __init__(self, sigma: float, epsilon: float, rc: float | None = None, ro: float | None = None) -> None:
        super().__init__()
        self.sigma, self.epsilon = float(sigma), float(epsilon)
        self.rc = 3.0 * self.sigma if rc is None else float(rc)
        self.ro = 0.66 * self.rc if ro is None else float(ro)
        if not 0.0 < self.ro < self.rc:
            raise InputError(f"Lennard-Jones switch needs 0 < ro < rc, got ro={self.ro} rc={self.rc}")
        self._neighbors = NeighborList(cutoff=self.rc, full_list=False)

    def calculate(self, atoms: Atoms | None = None, properties: Any = None, system_changes: Any = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        n = len(atoms)
        pbc = atoms.pbc
        positions = atoms.positions
        box = np.asarray(atoms.cell[:], dtype=np.float64)
        if pbc.any():  # vesin wants points inside the box; only the periodic images matter
            positions = atoms.get_positions(wrap=True)
        i, j, vectors = self._neighbors.compute(positions, box, pbc, quantities="ijD")
        s = np.einsum("ij,ij->i", vectors, vectors)  # r², Å²
        s_c, s_o = self.rc**2, self.ro**2
        c6 = (self.sigma**2 / s) ** 3
        c12 = c6 * c6
        lj = 4.0 * self.epsilon * (c12 - c6)
        dlj_ds = 4.0 * self.epsilon * (3.0 * c6 - 6.0 * c12) / s
        width = (s_c - s_o) ** 3
        switch = np.where(s < s_o, 1.0, (s_c - s) ** 2 * (s_c + 2.0 * s - 3.0 * s_o) / width)
        dswitch_ds = np.where(s < s_o, 0.0, 6.0 * (s_c - s) * (s_o - s) / width)
        pair_energy = lj * switch
        du_ds = dlj_ds * switch + lj * dswitch_ds
        # vectors = r_j - r_i (+ shift); dU/dr_i = -2 (dU/ds) D, dU/dr_j = +2 (dU/ds) D.
        pair_force = 2.0 * du_ds[:, None] * vectors  # force on i
        forces = np.zeros((n, 3))
        for axis in range(3):
            forces[:, axis] = np.bincount(i, pair_force[:, axis], n) - np.bincount(j, pair_force[:, axis], n)
        energies = 0.5 * (np.bincount(i, pair_energy, n) + np.bincount(j, pair_energy, n))
        self.results["energy"] = self.results["free_energy"] = float(pair_energy.sum())
        self.results["energies"] = energies
        self.results["forces"] = forces


def fcc_lattice_constant(density: float, mass: float) -> float:
    """Cubic fcc lattice constant (Å) for a mass density (g/cm³) of atoms of ``mass`` (amu)."""
    number_density = density / (mass * GRAMS_PER_AMU) * 1e-24  # atoms per Å³
    return (4.0 / number_density) ** (1.0 / 3.0)


def _thermalize(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta at ``temperature`` K, no centre-of-mass motion."""
    draw = getattr(velocitydistribution, "thermalize_momenta", None)  # ASE ≥ 3.29
    if draw is None:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    else:
        draw(atoms, temperature, rng=rng)
    velocitydistribution.Stationary(atoms)


def make_lj(
    n_cells: int = 3,
    n_frames: int = 2000,
    interval: int = 20,
    timestep: float = 10.0,
    temperature: float = 100.0,
    density: float = 1.4,
    melt_temperature: float = 300.0,
    melt_ps: float = 5.0,
    equilibrate_ps: float = 10.0,
    cutoff: float = 2.5 * ARGON_SIGMA,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> Frames:
    """Simulate liquid argon with ASE and return the NVE part, saved every ``interval`` steps.

    Args:
        n_cells: Cubic fcc cells per box edge (4 n³ atoms: 3 → 108).
        n_frames: Frames to save.
        interval: MD steps between saved frames.
        timestep: MD time step, fs.
        temperature: Langevin equilibration temperature (and initial velocities), K.
        density: Mass density, g/cm³ (sets the lattice constant, hence the box).
        melt_temperature: Langevin temperature of the melting stage, K.
        melt_ps, equilibrate_ps: Durations of the melting and equilibration stages, ps
            (both discarded).
        cutoff: Lennard-Jones cutoff rc, Å (switch from 0.66 rc); must be below half the box.
        seed: Seed of the initial velocities and the Langevin noise.
        log: Called with progress lines (e.g. ``print``); None: silent.

    Returns:
        Frames: (n_frames, 4 n_cells³, 3) unwrapped positions in Å, species ``"Ar"``, masses,
        the cubic box (pbc), ``dt = interval · timestep`` in ps and ``time`` from 0; the
        ``source`` records the parameters and the NVE energy drift.
    """
    say = log or (lambda line: None)
    if min(n_cells, n_frames, interval) < 1 or not timestep > 0 or not temperature > 0:
        raise InputError("n_cells, n_frames, interval, timestep and temperature must be positive")
    rng = np.random.default_rng(seed)
    argon_mass = float(atomic_masses[atomic_numbers["Ar"]])
    atoms = bulk("Ar", "fcc", a=fcc_lattice_constant(density, argon_mass), cubic=True).repeat(n_cells)
    half_box = 0.5 * atoms.cell.lengths().min()
    if cutoff >= half_box:
        raise InputError(f"Lennard-Jones cutoff {cutoff} Å is not below half the box ({half_box:.3f} Å)")
    atoms.calc = LennardJonesVesin(ARGON_SIGMA, ARGON_EPSILON_K * units.kB, rc=cutoff)
    step = timestep * units.fs
    friction = 0.01 / units.fs  # 1/(100 fs)
    started = time.perf_counter()
    for label, target, duration in (("melt", melt_temperature, melt_ps), ("equilibrate", temperature, equilibrate_ps)):
        _thermalize(atoms, target, rng)
        Langevin(atoms, step, temperature_K=target, friction=friction, fixcm=False, rng=rng).run(
            int(round(duration * 1e3 / timestep)))
        velocitydistribution.Stationary(atoms)
        say(f"{label}: {duration:g} ps Langevin at {target:g} K, now {atoms.get_temperature():.1f} K")

    dynamics = VelocityVerlet(atoms, step)
    positions = np.empty((n_frames, len(atoms), 3))
    energy = np.empty(n_frames)
    kinetic = np.empty(n_frames)
    for frame in range(n_frames):
        if frame:
            dynamics.run(interval)
        positions[frame] = atoms.get_positions()  # ASE does not wrap: these are unwrapped
        kinetic[frame] = atoms.get_kinetic_energy()
        energy[frame] = atoms.get_potential_energy() + kinetic[frame]
    seconds = time.perf_counter() - started
    drift = float(np.max(np.abs(energy - energy[0])) / len(atoms))
    mean_temperature = float(2.0 * kinetic.mean() / (3.0 * len(atoms) * units.kB))
    say(f"NVE: {n_frames} frames × {interval} steps of {timestep:g} fs, mean {mean_temperature:.1f} K, "
        f"max |ΔE| {drift * 1e3:.3g} meV/atom; {seconds:.1f} s in all")
    dt = interval * timestep * 1e-3
    return Frames(
        positions=positions,
        species=np.array(atoms.get_chemical_symbols()),
        masses=atoms.get_masses(),
        cell=np.array(atoms.cell[:]),
        pbc=atoms.pbc,
        dt=dt,
        time=np.arange(n_frames) * dt,
        source={
            "generator": "benchmarks/make_lj.py", "n_cells": n_cells, "interval": interval, "timestep_fs": timestep,
            "temperature_K": temperature, "density_g_cm3": density, "cutoff": cutoff, "seed": seed,
            "mean_temperature_K": mean_temperature, "max_energy_drift_eV_per_atom": drift, "seconds": seconds,
        },
    )


def coarseness(frames: Frames) -> dict[str, float]:
    """One-step MSEs (Å²) of zero displacement and constant velocity over the whole trajectory.

    Constant velocity predicts ``x[t+1] − x[t] = x[t] − x[t−1]``; the sampling is coarse when
    that is no better than predicting no motion. Displacements by minimum image.

    Returns:
        ``zero``, ``constant_velocity`` (Å²) and their ratio ``cv_over_zero`` (≥ 1: coarse),
        plus the velocity-autocorrelation proxy ``lag1_correlation`` of successive
        displacements (constant velocity beats zero about when it exceeds 0.5; exactly so when
        successive displacements have equal spread).
    """
    disp = np.diff(frames.positions, axis=0)
    if frames.is_periodic:
        fractional = disp @ np.linalg.inv(frames.cell[1:])
        fractional[..., frames.pbc] -= np.round(fractional[..., frames.pbc])
        disp = fractional @ frames.cell[1:]
    if disp.shape[0] < 2:
        raise InputError("coarseness needs at least 3 frames")
    zero = float(np.mean(disp[1:] ** 2))
    constant_velocity = float(np.mean((disp[1:] - disp[:-1]) ** 2))
    correlation = float(np.sum(disp[1:] * disp[:-1]) / math.sqrt(np.sum(disp[1:] ** 2) * np.sum(disp[:-1] ** 2)))
    return {"zero": zero, "constant_velocity": constant_velocity, "cv_over_zero": constant_velocity / zero,
            "lag1_correlation": correlation}


def diffusion_coefficient(frames: Frames) -> float:
    """Self-diffusion coefficient, Å²/ps: MSD at a lag of half the trajectory over 6 lag.

    Needs unwrapped positions (a wrapped trajectory gives nonsense).
    """
    if frames.dt is None or frames.n_frames < 4:
        raise InputError("the diffusion coefficient needs dt and at least 4 frames")
    lag = frames.n_frames // 2
    msd = np.mean(np.sum((frames.positions[lag:] - frames.positions[:-lag]) ** 2, axis=-1))
    return float(msd / (6.0 * lag * frames.dt))


def main(argv: list[str] | None = None) -> int:
    """Command line: simulate, check coarseness, write the trajectory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="output trajectory (.extxyz, .traj, .npz, …)")
    parser.add_argument("--cells", type=int, default=3, help="fcc cells per box edge (4 n³ atoms; default 3 = 108)")
    parser.add_argument("--frames", type=int, default=2000, help="frames to save (default 2000)")
    parser.add_argument("--interval", type=int, default=20, help="MD steps between saved frames (default 20)")
    parser.add_argument("--timestep", type=float, default=10.0, help="MD time step, fs (default 10)")
    parser.add_argument("--temperature", type=float, default=100.0, help="temperature, K (default 100)")
    parser.add_argument("--cutoff", type=float, default=2.5 * ARGON_SIGMA, help="LJ cutoff, Å (default 2.5 σ = 8.51)")
    parser.add_argument("--melt-ps", type=float, default=5.0, help="Langevin melting at 300 K, ps (default 5)")
    parser.add_argument("--equilibrate-ps", type=float, default=10.0, help="Langevin equilibration, ps (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite the output")
    args = parser.parse_args(argv)
    try:
        mdnext.io.refuse_existing(args.out, args.force)
        frames = make_lj(args.cells, args.frames, args.interval, args.timestep, args.temperature,
                         melt_ps=args.melt_ps, equilibrate_ps=args.equilibrate_ps, cutoff=args.cutoff,
                         seed=args.seed, log=print)
        check = coarseness(frames)
        print(f"one-step MSE: zero {check['zero']:.4g} Å², constant velocity {check['constant_velocity']:.4g} Å² "
              f"(ratio {check['cv_over_zero']:.3f}; "
              f"successive-displacement correlation {check['lag1_correlation']:.3f})")
        print(f"diffusion coefficient {diffusion_coefficient(frames):.3g} Å²/ps (liquid argon: ~0.2-0.4)")
        if check["cv_over_zero"] < 1.0:
            print("warning: constant velocity beats zero displacement; save less often (--interval) for coarse steps")
        mdnext.save(frames, args.out, overwrite=args.force)
    except mdnext.MDNextError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {frames} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
