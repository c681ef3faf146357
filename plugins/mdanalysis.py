"""MDAnalysis adapter: every trajectory format MDAnalysis reads, and DCD/XYZ/PDB/GRO/XTC/TRR/NC out.

Reading (:class:`MDAnalysisReader`, :func:`from_universe`):

* positions: float64 Å, every frame, in the order of the atoms (or of the selection).
* cell: (T, 3, 3) rows from ``ts.dimensions`` via ``triclinic_vectors`` (a along x, b in
  the xy plane); None when no frame has a box, and then ``pbc`` is all False. A box means
  periodic along all three directions (MDAnalysis has no per-direction flags). A frame
  without a box among frames with one is an error.
* dt (ps): ``trajectory.dt`` when the reader knows it, None where MDAnalysis only guesses:
  it warns "Reader has no dt information, set to 1.0 ps" (XYZ, PDB, GRO, CRD, LAMMPS dumps,
  …) or reports a dt that is not a positive finite number (e.g. 0 for an AMBER NetCDF file
  whose frames all carry time 0). ``time`` is ``ts.time`` of every frame when dt is known,
  else None.
* species: the first of the topology's ``elements``, ``types``, ``names`` in which every
  atom has a non-empty value; ``"X"`` for all atoms when none qualifies.
* masses: the topology's masses (read or guessed by MDAnalysis) when every one is
  positive, else None (MDAnalysis writes 0 where it cannot guess one).
* atoms: names, elements, types, resnames, resids, segids, charges, where present.

Writing (:class:`MDAnalysisWriter`, :func:`to_universe`): an in-memory Universe
(``MemoryReader``) is written frame by frame with ``mda.Writer``. Cells are stored as
``[a, b, c, alpha, beta, gamma]``; a cell not in MDAnalysis's orientation (a along x, b in
the xy plane) is first turned rigidly into it, positions with it (a left-handed cell is
mirrored), so distances and fractional coordinates are kept. Time stamps are ``time[0] + i * dt``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import MDAnalysis as mda
import numpy as np
from MDAnalysis.coordinates.core import get_reader_for
from MDAnalysis.coordinates.memory import MemoryReader
from MDAnalysis.core.groups import AtomGroup, UpdatingAtomGroup
from MDAnalysis.exceptions import SelectionError
from MDAnalysis.guesser.tables import SYMB2Z
from MDAnalysis.lib.mdamath import triclinic_box, triclinic_vectors
from mdnext.plugins.file_checks import check_dcd_frames, check_dcd_header, check_xyz

from mdnext.errors import InputError, MDNextError, OutputError, first_line
from mdnext.frames import Frames
from mdnext.plugin import ReaderPlugin, WriterPlugin

#: MDAnalysis reader keys that are not file formats (in-memory objects, streams, chains).
NOT_FILE_FORMATS = frozenset(
    {"chain", "memory", "chemfiles", "imd", "openmmapp", "openmmsimulation", "parmed", "rdkit"}
)
#: The message MDAnalysis warns with when it makes up dt = 1 ps.
NO_DT_WARNING = "Reader has no dt information"
#: MDAnalysis 2.x announces on every DCD opened that 3.0 will change how its timesteps are
#: copied; mdnext copies the positions of each frame, so the change does not concern it.
DCD_TIMESTEP_WARNING = "DCDReader currently makes independent timesteps"
#: Species given to atoms whose topology has no elements, types or names.
UNKNOWN_SPECIES = "X"
#: MDAnalysis writer warnings about things Frames never carry (no box; PDB-only columns).
EXPECTED_WRITER_WARNINGS = (
    "No dimensions set for current frame",
    "Found no information for attr: '(altLocs|icodes|chainIDs|occupancies|tempfactors|record_types|formalcharges)'",
    "Found missing chainIDs",
)
#: Largest difference (Å) between a cell and its MDAnalysis orientation that is not rotated.
CELL_TOLERANCE = 1e-4


def _reader_formats() -> frozenset[str]:
    keys = {key.lower() for key in mda._READERS}
    return frozenset(key for key in keys if "." not in key and key not in NOT_FILE_FORMATS)


# --------------------------------------------------------------------------- reading


class MDAnalysisReader(ReaderPlugin):
    """Reads every coordinate/trajectory file format MDAnalysis knows."""

    name = "mdanalysis"
    formats = _reader_formats()
    priority = 0

    def read(self, path: Path, fmt: str, *, topology: Any = None, select: str | None = None) -> Frames:
        """Read ``path`` (with ``topology`` for formats without atoms); see the module doc."""
        return from_universe(_open(path, fmt, topology), select=select)

    def read_chunks(self, path: Path, fmt: str, *, topology: Any = None, select: str | None = None,
                    chunk_frames: int = 256) -> Iterator[Frames]:
        """Read ``path`` in pieces of at most ``chunk_frames`` frames, one pass over the file."""
        atoms = _selected_atoms(_open(path, fmt, topology), select)
        trajectory = atoms.universe.trajectory
        for start in range(0, trajectory.n_frames, int(chunk_frames)):
            yield _frames_of(atoms, trajectory, select, start, min(start + int(chunk_frames), trajectory.n_frames))

    def read_object(self, obj: Any, select: str | None = None) -> Frames | None:
        """Convert an MDAnalysis ``Universe`` or ``AtomGroup``; None for anything else."""
        if not isinstance(obj, (mda.Universe, AtomGroup)):
            return None
        return from_universe(obj, select=select)


def _open(path: Path, fmt: str, topology: Any) -> mda.Universe:
    """A Universe for ``path`` (and ``topology``), after the format's own sanity checks."""
    key = fmt.upper()
    if key == "XYZ":
        check_xyz(path)
    elif key == "DCD":
        check_dcd_header(path)
    if topology is None:
        if key not in mda._PARSERS:
            raise InputError(f"{path}: {key} needs a topology (--topology)")
        universe = _universe(path, "read", str(path), format=key, topology_format=key)
    else:
        with warnings.catch_warnings():  # a topology alone (PSF, …) has no coordinates: expected
            warnings.filterwarnings("ignore", message="No coordinate reader found")
            universe = _universe(topology, "read topology", str(topology))
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=DCD_TIMESTEP_WARNING)
                universe.load_new(str(path), format=key)
        except Exception as exc:
            raise _trajectory_error(path, key, topology, universe, exc) from exc
    if key == "DCD":
        check_dcd_frames(path, universe.trajectory)
    return universe


