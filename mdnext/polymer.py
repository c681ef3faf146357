"""A 2D bead-spring polymer under Langevin dynamics: the generator of the bundled ``data/paths.npz``.

Units: Å, ps, amu, kJ/mol, K. A linear chain of identical beads with

* harmonic bonds ``U = k_b/2 (r - r_0)^2`` between neighbours i, i+1;
* cosine-harmonic bending ``U = k_a/2 (cos θ - cos θ_0)^2`` at each inner bead (GROMACS angle
  type 2; near θ_0 harmonic in θ with constant ``k_a sin^2 θ_0``). Without ``arccos`` the forces
  need only + - * / and sqrt, which IEEE 754 rounds the same on every CPU and SIMD path;
* WCA (Lennard-Jones cut at its minimum 2^(1/6) σ, shifted to zero) between beads three or more
  bonds apart (1-2 and 1-3 pairs excluded).

Dynamics: Langevin, integrated with BAOAB (Leimkuhler & Matthews, J. Chem. Phys. 138, 174102,
2013): half kick, half drift, exact Ornstein-Uhlenbeck velocity update, half drift, half kick.
With zero friction it is velocity Verlet.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
from pathlib import Path

import numpy as np

from mdnext.errors import MDNextError, first_line
from mdnext.io import atomic_path

#: One kJ/mol in amu Å² ps⁻², so that force / mass * KJ_PER_MOL is an acceleration in Å ps⁻².
KJ_PER_MOL = 100.0
#: Boltzmann constant in kJ/mol/K.
BOLTZMANN = 0.0083144626
#: Seed of the bundled ``data/paths.npz``.
DEFAULT_SEED = 20240607


@dataclasses.dataclass(frozen=True)
class ForceField:
    """Parameters of the chain's potential energy.

    Attributes:
        bond_length: Bond rest length r_0 in Å.
        bond_k: Bond force constant k_b in kJ/mol/Å².
        angle: Rest bending angle θ_0 at a bead (between its two bonds) in degrees.
        angle_k: Bending force constant k_a in kJ/mol (on cos θ, dimensionless).
        wca_sigma: WCA diameter σ in Å.
        wca_epsilon: WCA energy ε in kJ/mol.
    """

    bond_length: float = 0.33
    bond_k: float = 250.0
    angle: float = 110.0
    angle_k: float = 25.0
    wca_sigma: float = 0.3
    wca_epsilon: float = 2.5


def energy_and_forces(positions: np.ndarray, ff: ForceField = ForceField()) -> tuple[float, np.ndarray]:
    """Potential energy (kJ/mol) and forces (N, 2) in kJ/mol/Å of a chain at ``positions`` (N, 2) Å."""
    x = positions
    forces = np.zeros_like(x)
    # Bonds: gradient of U with respect to the bond vector d = x[i+1] - x[i].
    d = x[1:] - x[:-1]
    r = np.sqrt(np.sum(d * d, axis=1))
    stretch = r - ff.bond_length
    energy = 0.5 * ff.bond_k * float(np.sum(stretch * stretch))
    g = (ff.bond_k * stretch / r)[:, None] * d
    forces[:-1] += g
    forces[1:] -= g
    # Bending: a = x[i-1] - x[i], b = x[i+1] - x[i], c = cos θ at bead i.
    a, b = -d[:-1], d[1:]
    ra, rb = r[:-1, None], r[1:, None]
    c = np.sum(a * b, axis=1)[:, None] / (ra * rb)
    dev = c - math.cos(math.radians(ff.angle))
    energy += 0.5 * ff.angle_k * float(np.sum(dev * dev))
    ga = ff.angle_k * dev * (b / (ra * rb) - c * a / (ra * ra))  # dU/da
    gb = ff.angle_k * dev * (a / (ra * rb) - c * b / (rb * rb))  # dU/db
    forces[:-2] -= ga
    forces[2:] -= gb
    forces[1:-1] += ga + gb
    # WCA between beads |i - j| >= 3, as a full (N, N) matrix (N is small).
    n = len(x)
    idx = np.arange(n)
    pair = np.abs(idx[:, None] - idx[None, :]) >= 3
    diff = x[:, None, :] - x[None, :, :]
    r2 = np.where(pair, np.sum(diff * diff, axis=2), np.inf)
    s2 = ff.wca_sigma * ff.wca_sigma / r2
    s6 = s2 * s2 * s2
    inside = s6 > 0.5  # r < 2^(1/6) σ
    u = np.where(inside, 4.0 * ff.wca_epsilon * (s6 * s6 - s6) + ff.wca_epsilon, 0.0)
    energy += 0.5 * float(np.sum(u))
    f_over_r = np.where(inside, 24.0 * ff.wca_epsilon * (2.0 * s6 * s6 - s6) / r2, 0.0)
    forces += np.sum(f_over_r[:, :, None] * diff, axis=1)
    return energy, forces


def zigzag(n_beads: int, ff: ForceField = ForceField()) -> np.ndarray:
    """A planar zigzag (N, 2) Å with every bond at r_0 and every angle at θ_0, centred on 0."""
    half = math.radians(ff.angle) / 2.0
    x = np.zeros((n_beads, 2))
    x[:, 0] = np.arange(n_beads) * ff.bond_length * math.sin(half)
    x[1::2, 1] = ff.bond_length * math.cos(half)
    return x - x.mean(axis=0)


def baoab(
    positions: np.ndarray,
    velocities: np.ndarray,
    n_steps: int,
    rng: np.random.Generator,
    *,
    temperature: float,
    mass: float,
    friction: float,
    timestep: float,
    ff: ForceField = ForceField(),
) -> tuple[np.ndarray, np.ndarray]:
    """Advance (N, 2) positions (Å) and velocities (Å/ps) by ``n_steps`` BAOAB steps; returns new arrays.

    Args: as :func:`simulate_polymer`; ``rng`` supplies the (n_steps, N, 2) standard normals.
    """
    x, v = np.array(positions, dtype=np.float64), np.array(velocities, dtype=np.float64)
    kt = BOLTZMANN * temperature * KJ_PER_MOL / mass  # kT/m in Å²/ps²
    c1 = math.exp(-friction * timestep)
    c2 = math.sqrt((1.0 - c1 * c1) * kt)
    kick = 0.5 * timestep * KJ_PER_MOL / mass  # Å/ps per kJ/mol/Å
    half = 0.5 * timestep
    noise = rng.standard_normal((n_steps,) + x.shape)
    f = energy_and_forces(x, ff)[1]
    for step in range(n_steps):
        v += kick * f  # B
        x += half * v  # A
        v = c1 * v + c2 * noise[step]  # O
        x += half * v  # A
        f = energy_and_forces(x, ff)[1]
        v += kick * f  # B
    return x, v


def simulate_polymer(
    n_beads: int = 12,
    n_frames: int = 2048,
    seed: int = DEFAULT_SEED,
    *,
    temperature: float = 300.0,
    mass: float = 12.0,
    friction: float = 0.5,
    timestep: float = 0.00025,
    steps_per_frame: int = 5,
    equilibration_steps: int = 20000,
    ff: ForceField = ForceField(),
) -> np.ndarray:
    """Langevin dynamics of the chain from a zigzag; returns the saved frames.

    Args:
        n_beads: Number of beads N.
        n_frames: Number of saved frames T.
        seed: Seed of ``numpy.random.default_rng`` (initial velocities, then the noise).
        temperature: Thermostat temperature in K.
        mass: Bead mass in amu.
        friction: Langevin friction γ in 1/ps (0: no thermostat, velocity Verlet).
        timestep: Integration step h in ps.
        steps_per_frame: Integration steps between saved frames (frames are
            ``steps_per_frame * timestep`` ps apart).
        equilibration_steps: Steps run and discarded before the first saved frame.
        ff: The force field.

    Returns:
        (T, N, 2) float64 positions in Å.
    """
    rng = np.random.default_rng(seed)
    advance = functools.partial(
        baoab, rng=rng, temperature=temperature, mass=mass, friction=friction, timestep=timestep, ff=ff
    )
    x = zigzag(n_beads, ff)
    v = math.sqrt(BOLTZMANN * temperature * KJ_PER_MOL / mass) * rng.standard_normal((n_beads, 2))
    x, v = advance(x, v, equilibration_steps)
    frames = np.empty((n_frames, n_beads, 2))
    for frame in range(n_frames):
        x, v = advance(x, v, steps_per_frame)
        frames[frame] = x
    return frames


def write_paths(path: str | Path, *, seed: int = DEFAULT_SEED, overwrite: bool = False) -> Path:
    """Simulate with the defaults and write ``{'arr': (2048, 12, 2)}`` to ``path`` atomically.

    ``np.savez`` to a file object stores no time stamps, so equal arrays give equal bytes.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:  # refuses an existing file before simulating
        arr = simulate_polymer(seed=seed)
        if not np.isfinite(arr).all():
            raise MDNextError(f"{path}: the simulation blew up (non-finite positions); not written")
        with open(tmp, "wb") as handle:
            np.savez(handle, arr=arr)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m mdnext.polymer OUTPUT [--seed S] [--force]``: write the bundled trajectory."""
    parser = argparse.ArgumentParser(
        prog="python -m mdnext.polymer", description="Simulate the bundled 12-bead 2D polymer trajectory."
    )
    parser.add_argument("output", help="npz file to write (key 'arr', shape (2048, 12, 2), Å)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args(argv)
    try:
        write_paths(args.output, seed=args.seed, overwrite=args.force)
    except MDNextError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. no permission to write there
        print(f"error: {args.output}: {first_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
