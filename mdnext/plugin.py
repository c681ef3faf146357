"""Base classes for reader and writer plugins (built-in and third-party alike).

A plugin package declares its classes as entry points::

    [project.entry-points."mdnext.readers"]
    myformat = "mypackage.reader:MyReader"

and mdnext finds them on first use (see :mod:`mdnext.registry` and :mod:`mdnext.io`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from mdnext.frames import Frames


class ReaderPlugin:
    """Reads files (and optionally in-memory objects) into :class:`Frames`.

    Attributes:
        name: The plugin's registry name.
        formats: Lower-case format keys it reads (file extensions without the dot).
        priority: Higher wins when several readers handle a format; a plugin may vary it
            per format by overriding :meth:`priority_for`.
    """

    name: ClassVar[str] = ""
    formats: ClassVar[frozenset[str]] = frozenset()
    priority: ClassVar[int] = 0

    def priority_for(self, fmt: str) -> int:
        """The priority for one format (default: :attr:`priority` for all of them)."""
        return self.priority

    def accepts(self, path: Path, fmt: str) -> bool:
        """Whether this reader wants ``path`` (e.g. after sniffing its header)."""
        return True

    def read(self, path: Path, fmt: str, *, topology: Any = None, select: str | None = None) -> Frames:
        """Read ``path`` in format ``fmt``; positions in Å, time in ps."""
        raise NotImplementedError

    def read_chunks(self, path: Path, fmt: str, *, topology: Any = None, select: str | None = None,
                    chunk_frames: int = 256) -> Iterator[Frames]:
        """Read ``path`` as consecutive pieces of at most ``chunk_frames`` frames of the same atoms.

        Readers that can stream override this so that a trajectory larger than memory can be
        cached (:mod:`mdnext.cache`); the default reads the whole file as one piece.
        """
        yield self.read(path, fmt, topology=topology, select=select)

    def read_object(self, obj: Any, select: str | None = None) -> Frames | None:
        """Convert an in-memory object, or return None if this plugin does not know it."""
        return None


class WriterPlugin:
    """Writes :class:`Frames` to a file. Attributes as for :class:`ReaderPlugin`."""

    name: ClassVar[str] = ""
    formats: ClassVar[frozenset[str]] = frozenset()
    priority: ClassVar[int] = 0

    def priority_for(self, fmt: str) -> int:
        """The priority for one format (default: :attr:`priority` for all of them)."""
        return self.priority

    def write(self, frames: Frames, path: Path, fmt: str) -> None:
        """Write all of ``frames`` to ``path`` (a fresh temporary file) in format ``fmt``."""
        raise NotImplementedError