def _universe(path: Any, doing: str, *args: Any, **kwargs: Any) -> mda.Universe:
    """``mda.Universe(*args, **kwargs)``; a failure becomes one line naming ``path``."""
    try:
        return mda.Universe(*args, **kwargs)
    except Exception as exc:
        raise InputError(f"{path}: cannot {doing} with MDAnalysis: {first_line(exc)}") from exc


def _trajectory_error(path: Path, key: str, topology: Any, universe: mda.Universe, exc: Exception) -> InputError:
    """One line for a trajectory that does not load onto its topology."""
    n_top = universe.atoms.n_atoms
    if isinstance(exc, ValueError) and "number of atoms" in str(exc):
        try:
            reader = get_reader_for(str(path), format=key)(str(path))
            n_traj = reader.n_atoms
            reader.close()
        except Exception:  # fall back to MDAnalysis's own words below
            n_traj = None
        if n_traj is not None and n_traj != n_top:
            return InputError(f"{path}: trajectory has {n_traj} atoms but topology {topology} has {n_top}")
    return InputError(f"{path}: cannot read as {key} with MDAnalysis: {first_line(exc)}")


def from_universe(obj: mda.Universe | AtomGroup, select: str | None = None) -> Frames:
    """Every frame of a Universe or AtomGroup (optionally narrowed by ``select``) as Frames.

    The trajectory is iterated once and left at the frame it was on. See the module
    docstring for the species, masses, cell and dt rules.

    Args:
        obj: An MDAnalysis ``Universe`` or (static) ``AtomGroup``.
        select: MDAnalysis selection string applied to ``obj``'s atoms.

    Returns:
        Frames with positions (T, N, 3) float64 Å, cell (T, 3, 3) Å or None, dt in ps or None.

    Raises:
        InputError: Unknown object, bad or empty selection, unreadable or inconsistent frames.
    """
    atoms = _selected_atoms(obj, select)
    trajectory = atoms.universe.trajectory
    return _frames_of(atoms, trajectory, select, 0, trajectory.n_frames)


