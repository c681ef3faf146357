"""The MDAnalysis adapter, mostly through the public ``mdnext.load`` / ``mdnext.save``."""

from __future__ import annotations

import warnings
from pathlib import Path

import MDAnalysis as mda
import numpy as np
import pytest
from MDAnalysis.analysis import rms
from MDAnalysis.lib.mdamath import triclinic_vectors
from MDAnalysisTests.datafiles import DCD, GRO, PDB_small, PRMncdf, NCDF, PSF, XTC, XYZ

import mdnext
from mdnext.errors import InputError, OutputError
from mdnext.plugins.mdanalysis import MDAnalysisReader, MDAnalysisWriter, from_universe, to_universe

# MDAnalysis warns once per atom whose mass it cannot guess (e.g. CHARMM type numbers read back from XYZ).
pytestmark = pytest.mark.filterwarnings("ignore:Unknown masses are set to 0.0:PendingDeprecationWarning")


def no_dt_warning(universe: mda.Universe) -> bool:
    """Whether MDAnalysis itself has a real dt (it warns when it makes up 1 ps)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        universe.trajectory.dt
    return not any("no dt information" in str(w.message) for w in caught)


def assert_matches_mdanalysis(frames: mdnext.Frames, universe: mda.Universe) -> None:
    """Counts, positions, box and dt as MDAnalysis reports them for ``universe``."""
    trajectory = universe.trajectory
    assert frames.n_frames == trajectory.n_frames
    assert frames.n_atoms == universe.atoms.n_atoms
    assert frames.positions.dtype == np.float64
    for i in sorted({0, trajectory.n_frames // 2, trajectory.n_frames - 1}):
        ts = trajectory[i]
        np.testing.assert_array_equal(frames.positions[i], universe.atoms.positions.astype(np.float64))
        if ts.dimensions is None:
            assert frames.cell is None
        else:
            np.testing.assert_allclose(frames.cell[i], triclinic_vectors(ts.dimensions), rtol=1e-6)
            assert frames.pbc.all()
    if no_dt_warning(universe):
        assert frames.dt == pytest.approx(trajectory.dt, rel=1e-12)
        np.testing.assert_allclose(frames.time, [ts.time for ts in trajectory], rtol=1e-6)
    else:
        assert frames.dt is None and frames.time is None


# ------------------------------------------------------------------ registration


def test_formats_come_from_mdanalysis_and_writer_wins_its_formats():
    formats = MDAnalysisReader.formats
    for fmt in ("dcd", "xtc", "trr", "xyz", "pdb", "gro", "crd", "nc", "ncdf", "lammpsdump"):
        assert fmt in formats
    assert not formats & {"memory", "chain"}
    assert all(fmt == fmt.lower() and "." not in fmt for fmt in formats)
    assert MDAnalysisReader.priority == 0
    assert {"dcd", "xyz", "pdb", "gro", "xtc", "trr"} <= MDAnalysisWriter.formats
    assert MDAnalysisWriter.priority == 10


# ------------------------------------------------------------------ reading


def test_psf_dcd_as_mdanalysis_reports():
    frames = mdnext.load(DCD, topology=PSF)
    universe = mda.Universe(PSF, DCD)
    assert (frames.n_frames, frames.n_atoms) == (98, 3341)
    assert_matches_mdanalysis(frames, universe)
    assert frames.dt == pytest.approx(1.0, rel=1e-6)  # the header's delta, not a made-up 1 ps
    # PSF has no elements: species are the types, masses and per-atom fields come along
    np.testing.assert_array_equal(frames.species, universe.atoms.types)
    np.testing.assert_allclose(frames.masses, universe.atoms.masses)
    np.testing.assert_array_equal(frames.atoms["names"], universe.atoms.names)
    np.testing.assert_array_equal(frames.atoms["resids"], universe.atoms.resids)
    np.testing.assert_allclose(frames.atoms["charges"], universe.atoms.charges)
    assert frames.source["reader"] == "mdanalysis" and frames.source["topology"] == PSF


def test_gro_xtc_as_mdanalysis_reports():
    frames = mdnext.load(XTC, topology=GRO)
    universe = mda.Universe(GRO, XTC)
    assert_matches_mdanalysis(frames, universe)
    assert frames.dt == pytest.approx(100.0, rel=1e-6)
    assert frames.cell.shape == (10, 3, 3) and frames.pbc.all()


def test_xyz_as_mdanalysis_reports_without_made_up_dt():
    frames = mdnext.load(XYZ)
    universe = mda.Universe(XYZ)
    assert (frames.n_frames, frames.n_atoms) == (10, 1284)
    assert_matches_mdanalysis(frames, universe)
    assert frames.dt is None and frames.time is None and frames.cell is None
    np.testing.assert_array_equal(frames.species, universe.atoms.elements)


def test_dt_reported_as_zero_is_unknown():
    universe = mda.Universe(PRMncdf, NCDF)
    assert universe.trajectory.dt == 0  # every frame of this file says time 0
    frames = mdnext.load(NCDF, topology=PRMncdf)
    assert frames.dt is None and frames.time is None
    assert frames.n_frames == universe.trajectory.n_frames


def test_pdb_species_from_types_when_no_elements():
    frames = mdnext.load(PDB_small)
    universe = mda.Universe(PDB_small)
    assert frames.n_frames == 1 and frames.dt is None
    np.testing.assert_array_equal(frames.species, universe.atoms.types)


def test_select_name_ca():
    frames = mdnext.load(DCD, topology=PSF, select="name CA")
    universe = mda.Universe(PSF, DCD)
    ca = universe.select_atoms("name CA")
    assert frames.n_atoms == ca.n_atoms == 214
    universe.trajectory[-1]
    np.testing.assert_array_equal(frames.positions[-1], ca.positions)
    assert set(frames.atoms["names"]) == {"CA"}
    assert frames.source["select"] == "name CA"


def test_universe_and_atomgroup_objects():
    universe = mda.Universe(PSF, DCD)
    universe.trajectory[7]
    whole = mdnext.load(universe)
    assert (whole.n_frames, whole.n_atoms) == (98, 3341)
    assert universe.trajectory.ts.frame == 7  # left where it was
    group = universe.select_atoms("resid 1-3")
    part = mdnext.load(group)
    assert part.n_atoms == group.n_atoms
    np.testing.assert_array_equal(part.positions, whole.positions[:, group.indices])
    assert part.dt == whole.dt
    narrowed = mdnext.load(universe, select="resid 1-3 and name CA")
    assert narrowed.n_atoms == 3
    with pytest.raises(InputError, match="updating AtomGroup"):
        mdnext.load(universe.select_atoms("prop z > 0", updating=True))
    assert MDAnalysisReader().read_object([1, 2, 3]) is None


# ------------------------------------------------------------------ writing


def test_round_trip_dcd_xyz_dcd(tmp_path):
    original = mdnext.load(DCD, topology=PSF)
    xyz = mdnext.save(original, tmp_path / "adk.xyz")
    via_xyz = mdnext.load(xyz)
    np.testing.assert_allclose(via_xyz.positions, original.positions, atol=1e-3)
    np.testing.assert_array_equal(via_xyz.species, original.species)
    assert via_xyz.dt is None  # XYZ has no time
    restored = via_xyz.replace(dt=original.dt, time=original.time, cell=original.cell, pbc=original.pbc)
    dcd = mdnext.save(restored, tmp_path / "adk.dcd")
    final = mdnext.load(dcd, topology=PSF)
    np.testing.assert_allclose(final.positions, original.positions, atol=1e-3)
    assert final.dt == pytest.approx(original.dt, rel=1e-6)
    np.testing.assert_allclose(final.time, original.time, rtol=1e-6)  # first frame at 1 ps kept
    assert final.cell is None and original.cell is None


def test_round_trip_box_and_dt_through_dcd(tmp_path):
    original = mdnext.load(XTC, topology=GRO)[:3]
    final = mdnext.load(mdnext.save(original, tmp_path / "box.dcd"), topology=GRO)
    np.testing.assert_allclose(final.cell, original.cell, atol=1e-4)
    assert final.pbc.all()
    assert final.dt == pytest.approx(original.dt, rel=1e-6)
    np.testing.assert_allclose(final.positions, original.positions, atol=1e-4)


def boxed_frames(n_frames: int = 4, dt: float | None = 0.25) -> mdnext.Frames:
    rng = np.random.default_rng(1)
    cell = np.array([[12.0, 0.0, 0.0], [2.0, 11.0, 0.0], [1.0, 1.5, 10.0]])
    return mdnext.Frames(
        positions=rng.uniform(0, 9, size=(n_frames, 5, 3)),
        species=["O", "H", "H", "C", "Cl"],
        masses=[16.0, 1.0, 1.0, 12.0, 35.45],
        cell=cell,
        pbc=True,
        dt=dt,
        atoms={"resnames": np.array(["HOH"] * 3 + ["CL1"] * 2), "resids": np.array([1, 1, 1, 2, 2])},
    )


@pytest.mark.parametrize(
    ("fmt", "atol", "has_time"),
    [("dcd", 1e-4, True), ("xtc", 6e-3, True), ("trr", 1e-4, True), ("nc", 1e-4, True), ("xyz", 1e-5, False),
     ("pdb", 6e-4, False)],
)
def test_writer_formats_round_trip(tmp_path, fmt, atol, has_time):
    frames = boxed_frames()
    topology = mdnext.save(frames[0], tmp_path / "top.pdb")
    path = mdnext.save(frames, tmp_path / f"out.{fmt}")
    back = mdnext.load(path, topology=None if fmt in ("xyz", "pdb") else topology)
    assert back.n_frames == frames.n_frames
    np.testing.assert_allclose(back.positions, frames.positions, atol=atol)
    if has_time:
        assert back.dt == pytest.approx(frames.dt, rel=1e-5)
        np.testing.assert_allclose(back.cell, frames.cell, atol=atol)
    if fmt == "xyz":
        np.testing.assert_array_equal(back.species, frames.species)


def test_single_frame_gro_and_pdb_keep_box_and_residues(tmp_path):
    frames = boxed_frames(n_frames=1)
    for fmt, atol in (("gro", 6e-3), ("pdb", 6e-4)):  # GRO: nm with 3 decimals; PDB: Å with 3
        back = mdnext.load(mdnext.save(frames, tmp_path / f"one.{fmt}"))
        np.testing.assert_allclose(back.cell, frames.cell, atol=1e-3)
        np.testing.assert_allclose(back.positions, frames.positions, atol=atol)
        np.testing.assert_array_equal(back.atoms["resnames"], frames.atoms["resnames"])
        np.testing.assert_array_equal(back.atoms["resids"], frames.atoms["resids"])


def test_unknown_dt_is_written_as_one_ps_with_a_warning(tmp_path):
    frames = boxed_frames(dt=None)
    topology = mdnext.save(frames[0], tmp_path / "top.pdb")
    with pytest.warns(UserWarning, match="dt unknown"):
        path = mdnext.save(frames, tmp_path / "nodt.dcd")
    assert mdnext.load(path, topology=topology).dt == pytest.approx(1.0)


def test_gro_refuses_several_frames(tmp_path):
    with pytest.raises(OutputError, match="one frame") as info:
        mdnext.save(boxed_frames(), tmp_path / "many.gro")
    assert "many.gro" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing_behind(tmp_path):
    frames = boxed_frames()
    positions = frames.positions.copy()
    positions[2, 0] = 2e5  # beyond PDB's fixed columns: MDAnalysis fails after writing two frames
    bad = frames.replace(positions=positions)
    with pytest.raises(OutputError) as info:
        mdnext.save(bad, tmp_path / "bad.pdb")
    message = str(info.value)
    assert "bad.pdb" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "keep.pdb"
    existing.write_text("old")
    with pytest.raises(OutputError):
        mdnext.save(bad, existing, overwrite=True)
    assert existing.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pdb"]


# ------------------------------------------------------------------ in-memory Universe


def test_to_universe_with_template_keeps_analysis_working():
    universe = mda.Universe(PSF, DCD)
    frames = mdnext.load(universe)
    copy = to_universe(frames, template=universe)
    assert len(copy.bonds) == len(universe.bonds)
    assert copy.trajectory.n_frames == 98
    assert copy.trajectory.dt == pytest.approx(frames.dt)
    ours = rms.RMSD(copy, select="backbone").run().results.rmsd
    theirs = rms.RMSD(universe, select="backbone").run().results.rmsd
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    back = from_universe(copy)
    np.testing.assert_allclose(back.positions, frames.positions, atol=1e-5)
    np.testing.assert_allclose(back.time, frames.time, rtol=1e-6)
    np.testing.assert_array_equal(back.species, frames.species)
    with pytest.raises(InputError, match="template has 214 atoms but the frames have 3341"):
        to_universe(frames, template=universe.select_atoms("name CA"))


def test_to_universe_without_template_builds_topology_and_keeps_dt_unknown():
    frames = mdnext.load(DCD, topology=PSF)[:5]
    built = to_universe(frames)
    original = mda.Universe(PSF, DCD)
    assert built.residues.n_residues == original.residues.n_residues
    np.testing.assert_array_equal(built.residues.resnames, original.residues.resnames)
    np.testing.assert_array_equal(built.atoms.names, original.atoms.names)
    unknown = from_universe(to_universe(frames.replace(dt=None, time=None)))
    assert unknown.dt is None and unknown.time is None


def test_to_universe_turns_a_general_cell_into_mdanalysis_orientation():
    rng = np.random.default_rng(2)
    cell = np.array([[0.0, 2.5, 2.5], [2.5, 0.0, 2.5], [2.5, 2.5, 0.0]])  # ASE's fcc primitive cell
    frames = mdnext.Frames(positions=rng.uniform(0, 3, (2, 4, 3)), species=["Cu"] * 4, cell=cell, pbc=True, dt=0.5)
    back = from_universe(to_universe(frames))
    assert np.allclose(np.triu(back.cell[0], 1), 0)  # a along x, b in the xy plane

    def distances(p):
        return np.linalg.norm(p[:, :, None] - p[:, None], axis=-1)

    np.testing.assert_allclose(distances(back.positions), distances(frames.positions), atol=1e-5)
    fractional = np.einsum("tni,tij->tnj", frames.positions, np.linalg.inv(frames.cell))
    fractional_back = np.einsum("tni,tij->tnj", back.positions, np.linalg.inv(back.cell))
    np.testing.assert_allclose(fractional_back, fractional, atol=1e-5)


# ------------------------------------------------------------------ bad input


def write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def bad_inputs(tmp: Path) -> dict[str, tuple[str, dict]]:
    """name → (file, load keyword arguments); each must fail with one line naming the file."""
    dcd = Path(DCD).read_bytes()
    xyz_counts = "3\nf1\nC 0 0 0\nC 1 0 0\nC 0 1 0\n4\nf2\nC 0 0 0\nC 1 0 0\nC 0 1 0\nC 0 0 1\n"
    return {
        "truncated dcd": (write_bytes(tmp / "half.dcd", dcd[: len(dcd) // 2]), {"topology": PSF}),
        "garbage dcd": (write_bytes(tmp / "garbage.dcd", np.random.default_rng(0).bytes(5000)), {"topology": PSF}),
        "header-only dcd": (write_bytes(tmp / "header.dcd", dcd[:200]), {"topology": PSF}),
        "garbage after header": (write_bytes(tmp / "tail.dcd", dcd[:356] + b"\x07" * 1000), {"topology": PSF}),
        "xyz atom count changes": (write_bytes(tmp / "counts.xyz", xyz_counts.encode()), {}),
        "truncated xyz": (write_bytes(tmp / "cut.xyz", b"3\nf1\nC 0 0 0\nC 1 0 0\n"), {}),
        "nan coordinates": (write_bytes(tmp / "nan.xyz", b"2\nf1\nC 0 0 nan\nC 1 0 0\n"), {}),
        "empty selection": (DCD, {"topology": PSF, "select": "name XX"}),
        "invalid selection": (DCD, {"topology": PSF, "select": "nme CA"}),
        "psf with xtc": (XTC, {"topology": PSF}),
        "gro with dcd": (DCD, {"topology": GRO}),
        "dcd without topology": (DCD, {}),
        "missing file": (str(tmp / "absent.dcd"), {"topology": PSF}),
    }


EXPECTED = {
    "truncated dcd": "truncated or corrupt DCD",
    "garbage dcd": "not a DCD file",
    "header-only dcd": "truncated DCD header",
    "garbage after header": "No frames",
    "xyz atom count changes": "frame 1 has 4 atoms but frame 0 has 3",
    "truncated xyz": "truncated",
    "nan coordinates": "non-finite",
    "empty selection": "'name XX' matches no atoms",
    "invalid selection": "invalid selection 'nme CA'",
    "psf with xtc": "trajectory has 47681 atoms but topology",
    "gro with dcd": "trajectory has 3341 atoms but topology",
    "dcd without topology": "DCD needs a topology (--topology)",
    "missing file": "no such file",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input_is_one_line_naming_the_file(tmp_path, case):
    path, kwargs = bad_inputs(tmp_path)[case]
    with pytest.raises(InputError) as info:
        mdnext.load(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert Path(path).name in message
    assert EXPECTED[case] in message
