"""The ASE reader and writer: extended XYZ, .traj, Atoms objects, units, routing and bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io.trajectory import Trajectory
from ase.md.verlet import VelocityVerlet

import mdnext
from mdnext import io
from mdnext.errors import InputError, OutputError
from mdnext.frames import Frames
from mdnext.plugins.ase import (
    ASEReader,
    ASEWriter,
    PS_PER_ASE_TIME,
    atoms_from_frames,
    frames_from_atoms,
    is_extended_xyz,
)
from mdnext.plugins.mdanalysis import MDAnalysisReader

N_STEPS = 10
TIMESTEP = 2 * units.fs  # ASE time units
DT_PS = TIMESTEP * PS_PER_ASE_TIME  # 0.002 ps

@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """11 frames of 32 rattled Cu atoms (EMT, velocity Verlet, 2 fs): images, .extxyz, .traj."""
    folder = tmp_path_factory.mktemp("ase_md")
    atoms = bulk("Cu", cubic=True) * 2
    atoms.calc = EMT()
    atoms.rattle(stdev=0.05, seed=0)
    dyn = VelocityVerlet(atoms, timestep=TIMESTEP)
    images: list[Atoms] = []

    def collect() -> None:
        atoms.info["time"] = dyn.get_time()  # ASE time units
        images.append(atoms.copy())

    dyn.attach(collect, interval=1)
    traj_path = folder / "md.traj"
    with Trajectory(traj_path, "w", atoms) as traj:
        dyn.attach(traj.write, interval=1)
        dyn.run(N_STEPS)
    extxyz_path = folder / "md.extxyz"
    ase.io.write(extxyz_path, images, format="extxyz")
    return {"images": images, "traj": traj_path, "extxyz": extxyz_path}


def assert_matches_images(frames: Frames, images: list[Atoms]) -> None:
    """Frames hold exactly what ASE reports for ``images``."""
    assert frames.n_frames == len(images)
    assert frames.n_atoms == len(images[0])
    assert list(frames.species) == images[0].get_chemical_symbols()
    np.testing.assert_array_equal(frames.positions, np.stack([a.positions for a in images]))
    np.testing.assert_array_equal(frames.cell, np.stack([a.cell.array for a in images]))
    np.testing.assert_array_equal(frames.pbc, images[0].pbc)
    np.testing.assert_array_equal(frames.masses, images[0].get_masses())


# --- reading ---------------------------------------------------------------------------------


def test_extxyz_matches_ase(md: dict) -> None:
    frames = mdnext.load(md["extxyz"])
    assert_matches_images(frames, ase.io.read(md["extxyz"], index=":"))
    assert frames.n_frames == N_STEPS + 1 and frames.n_atoms == 32
    assert frames.pbc.all() and frames.positions.dtype == np.float64
    assert frames.source["reader"] == "ase" and frames.source["format"] == "extxyz"
    # info["time"] is in ASE units (≈ 10.18 fs): 2 fs steps are 0.002 ps
    assert frames.dt == pytest.approx(0.002, rel=1e-12)
    np.testing.assert_allclose(frames.times, np.arange(N_STEPS + 1) * 0.002, rtol=1e-12, atol=1e-15)


def test_traj_matches_ase(md: dict) -> None:
    frames = mdnext.load(md["traj"])
    assert_matches_images(frames, ase.io.read(md["traj"], index=":"))
    # .traj keeps float64: identical to the images collected during the run
    assert_matches_images(frames, md["images"])
    assert frames.source["reader"] == "ase" and frames.dt == pytest.approx(DT_PS, rel=1e-12)


def test_objects(md: dict) -> None:
    images = md["images"]
    frames = mdnext.load(images)
    assert_matches_images(frames, images)
    assert frames.source["reader"] == "ase" and frames.dt == pytest.approx(0.002, rel=1e-12)
    assert_matches_images(mdnext.load(tuple(images)), images)
    single = mdnext.load(images[3])
    assert single.n_frames == 1 and single.dt is None
    np.testing.assert_array_equal(single.positions[0], images[3].positions)
    with Trajectory(md["traj"]) as traj:
        assert_matches_images(mdnext.load(traj), images)
    assert ASEReader().read_object([]) is None and ASEReader().read_object([images[0], "x"]) is None


def test_select(md: dict) -> None:
    assert mdnext.load(md["extxyz"], select="Cu").n_atoms == 32
    frames = mdnext.load(md["extxyz"], select="0:10:2")
    np.testing.assert_array_equal(frames.positions, mdnext.load(md["extxyz"]).positions[:, 0:10:2])
    mixed = Atoms("CO2", positions=np.arange(9.0).reshape(3, 3))
    assert list(mdnext.load(mixed, select="C, O").species) == ["C", "O", "O"]
    assert list(mdnext.load(mixed, select="O").species) == ["O", "O"]
    assert list(mdnext.load(mixed, select="-1:").species) == ["O"]
    for bad, message in [("Zn", "matches no atoms"), ("name CA", "is neither"), ("", "is neither")]:
        with pytest.raises(InputError, match=message):
            mdnext.load(md["extxyz"], select=bad)


def test_times_without_uniform_step() -> None:
    images = [Atoms("Ar", positions=[[float(i), 0, 0]], info={"time_ps": t}) for i, t in enumerate([0.0, 1.0, 3.0])]
    frames = frames_from_atoms(images)
    assert frames.dt is None
    np.testing.assert_array_equal(frames.time, [0.0, 1.0, 3.0])
    forced = frames_from_atoms(images, dt=0.5)
    assert forced.dt == 0.5 and forced.time is None
    assert frames_from_atoms([Atoms("Ar")]).dt is None


# --- writing and round trips -----------------------------------------------------------------


def test_time_and_dt_are_written(md: dict, tmp_path: Path) -> None:
    # a dt that the spread of its multiples does not give back exactly: (10 * 0.007 - 0) / 10 != 0.007
    frames = mdnext.load(md["traj"]).replace(dt=0.007, time=None)
    path = mdnext.save(frames, tmp_path / "out.extxyz")
    raw = ase.io.read(path, index=":")
    assert [a.info["time_ps"] for a in raw] == list(frames.times)
    assert all(a.info["dt_ps"] == frames.dt for a in raw)
    back = mdnext.load(path)
    assert back.dt == frames.dt  # exact
    np.testing.assert_array_equal(back.times, frames.times)
    # extxyz → extxyz: dt still exact; positions as printed (8 decimals)
    again = mdnext.load(mdnext.save(back, tmp_path / "again.extxyz"))
    assert again.dt == frames.dt
    np.testing.assert_array_equal(again.positions, back.positions)
    np.testing.assert_allclose(again.positions, frames.positions, atol=1e-8, rtol=0)
    np.testing.assert_array_equal(again.cell, frames.cell)
    assert list(again.species) == list(frames.species) and again.pbc.all()


def test_traj_round_trip_is_exact(md: dict, tmp_path: Path) -> None:
    frames = mdnext.load(md["extxyz"])
    back = mdnext.load(mdnext.save(frames, tmp_path / "out.traj"))
    np.testing.assert_array_equal(back.positions, frames.positions)
    np.testing.assert_array_equal(back.cell, frames.cell)
    np.testing.assert_array_equal(back.species, frames.species)
    assert back.dt == frames.dt and back.pbc.all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.traj"]  # no temporary left


def test_molecule_masses_and_charges(tmp_path: Path) -> None:
    """No box stays no box; non-default masses and initial charges survive extended XYZ."""
    rng = np.random.default_rng(1)
    frames = Frames(
        positions=rng.normal(size=(4, 3, 3)),
        species=np.array(["O", "H", "H"]),
        masses=np.array([15.999, 2.014, 2.014]),  # heavy water
        atoms={"charges": np.array([-0.8, 0.4, 0.4])},
        dt=0.05,
    )
    back = mdnext.load(mdnext.save(frames, tmp_path / "water.extxyz"))
    assert back.cell is None and not back.pbc.any() and back.dt == 0.05
    np.testing.assert_allclose(back.positions, frames.positions, atol=1e-8, rtol=0)
    np.testing.assert_allclose(back.masses, frames.masses, atol=1e-8, rtol=0)
    np.testing.assert_allclose(back.atoms["charges"], frames.atoms["charges"], atol=1e-8, rtol=0)
    # default masses are not written as a column
    plain = frames.replace(masses=None, atoms={})
    mdnext.save(plain, tmp_path / "plain.extxyz")
    assert "masses" not in (tmp_path / "plain.extxyz").read_text().splitlines()[1]


def test_atoms_from_frames_units(md: dict) -> None:
    frames = mdnext.load(md["traj"])
    images = atoms_from_frames(frames)
    assert len(images) == frames.n_frames
    np.testing.assert_array_equal(images[5].positions, frames.positions[5])
    np.testing.assert_array_equal(images[5].cell.array, frames.cell[5])
    assert images[5].info["time_ps"] == pytest.approx(5 * 0.002, rel=1e-12)
    assert_matches_images(frames_from_atoms(images), images)


def test_writer_errors(tmp_path: Path) -> None:
    beads = Frames(positions=np.zeros((2, 2, 3)) + [[0.0], [1.0]], species=np.array(["CA", "CB"]))
    with pytest.raises(OutputError, match="not chemical element symbols"):
        mdnext.save(beads, tmp_path / "beads.extxyz")
    with_elements = beads.replace(atoms={"elements": np.array(["C", "C"])})
    assert list(mdnext.load(mdnext.save(with_elements, tmp_path / "c.extxyz")).species) == ["C", "C"]
    argon = Frames(positions=np.zeros((2, 1, 3)), species=np.array(["Ar"]), cell=np.eye(3) * 5, pbc=True)
    with pytest.raises(OutputError, match="holds one frame"):
        mdnext.save(argon, tmp_path / "POSCAR.poscar")
    assert not list(tmp_path.glob("*poscar*"))
    one = mdnext.load(mdnext.save(argon[-1], tmp_path / "argon.poscar"))
    assert one.n_frames == 1 and one.source["reader"] == "ase"
    np.testing.assert_allclose(one.cell[0], np.eye(3) * 5)


# --- routing ---------------------------------------------------------------------------------


def test_extended_xyz_sniffing(md: dict, tmp_path: Path) -> None:
    extended = tmp_path / "ext.xyz"
    extended.write_text(md["extxyz"].read_text())
    plain = tmp_path / "plain.xyz"
    plain.write_text("2\nwater fragment, step 0\nO 0 0 0\nH 0.96 0 0\n")
    packed = tmp_path / "ext.xyz.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write(md["extxyz"].read_text())
    assert is_extended_xyz(extended) and is_extended_xyz(packed)
    assert not is_extended_xyz(plain) and not is_extended_xyz(tmp_path / "missing.xyz")
    reader = ASEReader()
    assert reader.accepts(extended, "xyz") and not reader.accepts(plain, "xyz")
    assert reader.accepts(plain, "extxyz")  # an explicit extxyz key is always ASE's
    frames = mdnext.load(extended)
    assert frames.source["reader"] == "ase"
    np.testing.assert_array_equal(frames.positions, mdnext.load(md["extxyz"]).positions)
    np.testing.assert_array_equal(mdnext.load(packed).positions, frames.positions)
    assert mdnext.load(plain, format="ase:xyz").source["reader"] == "ase"  # forced


def test_priorities() -> None:
    reader, writer = ASEReader(), ASEWriter()
    assert {"extxyz", "traj", "xyz", "cif", "pdb", "gro", "poscar"} <= reader.formats
    assert {"extxyz", "traj", "xyz", "cif", "pdb", "poscar"} <= writer.formats
    assert [reader.priority_for(f) for f in ("extxyz", "traj", "xyz", "pdb", "gro", "cif")] == [5, 5, 5, -5, -5, -5]
    assert [writer.priority_for(f) for f in ("extxyz", "traj", "xyz", "pdb", "cif")] == [10, 10, 0, -5, -5]
    assert io._plugins(mdnext.registry.writers, "extxyz", None)[0].name == "ase"
    assert io._plugins(mdnext.registry.readers, "traj", None)[0].name == "ase"


def test_xyz_routing_with_mdanalysis(md: dict, tmp_path: Path) -> None:
    plain = tmp_path / "plain.xyz"
    plain.write_text("2\nwater fragment, step 0\nO 0 0 0\nH 0.96 0 0\n")
    assert mdnext.load(plain).source["reader"] == "mdanalysis"
    extended = tmp_path / "ext.xyz"
    extended.write_text(md["extxyz"].read_text())
    assert mdnext.load(extended).source["reader"] == "ase"
    # MDAnalysis wins the formats both read and write
    for fmt in ("pdb", "gro", "dcd"):
        if fmt in MDAnalysisReader().formats:
            assert io._plugins(mdnext.registry.readers, fmt, None)[0].name == "mdanalysis"
    for fmt in ("xyz", "pdb"):
        assert io._plugins(mdnext.registry.writers, fmt, None)[0].name == "mdanalysis"


def test_round_trip_through_dcd(md: dict, tmp_path: Path) -> None:
    """extxyz → DCD (+ PDB topology, both written by MDAnalysis) → extxyz."""
    frames = mdnext.load(md["extxyz"])
    topology = mdnext.save(frames[0], tmp_path / "top.pdb")
    dcd = mdnext.save(frames, tmp_path / "md.dcd")
    via_dcd = mdnext.load(dcd, topology=topology)
    back = mdnext.load(mdnext.save(via_dcd, tmp_path / "back.extxyz"))
    assert back.source["reader"] == "ase" and back.n_frames == frames.n_frames
    np.testing.assert_array_equal(back.species, frames.species)
    np.testing.assert_allclose(back.positions, frames.positions, atol=1e-3, rtol=0)
    np.testing.assert_allclose(back.cell, frames.cell, atol=1e-3, rtol=0)
    assert back.pbc.all()
    assert back.dt == pytest.approx(frames.dt, rel=1e-5)


# --- bad input -------------------------------------------------------------------------------


def assert_one_line_error(path: Path, match: str, **kwargs) -> None:
    with pytest.raises(InputError, match=match) as info:
        mdnext.load(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message


def test_bad_input(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_bytes(b"hello world\nthis is not xyz\n\x00\x01\x02\n")
    assert_one_line_error(garbage, "cannot read as extxyz with ASE")
    not_traj = tmp_path / "not.traj"
    not_traj.write_text("3\nProperties=species:S:1:pos:R:3\nAr 0 0 0\n")
    assert_one_line_error(not_traj, "cannot read as traj with ASE")
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    assert_one_line_error(empty, "no frames")
    growing = tmp_path / "growing.extxyz"
    header = "Properties=species:S:1:pos:R:3"
    growing.write_text(
        f"3\n{header}\n" + "".join(f"Ar {i} 0 0\n" for i in range(3))
        + f"4\n{header}\n" + "".join(f"Ar {i} 0 0\n" for i in range(4))
    )
    assert_one_line_error(growing, "frame 1 has 4 atoms but frame 0 has 3")
    swapped = tmp_path / "swapped.extxyz"
    swapped.write_text(f"2\n{header}\nAr 0 0 0\nNe 1 0 0\n2\n{header}\nNe 0 0 0\nAr 1 0 0\n")
    assert_one_line_error(swapped, "frame 1 has other elements")
    nan = tmp_path / "nan.extxyz"
    nan.write_text(f"2\n{header}\nAr 0 0 0\nAr 1 0 0\n2\n{header}\nAr 0 0 nan\nAr 1 0 0\n")
    assert_one_line_error(nan, r"non-finite coordinates \(NaN or inf\) in frame 1")
    good = tmp_path / "good.extxyz"
    good.write_text(f"1\n{header}\nAr 0 0 0\n")
    assert_one_line_error(good, "topology does not apply", topology=good)