def _selected_atoms(obj: mda.Universe | AtomGroup, select: str | None) -> AtomGroup:
    """The atoms of ``obj`` narrowed by ``select``; refuses empty, updating or coordinate-less groups."""
    if isinstance(obj, UpdatingAtomGroup):
        raise InputError("an updating AtomGroup changes its atoms between frames; pass group.atoms to freeze it")
    if not isinstance(obj, (mda.Universe, AtomGroup)):
        raise InputError(f"expected an MDAnalysis Universe or AtomGroup, got {type(obj).__name__}")
    atoms = obj.atoms
    if select is not None:
        try:
            atoms = atoms.select_atoms(select)
        except (SelectionError, ValueError, TypeError) as exc:
            raise InputError(f"invalid selection {select!r}: {first_line(exc)}") from exc
        if atoms.n_atoms == 0:
            raise InputError(f"selection {select!r} matches no atoms")
    if atoms.n_atoms == 0:
        raise InputError("the AtomGroup has no atoms")
    if getattr(atoms.universe, "trajectory", None) is None:
        raise InputError("the Universe has no coordinates (no trajectory loaded)")
    return atoms


def _frames_of(atoms: AtomGroup, trajectory: Any, select: str | None, start: int, stop: int) -> Frames:
    """Frames ``start`` to ``stop`` (exclusive) of ``atoms``, read in one pass."""
    positions, dims, times = _iterate(atoms, trajectory, start, stop)
    dt = _known_dt(trajectory)
    cell = _cells(dims)
    time = times if dt is not None and np.all(np.isfinite(times)) else None
    return Frames(
        positions=positions,
        species=_species(atoms),
        masses=_masses(atoms),
        cell=cell,
        pbc=np.full(3, cell is not None),
        dt=dt,
        time=time,
        atoms=_atom_fields(atoms),
        source=_source(trajectory, select),
        bonds=_bonds(atoms),
    )


def _source(trajectory: Any, select: str | None) -> dict[str, Any]:
    source: dict[str, Any] = {"reader": "mdanalysis"}
    if isinstance(trajectory.filename, str):
        source["path"] = trajectory.filename
    if select is not None:
        source["select"] = select
    return source


def _iterate(atoms: AtomGroup, trajectory: Any, first: int, stop: int) -> tuple[np.ndarray, list[Any], np.ndarray]:
    """Positions (T, N, 3) float64, dimensions and ts.time of frames ``first`` to ``stop``, in one pass."""
    n_frames = stop - first
    positions = np.empty((n_frames, atoms.n_atoms, 3), dtype=np.float64)
    dims: list[Any] = []
    times = np.full(n_frames, np.nan)
    original = trajectory.ts.frame
    done = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NO_DT_WARNING)  # ts.time without dt: not used then
        try:
            for ts in trajectory[first:stop] if (first, stop) != (0, trajectory.n_frames) else trajectory:
                if done == n_frames:
                    raise InputError(f"trajectory holds more frames than the {n_frames} it announced")
                positions[done] = atoms.positions
                dims.append(None if ts.dimensions is None else np.array(ts.dimensions, dtype=np.float64))
                times[done] = ts.time
                done += 1
        except MDNextError:
            raise
        except Exception as exc:
            raise InputError(f"cannot read frame {first + done}: {first_line(exc)}") from exc
        finally:
            if 0 <= original < trajectory.n_frames:
                try:
                    trajectory[original]
                except Exception:  # leaving the reader elsewhere must not hide the real outcome
                    pass
    if done != n_frames:
        raise InputError(f"trajectory ended after {first + done} of {stop} frames (truncated or corrupt file?)")
    return positions, dims, times


