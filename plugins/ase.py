"""ASE adapter, I/O part: read and write trajectories through ``ase.io``.

Routing (format key → plugin; the highest priority that accepts the file wins, see
:mod:`mdnext.io`):

* ``extxyz`` and ``traj``: ASE reads (priority 5) and writes (priority 10).
* ``xyz``, reading: ASE (priority 5) takes the file only when its second line is an
  extended-XYZ comment (``Lattice=`` or ``Properties=`` key=value pairs); plain XYZ is left to
  MDAnalysis (priority 0).
* ``xyz``, writing: MDAnalysis (priority 10) writes plain XYZ; ASE has priority 0 here, and
  ``format="ase:xyz"`` writes extended XYZ.
* every other extension ``ase.io`` reads or writes (cif, poscar, cube, pdb, gro, dcd, …):
  priority -5, so MDAnalysis (or any other plugin) wins where it handles the same format.
  Force ASE with ``"ase:<format>"``, e.g. ``"ase:pdb"``. When the key is the file's own
  extension, ASE guesses the exact format from the name and content; otherwise the key maps to
  the ``ase.io`` format that owns that extension (``"poscar"`` → ``"vasp"``).

Units: positions and cells in Å, masses in amu (ASE's own units). Time is stored per frame in
``atoms.info``: the writer puts the frame's time in ps under ``"time_ps"`` and the time between
frames in ps under ``"dt_ps"`` (both written with full precision by extended XYZ and .traj, so dt
survives a round trip exactly). The reader takes dt from ``"dt_ps"``, else from uniform
differences of ``"time_ps"``, else from uniform differences of ``info["time"]`` in ASE's time
unit (1 unit = 1/``ase.units.fs`` fs ≈ 10.18 fs), else leaves it unknown.

Selection (``select=``) for files read by ASE: a comma-separated list of element symbols
(``"Ar"``, ``"C,O"``) or a Python-style slice of atom indices (``"0:10"``, ``"::2"``, ``"-5:"``).

The conversions :func:`frames_from_atoms` and :func:`atoms_from_frames` are public: the ASE
calculator and MD driver build on them.
"""

from __future__ import annotations

import bz2
import gzip
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms, units
from ase.data import atomic_numbers
from ase.io.formats import ioformats
from ase.io.trajectory import TrajectoryReader

from mdnext.errors import InputError, MDNextError, OutputError, first_line
from mdnext.frames import Frames
from mdnext.io import format_from_path
from mdnext.plugin import ReaderPlugin, WriterPlugin

#: ``atoms.info`` key of a frame's time in ps (written and read by mdnext).
TIME_KEY = "time_ps"
#: ``atoms.info`` key of the time between frames in ps (written and read by mdnext).
DT_KEY = "dt_ps"
#: ``atoms.info`` key of a frame's time in ASE's time unit (read only).
ASE_TIME_KEY = "time"
#: Picoseconds per ASE time unit (≈ 0.01018).
PS_PER_ASE_TIME = 1e-3 / units.fs

#: The formats ASE is the first choice for, and the ``ase.io`` format names they map to.
MAIN_FORMATS = {"extxyz": "extxyz", "xyz": "extxyz", "traj": "traj"}
#: Priority of the ASE plugins for every format outside :data:`MAIN_FORMATS`.
OTHER_PRIORITY = -5

_EXTXYZ_COMMENT = re.compile(r"(?:^|\s)(?:Lattice|Properties)\s*=")
_SLICE = re.compile(r"^\s*([+-]?\d+)?\s*:\s*([+-]?\d+)?\s*(?::\s*([+-]?\d+)?\s*)?$")


def _formats_by_extension(capability: str) -> dict[str, str]:
    """Lower-case extension → ``ase.io`` format name, for formats with ``capability``."""
    table: dict[str, str] = {}
    for name, io_format in ioformats.items():
        if getattr(io_format, capability):
            for extension in io_format.extensions:
                table.setdefault(extension.lower(), name)
    table.update(MAIN_FORMATS)
    return table


#: Format keys the reader handles → ``ase.io`` format names.
READ_FORMATS = _formats_by_extension("can_read")
#: Format keys the writer handles → ``ase.io`` format names.
WRITE_FORMATS = _formats_by_extension("can_write")


def is_extended_xyz(path: str | Path) -> bool:
    """Whether the second line of an XYZ file (.gz/.bz2 too) is an extended-XYZ comment."""
    path = Path(path)
    opener: Any = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix.lower(), open)
    try:
        with opener(path, "rt", errors="replace") as handle:
            handle.readline(1 << 16)
            comment = handle.readline(1 << 16)
    except (OSError, EOFError, ValueError):
        return False
    return bool(_EXTXYZ_COMMENT.search(comment))


def _info_float(atoms: Atoms, key: str) -> float | None:
    """``atoms.info[key]`` as a float, or None when missing or not a number."""
    value = atoms.info.get(key)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value)


