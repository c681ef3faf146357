"""Sanity checks on trajectory files before (and after) MDAnalysis reads them.

MDAnalysis reads some broken files without complaint: an XYZ file whose atom count changes or
whose last frame is cut short, a DCD with a corrupt header or a truncated last frame. These
checks turn each into one :class:`~mdnext.errors.InputError` line naming the file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from MDAnalysis.lib.util import anyopen

from mdnext.errors import InputError


def check_xyz(path: Path) -> None:
    """Check that every frame of an XYZ file is complete and has the first frame's atom count.

    MDAnalysis reads each frame with the first frame's count and would misread the rest.
    """
    with anyopen(str(path), "rt") as handle:
        n_first = None
        frame = 0
        while line := handle.readline():
            if not line.strip():
                if handle.read().strip():
                    raise InputError(f"{path}: blank line where the atom count of frame {frame} should be")
                break
            try:
                n_atoms = int(line)
            except ValueError:
                found = line.strip()[:40]
                raise InputError(f"{path}: frame {frame}: expected an atom count, found {found!r}") from None
            if n_first is None:
                n_first = n_atoms
            elif n_atoms != n_first:
                raise InputError(
                    f"{path}: frame {frame} has {n_atoms} atoms but frame 0 has {n_first}; "
                    "every XYZ frame must hold the same atoms"
                )
            for read in range(n_atoms + 1):  # the comment line, then one line per atom
                if not handle.readline():
                    atoms_read = max(read - 1, 0)
                    raise InputError(f"{path}: truncated: frame {frame} ends after {atoms_read} of {n_atoms} atoms")
            frame += 1
    if n_first is None:
        raise InputError(f"{path}: empty XYZ file")


def check_dcd_header(path: Path) -> None:
    """Check a DCD header the way MDAnalysis's reader parses it (which fails noisily on a bad one).

    Layout (4-byte Fortran record markers, either byte order): 84, "CORD", 20 ints, 84; then
    a title block (size, NTITLE, NTITLE × 80 characters, size); then 4, N atoms, 4.
    """
    with open(path, "rb") as handle:
        data = handle.read(92)
        if not data:
            raise InputError(f"{path}: empty file")
        if len(data) < 8 or data[4:8] != b"CORD":
            raise InputError(f"{path}: not a DCD file (no CORD header)")
        endian = "<" if struct.unpack("<i", data[:4])[0] == 84 else ">"
        if struct.unpack(endian + "i", data[:4])[0] != 84:
            raise InputError(f"{path}: not a DCD file (bad first record)")

        def ints(count: int) -> tuple[int, ...]:
            raw = handle.read(4 * count)
            if len(raw) < 4 * count:
                raise InputError(f"{path}: truncated DCD header")
            return struct.unpack(f"{endian}{count}i", raw)

        if len(data) < 92:
            raise InputError(f"{path}: truncated DCD header")
        size, n_titles = ints(2)
        if (size - 4) % 80 or not 0 <= n_titles < 10_000:
            raise InputError(f"{path}: corrupt DCD header (title block of {size} bytes)")
        if len(handle.read(80 * n_titles)) < 80 * n_titles:
            raise InputError(f"{path}: truncated DCD header")
        _, four, n_atoms, four_again = ints(4)
        if four != 4 or four_again != 4 or n_atoms < 1:
            raise InputError(f"{path}: corrupt DCD header (atom count record)")


def check_dcd_frames(path: Path, reader: Any) -> None:
    """Refuse a DCD whose size is not its header plus whole frames (a cut-off last frame).

    The header's frame count (nset) is not checked: real files often leave it stale (the
    MDAnalysisTests DCD says 500 and holds 98), so a file cut exactly between two frames
    reads as a shorter trajectory.
    """
    n_frames = reader.n_frames
    dcd = getattr(reader, "_file", None)
    sizes = [getattr(dcd, name, None) for name in ("_header_size", "_firstframesize", "_framesize")]
    if all(isinstance(size, int) and size > 0 for size in sizes):
        header, first, rest = sizes
        expected = header + (first + (n_frames - 1) * rest if n_frames else 0)
        actual = os.path.getsize(path)
        if actual != expected:
            raise InputError(
                f"{path}: truncated or corrupt DCD: {actual} bytes, but its header and {n_frames} whole frames "
                f"take {expected} (the last frame is cut off?)"
            )