def _known_dt(trajectory: Any) -> float | None:
    """``trajectory.dt`` in ps, or None where MDAnalysis only makes one up (see module doc)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=NO_DT_WARNING)  # the made-up 1 ps becomes an exception
        try:
            dt = float(trajectory.dt)
        except Exception:  # that warning, or a reader that cannot tell (e.g. one-frame XTC)
            return None
    return dt if np.isfinite(dt) and dt > 0 else None


def _cells(dims: list[Any]) -> np.ndarray | None:
    """(T, 3, 3) float64 cell rows, or None when no frame has a box."""
    cells = np.zeros((len(dims), 3, 3))
    has_box = np.zeros(len(dims), dtype=bool)
    for i, dimensions in enumerate(dims):
        if dimensions is not None and np.all(np.isfinite(dimensions)):
            cells[i] = triclinic_vectors(dimensions, dtype=np.float64)
            has_box[i] = bool(np.any(cells[i]))  # MDAnalysis gives zeros for an invalid box
    if not has_box.any():
        return None
    if not has_box.all():
        missing = int(np.flatnonzero(~has_box)[0])
        raise InputError(f"frame {missing} has no (valid) box while frame {int(np.flatnonzero(has_box)[0])} has one")
    return cells


def _attr(atoms: AtomGroup, field: str) -> np.ndarray | None:
    try:
        return np.asarray(getattr(atoms, field))
    except AttributeError:  # MDAnalysis's NoDataError is an AttributeError
        return None


def _species(atoms: AtomGroup) -> np.ndarray:
    for field in ("elements", "types", "names"):
        values = _attr(atoms, field)
        if values is not None:
            values = values.astype(str)
            if all(value.strip() for value in values):
                return np.char.strip(values)
    return np.full(atoms.n_atoms, UNKNOWN_SPECIES)


def _masses(atoms: AtomGroup) -> np.ndarray | None:
    masses = _attr(atoms, "masses")
    if masses is None:
        return None
    masses = masses.astype(np.float64)
    return masses if np.all(np.isfinite(masses)) and np.all(masses > 0) else None


def _atom_fields(atoms: AtomGroup) -> dict[str, np.ndarray]:
    fields = {}
    for field in ("names", "elements", "types", "resnames", "segids"):
        values = _attr(atoms, field)
        if values is not None:
            fields[field] = values.astype(str)
    resids = _attr(atoms, "resids")
    if resids is not None:
        fields["resids"] = resids.astype(np.int64)
    charges = _attr(atoms, "charges")
    if charges is not None:
        fields["charges"] = charges.astype(np.float64)
    return fields


def _bonds(atoms: AtomGroup) -> np.ndarray | None:
    """(M, 2) bonds between the atoms of the group, numbered by position in it; None where there are none."""
    try:
        pairs = atoms.intra_bonds.indices
    except AttributeError:  # no bonds in the topology (MDAnalysis's NoDataError is an AttributeError)
        return None
    if len(pairs) == 0:
        return None
    position = np.full(atoms.universe.atoms.n_atoms, -1, dtype=np.int64)
    position[atoms.indices] = np.arange(atoms.n_atoms)
    return position[np.asarray(pairs, dtype=np.int64).reshape(-1, 2)]


# --------------------------------------------------------------------------- writing


class MDAnalysisWriter(WriterPlugin):
    """Writes DCD, XYZ, PDB, GRO, XTC, TRR and AMBER NetCDF with MDAnalysis.

    * dt: DCD, XTC, TRR and NetCDF store time. With ``frames.dt`` unknown they are written
      with 1 ps between frames (the formats cannot say "unknown") and a warning says so.
      DCD's first-frame time is kept (as ``istart``) when it is a whole number of dt.
    * XYZ: the first column is the species (what reading the file back gives as species).
    * GRO holds one frame: several frames are an error.
    """

    name = "mdanalysis"
    formats = frozenset({"dcd", "xyz", "pdb", "gro", "xtc", "trr", "nc", "ncdf"})
    priority = 10

    def write(self, frames: Frames, path: Path, fmt: str) -> None:
        key = fmt.upper()
        if frames.n_frames > 1 and key not in mda._MULTIFRAME_WRITERS:
            raise OutputError(
                f"{fmt} holds one frame but there are {frames.n_frames}; save one frame or use another format"
            )
        universe = to_universe(frames)
        if key == "XYZ":
            _set_attr(universe, "elements", frames.species)
        options: dict[str, Any] = {}
        if key in {"DCD", "XTC", "TRR", "NC", "NCDF"} and frames.dt is None:
            warnings.warn(f"{path.name}: dt unknown; the {key} file will claim 1 ps between frames", stacklevel=2)
        if key == "DCD":
            options["dt"] = 1.0 if frames.dt is None else frames.dt
            options["istart"] = _dcd_istart(frames)
        if key == "PDB":
            options["multiframe"] = frames.n_frames > 1
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NO_DT_WARNING)  # warned above
            for message in EXPECTED_WRITER_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            with mda.Writer(str(path), n_atoms=frames.n_atoms, format=key, **options) as writer:
                for _ in universe.trajectory:
                    writer.write(universe.atoms)


def _dcd_istart(frames: Frames) -> int:
    """DCD's first-frame time in steps of dt (its ``istart`` with ``nsavc`` = 1), or 0."""
    times = frames.times
    if frames.dt is None or times is None:
        return 0
    steps = times[0] / frames.dt
    return int(round(steps)) if abs(steps - round(steps)) < 1e-6 and abs(steps) < 2**31 else 0


