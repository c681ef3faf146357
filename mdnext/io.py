"""``load`` and ``save``: pick a reader or writer plugin by format or file extension.

A *format* is a lower-case key such as ``"dcd"``, ``"xyz"``, ``"extxyz"``, ``"traj"`` or
``"npz"``; by default it is the file's extension (``traj.xyz.bz2`` → ``"xyz"``). Several plugins
may handle one format: each has a ``priority`` (per format where it defines
``priority_for(fmt)``) and may decline a file in ``accepts`` (the ASE reader, for example,
takes ``.xyz`` files only when their comment line is extended XYZ, and MDAnalysis reads plain
XYZ). ``"plugin:format"`` (``"ase:xyz"``) forces a plugin.

Reader plugins are classes with ``name``, ``formats``, ``priority``, ``accepts(path, fmt)``,
``read(path, fmt, topology=None, select=None) -> Frames`` and ``read_object(obj, select=None)``
(which returns None for objects it does not know). Writer plugins have ``name``, ``formats``,
``priority`` and ``write(frames, path, fmt)``. Both are registered through entry points.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mdnext import registry
from mdnext.errors import InputError, MDNextError, OutputError, first_line
from mdnext.frames import Frames
from mdnext.topology import declare_bonds

PathLike = str | os.PathLike

#: Compression suffixes that are looked through to find the format (MDAnalysis reads them).
COMPRESSION_SUFFIXES = (".gz", ".bz2")


def format_from_path(path: PathLike) -> str:
    """The format key of ``path`` from its extension, looking through .gz/.bz2."""
    name = Path(path).name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    suffix = Path(name).suffix
    return suffix[1:] if suffix else ""


def _plugins(kind: registry.Registry, fmt: str, path: Path | None) -> list[Any]:
    """Instances of the plugins of ``kind`` that handle ``fmt`` (or ``plugin:fmt``), best first."""
    if ":" in fmt:
        name, fmt = fmt.split(":", 1)
        plugin = kind.get(name)()
        return [plugin] if fmt in plugin.formats else []
    candidates = [cls() for _, cls in kind.items()]
    candidates = [p for p in candidates if fmt in p.formats]
    candidates.sort(key=lambda p: -_priority(p, fmt))
    if path is not None:
        candidates = [p for p in candidates if p.accepts(path, fmt)]
    return candidates


def _priority(plugin: Any, fmt: str) -> int:
    """A plugin's priority for ``fmt``: ``priority_for(fmt)`` where defined, else ``priority``."""
    priority_for = getattr(plugin, "priority_for", None)
    return priority_for(fmt) if callable(priority_for) else plugin.priority


def _resolve_format(fmt: str | None, path: Path) -> str:
    fmt = (fmt or format_from_path(path)).lower()
    if fmt in registry.readers or fmt in registry.writers:  # a plugin name alone
        return f"{fmt}:{format_from_path(path)}"
    return fmt


def known_formats(kind: registry.Registry) -> list[str]:
    """All format keys that some plugin of ``kind`` handles."""
    return sorted({fmt for _, cls in kind.items() for fmt in cls().formats})


def load(
    source: PathLike | Any,
    format: str | None = None,
    *,
    topology: PathLike | None = None,
    select: str | None = None,
    stride: int = 1,
    dt: float | None = None,
    cache: bool | PathLike = False,
    bonds: str = "topology",
) -> Frames:
    """Read a trajectory into :class:`Frames` (positions in Å, time in ps).

    Args:
        source: A file path, or an object a plugin knows (an MDAnalysis ``Universe`` or
            ``AtomGroup``, an ASE ``Atoms`` or a list of them).
        format: Format key (``"dcd"``, ``"xyz"``, …) or ``"plugin:format"``; default: the
            file extension.
        topology: Topology file for formats without atom information (DCD, XTC, …).
        select: Atom selection (MDAnalysis selection language for the MDAnalysis reader).
        stride: Keep every ``stride``-th frame.
        dt: Time between the file's frames in ps, overriding what the file says.
        cache: Go through the on-disk cache (:mod:`mdnext.cache`): positions come back as a
            memory map, for trajectories larger than memory. True uses the default cache
            directory; a path names one.
        bonds: ``"topology"``: the bonds the input's topology holds, if any; ``"chain"``:
            a linear chain, each atom bonded to the next (e.g. the tutorial's polymer, whose
            file names no bonds); ``"none"``: no bond topology.

    Raises:
        InputError: One line naming the file and the problem.
    """
    if stride < 1:
        raise InputError(f"stride must be a positive integer, got {stride}")
    if not isinstance(source, (str, os.PathLike)):
        frames = _load_object(source, select)
    elif cache is not False:
        from mdnext.cache import load_cached

        frames = load_cached(source, format, topology=topology, select=select,
                             directory=None if cache is True else cache)
    else:
        frames = _load_path(Path(source), format, topology, select)
    if dt is not None:
        frames = frames.replace(dt=dt, time=None)
    if stride > 1:
        frames = frames[::stride]
    return declare_bonds(frames, bonds)