def _times(images: Sequence[Atoms]) -> np.ndarray | None:
    """(T,) time stamps in ps from ``info["time_ps"]`` or ``info["time"]`` (ASE units), or None."""
    for key, scale in ((TIME_KEY, 1.0), (ASE_TIME_KEY, PS_PER_ASE_TIME)):
        values = [_info_float(atoms, key) for atoms in images]
        if all(v is not None for v in values):
            return np.asarray(values, dtype=np.float64) * scale
    return None


def _uniform_step(time: np.ndarray) -> float | None:
    """The step of evenly spaced, increasing ``time`` (relative tolerance 1e-6), else None."""
    if time.size < 2:
        return None
    steps = np.diff(time)
    step = (time[-1] - time[0]) / (time.size - 1)
    if step <= 0 or np.max(np.abs(steps - step)) > 1e-6 * step:
        return None
    return float(step)


def frames_from_atoms(images: Sequence[Atoms], dt: float | None = None) -> Frames:
    """Convert ASE images of one fixed set of atoms to :class:`Frames`.

    Args:
        images: T ``Atoms`` with the same atoms in the same order.
        dt: Time between images in ps; overrides (and drops) the times found in ``info``.
            Default: from ``info`` (see the module docstring), else unknown.

    Returns:
        Frames with positions (T, N, 3) Å, species = chemical symbols, masses (N,) amu, cell
        (T, 3, 3) Å when any direction is periodic or any cell is nonzero (else None), pbc of the
        first image, and ``atoms["charges"]`` when the initial charges are not all zero.

    Raises:
        InputError: No images, or the atom count or elements change between images.
    """
    images = list(images)
    if not images:
        raise InputError("no ASE images (Atoms) to read")
    first = images[0]
    for index, atoms in enumerate(images[1:], start=1):
        if len(atoms) != len(first):
            raise InputError(
                f"frame {index} has {len(atoms)} atoms but frame 0 has {len(first)}; "
                "mdnext needs the same atoms in every frame"
            )
        if not np.array_equal(atoms.numbers, first.numbers):
            raise InputError(
                f"frame {index} has other elements than frame 0; mdnext needs the same atoms in every frame"
            )
    positions = np.stack([np.asarray(atoms.positions, dtype=np.float64) for atoms in images])
    cells = np.stack([np.asarray(atoms.cell.array, dtype=np.float64) for atoms in images])
    pbc = np.asarray(first.pbc, dtype=bool)
    charges = np.asarray(first.get_initial_charges(), dtype=np.float64)
    if dt is None:
        time = _times(images)
        dt = _info_float(first, DT_KEY)
        if dt is None and time is not None:
            dt = _uniform_step(time)
    else:
        time = None
    return Frames(
        positions=positions,
        species=np.asarray(first.get_chemical_symbols()),
        masses=first.get_masses(),
        cell=cells if pbc.any() or cells.any() else None,
        pbc=pbc,
        dt=dt,
        time=time,
        atoms={"charges": charges} if charges.any() else {},
    )


def _chemical_symbols(frames: Frames) -> list[str]:
    """Element symbols for ASE: the species, else ``atoms["elements"]``; OutputError if neither."""
    species = [str(s) for s in frames.species]
    if all(s in atomic_numbers for s in species):
        return species
    elements = frames.atoms.get("elements")
    if elements is not None:
        symbols = [str(e).strip().capitalize() for e in elements]
        if all(s in atomic_numbers for s in symbols):
            return symbols
    bad = sorted({s for s in species if s not in atomic_numbers})
    raise OutputError(
        f"species {', '.join(bad[:5])} are not chemical element symbols, which ASE formats need "
        "(and the frames have no element information)"
    )


def atoms_from_frames(frames: Frames) -> list[Atoms]:
    """Convert :class:`Frames` to one ``Atoms`` per frame.

    Each image has the frame's positions (Å), cell (Å) and pbc, masses (amu) where known and
    different from ASE's defaults, initial charges from ``atoms["charges"]``, and in ``info`` the
    frame's time in ps (``"time_ps"``) and dt in ps (``"dt_ps"``) where known.

    Raises:
        OutputError: The species are not element symbols (and no ``elements`` are known).
    """
    template = Atoms(symbols=_chemical_symbols(frames), pbc=frames.pbc)
    if frames.masses is not None and not np.array_equal(frames.masses, template.get_masses()):
        template.set_masses(frames.masses)
    charges = frames.atoms.get("charges")
    if charges is not None and np.asarray(charges, dtype=np.float64).any():
        template.set_initial_charges(np.asarray(charges, dtype=np.float64))
    times = frames.times
    images = []
    for index in range(frames.n_frames):
        atoms = template.copy()
        atoms.positions = np.array(frames.positions[index], dtype=np.float64)
        if frames.cell is not None:
            atoms.cell = frames.cell[index]
        if times is not None:
            atoms.info[TIME_KEY] = float(times[index])
        if frames.dt is not None:
            atoms.info[DT_KEY] = float(frames.dt)
        images.append(atoms)
    return images