def to_universe(frames: Frames, template: mda.Universe | AtomGroup | None = None) -> mda.Universe:
    """An in-memory MDAnalysis Universe (``MemoryReader``) holding every frame.

    Args:
        frames: The frames; positions are stored as float32 (MDAnalysis's precision).
        template: A Universe or AtomGroup whose topology (names, residues, bonds, …) the new
            Universe copies, e.g. the one the frames were read from, so analysis such as
            RMSD/RMSF continues on the same atoms. Its atom count must match.

    Returns:
        A Universe with dimensions per frame (when the frames have a cell), ``dt`` and time
        stamps ``time[0] + i * dt`` in ps. Without a template the topology is built from
        ``frames.atoms``, species and masses: names and types default to the species,
        elements are set when they (or the species) are element symbols, residues come from
        resids/resnames/segids (else one residue "UNK"). With ``frames.dt`` unknown the
        trajectory has no dt and MDAnalysis warns (and assumes 1 ps) when asked for one.

    Raises:
        InputError: A template that is not an MDAnalysis object or has another atom count.
    """
    if template is None:
        universe = _empty_universe(frames)
    else:
        if isinstance(template, UpdatingAtomGroup):
            template = template.atoms
        if not isinstance(template, (mda.Universe, AtomGroup)):
            raise InputError(f"template must be an MDAnalysis Universe or AtomGroup, got {type(template).__name__}")
        if template.atoms.n_atoms != frames.n_atoms:
            raise InputError(f"template has {template.atoms.n_atoms} atoms but the frames have {frames.n_atoms}")
        universe = mda.Merge(template.atoms)
    positions, dimensions = _mdanalysis_box(frames)
    options: dict[str, Any] = {}
    if frames.dt is not None:
        times = frames.times
        options = {"dt": frames.dt, "time_offset": float(times[0])}
    universe.load_new(positions.astype(np.float32), format=MemoryReader, dimensions=dimensions, **options)
    if frames.dt is None:
        del universe.trajectory.ts.data["dt"]  # unknown, not MemoryReader's default 1 ps
    return universe