def _load_object(obj: Any, select: str | None) -> Frames:
    for _, cls in registry.readers.items():
        frames = cls().read_object(obj, select=select)
        if frames is not None:
            return frames
    raise InputError(f"no reader plugin knows objects of type {type(obj).__name__}")


def reader_for(path: Path, fmt: str | None, topology: PathLike | None) -> tuple[Any, str]:
    """The reader plugin for ``path`` and the bare format key it reads it as.

    Raises:
        InputError: A missing file or topology, or a format no reader knows.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if topology is not None and not Path(topology).is_file():
        raise InputError(f"{topology}: no such topology file")
    fmt = _resolve_format(fmt, path)
    candidates = _plugins(registry.readers, fmt, path)
    if not candidates:
        raise InputError(
            f"{path}: no reader for format {fmt!r}; known formats: {', '.join(known_formats(registry.readers))}"
        )
    return candidates[0], fmt.split(":", 1)[-1]


@contextlib.contextmanager
def reading(path: Path, fmt: str, reader: Any) -> Iterator[None]:
    """Turn any failure inside the block into one :class:`InputError` line naming ``path``."""
    try:
        yield
    except MDNextError as exc:
        message = first_line(exc)
        raise InputError(message if str(path) in message else f"{path}: {message}") from exc
    except Exception as exc:  # a library's own error: say which file and why, in one line
        raise InputError(f"{path}: cannot read as {fmt} ({reader.name}): {first_line(exc)}") from exc


def source_of(path: Path, fmt: str, reader: Any, topology: PathLike | None, select: str | None) -> dict[str, Any]:
    """The ``source`` entries of frames read from ``path``."""
    source = {"path": str(path), "format": fmt, "reader": reader.name}
    if topology is not None:
        source["topology"] = str(topology)
    if select is not None:
        source["select"] = select
    return source


def _load_path(path: Path, fmt: str | None, topology: PathLike | None, select: str | None) -> Frames:
    reader, fmt = reader_for(path, fmt, topology)
    with reading(path, fmt, reader):
        frames = reader.read(path, fmt, topology=topology, select=select)
    return frames.replace(source={**frames.source, **source_of(path, fmt, reader, topology, select)})


def refuse_existing(path: PathLike, overwrite: bool = False) -> None:
    """:class:`OutputError` when ``path`` exists and ``overwrite`` is not set."""
    if Path(path).exists() and not overwrite:
        raise OutputError(f"{path}: file exists (use --force / overwrite=True to replace it)")


@contextlib.contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    On any error the temporary file is removed and an existing ``path`` is left untouched.
    Without ``overwrite`` an existing ``path`` is an :class:`OutputError`.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: directory {path.parent} does not exist")
    suffix = "".join(path.suffixes[-2:]) if path.suffix.lower() in COMPRESSION_SUFFIXES else path.suffix
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()  # writers create the file themselves
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def writer_for(path: PathLike, format: str | None = None) -> tuple[Any, str]:
    """The writer plugin and format key for ``path``; :class:`OutputError` if none handles it."""
    path = Path(path)
    fmt = _resolve_format(format, path)
    candidates = _plugins(registry.writers, fmt, None)
    if not candidates:
        raise OutputError(
            f"{path}: no writer for format {fmt!r}; known formats: {', '.join(known_formats(registry.writers))}"
        )
    return candidates[0], fmt.split(":", 1)[-1]


def check_output(path: PathLike, format: str | None = None, *, overwrite: bool = False) -> None:
    """Fail early, before any work, when ``path`` exists (without ``overwrite``) or has no writer."""
    refuse_existing(path, overwrite)
    writer_for(path, format)


def save(frames: Frames, path: PathLike, format: str | None = None, *, overwrite: bool = False) -> Path:
    """Write ``frames`` to ``path`` atomically; the format follows the extension.

    Raises:
        OutputError: The file exists (without ``overwrite``), no writer handles the format,
            or the writer failed (nothing is left behind then).
    """
    path = Path(path)
    writer, fmt = writer_for(path, format)
    with atomic_path(path, overwrite=overwrite) as tmp:
        try:
            writer.write(frames, tmp, fmt)
        except MDNextError as exc:
            raise OutputError(f"{path}: {first_line(exc)}") from exc
        except Exception as exc:
            raise OutputError(f"{path}: cannot write as {fmt} ({writer.name}): {first_line(exc)}") from exc
    return path