def selection_indices(species: np.ndarray, select: str) -> np.ndarray:
    """Atom indices chosen by ``select``: element symbols ``"C,O"`` or an index slice ``"0:10"``.

    Raises:
        InputError: ``select`` is neither form, or it matches no atoms.
    """
    match = _SLICE.match(select)
    if match:
        start, stop, step = (int(g) if g else None for g in match.groups())
        if step == 0:
            raise InputError(f"select {select!r}: slice step cannot be zero")
        indices = np.arange(len(species))[slice(start, stop, step)]
    else:
        symbols = [s.strip() for s in select.split(",")]
        unknown = [s for s in symbols if s not in atomic_numbers]
        if unknown:
            raise InputError(
                f"select {select!r}: files read by ASE take element symbols ('C,O') or an index slice "
                f"('0:10'), and {unknown[0]!r} is neither"
            )
        indices = np.flatnonzero(np.isin(species, symbols))
    if indices.size == 0:
        raise InputError(f"select {select!r} matches no atoms")
    return indices


def _select(frames: Frames, select: str | None) -> Frames:
    return frames if select is None else frames.select_atoms(selection_indices(frames.species, select))


class ASEReader(ReaderPlugin):
    """Reads extended XYZ, ASE .traj and every other format ``ase.io`` reads (see the module)."""

    name = "ase"
    formats = frozenset(READ_FORMATS)
    priority = 5

    def priority_for(self, fmt: str) -> int:
        return self.priority if fmt in MAIN_FORMATS else OTHER_PRIORITY

    def accepts(self, path: Path, fmt: str) -> bool:
        """Everything, except ``.xyz`` files whose comment line is not extended XYZ."""
        return fmt != "xyz" or is_extended_xyz(path)

    def read(self, path: Path, fmt: str, *, topology: Any = None, select: str | None = None) -> Frames:
        """Read all images of ``path``; positions in Å, time in ps."""
        path = Path(path)
        if topology is not None:
            raise InputError(f"{path}: files read by ASE carry their own atoms; a topology does not apply")
        try:
            images = ase.io.read(path, index=":", format=self._ase_format(path, fmt))
        except Exception as exc:  # ASE's own errors: one line naming the file
            raise InputError(f"{path}: cannot read as {fmt} with ASE: {first_line(exc)}") from exc
        if isinstance(images, Atoms):
            images = [images]
        if not images:
            raise InputError(f"{path}: no frames found (empty file?)")
        try:
            frames = _select(frames_from_atoms(images), select)
        except MDNextError as exc:
            raise InputError(f"{path}: {first_line(exc)}") from exc
        return frames.replace(source={"path": str(path), "format": fmt, "reader": self.name})

    @staticmethod
    def _ase_format(path: Path, fmt: str) -> str | None:
        """The ``ase.io`` format name; None lets ASE guess from the file's own extension and content."""
        if fmt in MAIN_FORMATS:
            return MAIN_FORMATS[fmt]
        if format_from_path(path) == fmt:
            return None
        return READ_FORMATS[fmt]

    def read_object(self, obj: Any, select: str | None = None) -> Frames | None:
        """Convert an ``Atoms``, a list/tuple of them or an open ASE ``Trajectory``; else None."""
        if isinstance(obj, Atoms):
            images = [obj]
        elif isinstance(obj, TrajectoryReader):
            images = list(obj)
        elif isinstance(obj, (list, tuple)) and obj and all(isinstance(a, Atoms) for a in obj):
            images = list(obj)
        else:
            return None
        frames = _select(frames_from_atoms(images), select)
        return frames.replace(source={"reader": self.name, "object": type(obj).__name__})


class ASEWriter(WriterPlugin):
    """Writes extended XYZ, ASE .traj and every other format ``ase.io`` writes (see the module)."""

    name = "ase"
    formats = frozenset(WRITE_FORMATS)
    priority = 10

    def priority_for(self, fmt: str) -> int:
        if fmt == "xyz":
            return 0
        return self.priority if fmt in MAIN_FORMATS else OTHER_PRIORITY

    def write(self, frames: Frames, path: Path, fmt: str) -> None:
        """Write all frames to ``path`` with ``ase.io.write`` (the format is always explicit)."""
        ase_format = WRITE_FORMATS[fmt]
        if ioformats[ase_format].single and frames.n_frames > 1:
            raise OutputError(
                f"format {fmt} ({ase_format}) holds one frame, got {frames.n_frames}; save one frame, e.g. frames[-1]"
            )
        ase.io.write(path, atoms_from_frames(frames), format=ase_format)