def _mdanalysis_box(frames: Frames) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions (T, N, 3) and dimensions (T, 6), rotated where a cell is not in MDAnalysis's orientation."""
    positions = np.asarray(frames.positions, dtype=np.float64)
    if frames.cell is None:
        return positions, None
    cell = frames.cell
    dimensions = np.array([triclinic_box(*vectors) for vectors in cell], dtype=np.float64)
    valid = np.any(dimensions != 0, axis=1)
    canonical = np.array([triclinic_vectors(d, dtype=np.float64) for d in dimensions])
    rotate = valid & (np.abs(canonical - cell).max(axis=(1, 2)) > CELL_TOLERANCE)
    if rotate.any():  # cell @ R = canonical with R orthogonal: rotate the positions alike
        rotation = np.linalg.solve(cell[rotate], canonical[rotate])
        positions = positions.copy()
        positions[rotate] = np.einsum("tni,tij->tnj", positions[rotate], rotation)
    return positions, dimensions


def _is_element(values: np.ndarray) -> bool:
    return all(value in SYMB2Z for value in values)


def _empty_universe(frames: Frames) -> mda.Universe:
    """A Universe without coordinates whose topology comes from ``frames``."""
    n_atoms = frames.n_atoms
    atoms = frames.atoms
    species = frames.species.astype(str)
    keys = [np.asarray(atoms[field]).astype(str) for field in ("segids", "resids", "resnames") if field in atoms]
    new_residue = np.zeros(n_atoms, dtype=bool)
    new_residue[0] = True
    for values in keys:
        new_residue[1:] |= values[1:] != values[:-1]
    first_atoms = np.flatnonzero(new_residue)
    atom_resindex = np.cumsum(new_residue) - 1
    if "segids" in atoms:
        residue_segids = np.asarray(atoms["segids"]).astype(str)[first_atoms]
        new_segment = np.ones(len(first_atoms), dtype=bool)
        new_segment[1:] = residue_segids[1:] != residue_segids[:-1]
        segids = residue_segids[new_segment]
    else:
        new_segment = np.zeros(len(first_atoms), dtype=bool)
        new_segment[0] = True
        segids = np.array(["SYSTEM"])
    universe = mda.Universe.empty(
        n_atoms,
        n_residues=len(first_atoms),
        n_segments=len(segids),
        atom_resindex=atom_resindex,
        residue_segindex=np.cumsum(new_segment) - 1,
        trajectory=False,
    )
    universe.add_TopologyAttr("names", np.asarray(atoms.get("names", species)).astype(str))
    universe.add_TopologyAttr("types", np.asarray(atoms.get("types", species)).astype(str))
    elements = np.asarray(atoms["elements"]).astype(str) if "elements" in atoms else None
    if elements is None or not _is_element(elements):
        elements = species if _is_element(species) else None
    if elements is not None:
        universe.add_TopologyAttr("elements", elements)
    resnames = np.asarray(atoms["resnames"]).astype(str)[first_atoms] if "resnames" in atoms else None
    universe.add_TopologyAttr("resnames", np.full(len(first_atoms), "UNK") if resnames is None else resnames)
    resids = np.asarray(atoms["resids"]).astype(np.int64)[first_atoms] if "resids" in atoms else None
    universe.add_TopologyAttr("resids", np.arange(1, len(first_atoms) + 1) if resids is None else resids)
    universe.add_TopologyAttr("segids", segids)
    if frames.masses is not None:
        universe.add_TopologyAttr("masses", frames.masses)
    if "charges" in atoms:
        universe.add_TopologyAttr("charges", np.asarray(atoms["charges"], dtype=np.float64))
    if frames.bonds is not None:  # PDB writes them as CONECT records
        universe.add_TopologyAttr("bonds", [tuple(pair) for pair in frames.bonds.tolist()])
    return universe


def _set_attr(universe: mda.Universe, field: str, values: np.ndarray) -> None:
    if hasattr(universe.atoms, field):
        setattr(universe.atoms, field, values)
    else:
        universe.add_TopologyAttr(field, values)
