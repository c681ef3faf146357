"""An on-disk, memory-mapped copy of a trajectory: built once per file, reused afterwards.

Training reads windows frame by frame (:mod:`mdnext.data`), so a trajectory backed by this
cache trains with a resident set that does not grow with the file. The cache is built by
streaming the source through its reader's ``read_chunks`` (the MDAnalysis reader streams;
other readers hand over the whole file at once), so building it does not need the whole
trajectory in memory either.

One entry is three files in the cache directory (``$MDNEXT_CACHE_DIR``, default
``~/.cache/mdnext``), named by a key over the source file's path, size and modification time,
the topology's, the selection and the format:

* ``<key>.f64``: positions, raw little-endian float64, shape (T, N, 3), Å;
* ``<key>.npz``: species, masses, cell (T, 3, 3), time (T,), pbc and per-atom topology;
* ``<key>.json``: shape, dt (ps) and source; written last, so an interrupted build is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mdnext.errors import InputError, OutputError
from mdnext.frames import ATOM_FIELDS, Frames
from mdnext.io import PathLike, reader_for, reading, source_of

#: Bumped when the layout changes; older entries are then rebuilt.
CACHE_VERSION = 2  # 2: entries keep the bond topology
#: Frames read per piece while building.
CHUNK_FRAMES = 256


def cache_directory(directory: PathLike | None = None) -> Path:
    """``directory``, else ``$MDNEXT_CACHE_DIR``, else ``~/.cache/mdnext``."""
    if directory is not None:
        return Path(directory)
    return Path(os.environ.get("MDNEXT_CACHE_DIR") or Path.home() / ".cache" / "mdnext")


def _fingerprint(path: PathLike | None) -> list[Any] | None:
    if path is None:
        return None
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def cache_key(path: PathLike, fmt: str | None, topology: PathLike | None, select: str | None) -> str:
    """A hex key that changes when the file, its topology, the selection or the format do."""
    description = [CACHE_VERSION, _fingerprint(path), _fingerprint(topology), select, fmt]
    return hashlib.sha256(json.dumps(description).encode()).hexdigest()[:32]


def load_cached(
    path: PathLike,
    format: str | None = None,
    *,
    topology: PathLike | None = None,
    select: str | None = None,
    directory: PathLike | None = None,
    chunk_frames: int = CHUNK_FRAMES,
) -> Frames:
    """:func:`mdnext.io.load` through the cache: Frames whose positions are a read-only memory map.

    The first call for a file builds the entry (one streaming pass over the file); later calls
    open it in milliseconds. A changed file (size or modification time) gets a new entry.

    Raises:
        InputError: The file cannot be read (one line naming it).
        OutputError: The cache directory cannot be written.
    """
    path = Path(path)
    reader, fmt = reader_for(path, format, topology)
    folder = cache_directory(directory)
    stem = folder / cache_key(path, fmt, topology, select)
    meta_path = stem.with_suffix(".json")
    if not meta_path.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{folder}: cannot create the cache directory: {exc.strerror}") from exc
        with reading(path, fmt, reader):
            _build(stem, reader.read_chunks(path, fmt, topology=topology, select=select, chunk_frames=chunk_frames))
    frames = _open(stem)
    return frames.replace(source={**frames.source, **source_of(path, fmt, reader, topology, select), "cache": str(stem)})


def _build(stem: Path, pieces: Any) -> None:
    """Stream ``pieces`` (Frames of the same atoms) into the entry ``stem``; the JSON goes last."""
    positions_path, arrays_path = stem.with_suffix(".f64"), stem.with_suffix(".npz")
    partial = stem.with_suffix(".f64.partial")
    first: Frames | None = None
    cells, times, n_frames = [], [], 0
    try:
        with open(partial, "wb") as handle:
            for piece in pieces:
                if first is None:
                    first = piece
                elif not first.same_atoms(piece):
                    raise InputError(f"frame {n_frames}: the atoms change (count or species) within the trajectory")
                np.ascontiguousarray(piece.positions, dtype="<f8").tofile(handle)
                cells.append(piece.cell)
                times.append(piece.times)
                n_frames += piece.n_frames
        if first is None:
            raise InputError("the trajectory holds no frames")
        arrays = {"species": first.species, "pbc": first.pbc}
        if all(cell is not None for cell in cells):
            arrays["cell"] = np.concatenate(cells)
        if all(time is not None for time in times):
            arrays["time"] = np.concatenate(times)
        if first.masses is not None:
            arrays["masses"] = first.masses
        if first.bonds is not None:
            arrays["bonds"] = first.bonds
        arrays.update({f"atoms_{key}": values for key, values in first.atoms.items()})
        with open(arrays_path, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, positions_path)
        meta = {"version": CACHE_VERSION, "shape": [n_frames, first.n_atoms, 3], "dt": first.dt,
                "source": dict(first.source)}
        meta_partial = stem.with_suffix(".json.partial")
        meta_partial.write_text(json.dumps(meta, default=str))
        os.replace(meta_partial, stem.with_suffix(".json"))
    finally:
        partial.unlink(missing_ok=True)


def _open(stem: Path) -> Frames:
    """The Frames of a complete entry, positions memory-mapped read-only."""
    meta = json.loads(stem.with_suffix(".json").read_text())
    shape = tuple(meta["shape"])
    positions = np.memmap(stem.with_suffix(".f64"), dtype="<f8", mode="r", shape=shape)
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    return Frames(
        positions=positions,
        species=arrays["species"],
        masses=arrays.get("masses"),
        cell=arrays.get("cell"),
        pbc=arrays["pbc"],
        dt=meta["dt"],
        time=arrays.get("time"),
        bonds=arrays.get("bonds"),
        atoms={key: arrays[f"atoms_{key}"] for key in ATOM_FIELDS if f"atoms_{key}" in arrays},
        source=meta["source"],
    )
