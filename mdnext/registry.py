"""Named registries of readers, writers and models, filled from entry points.

The built-in adapters are declared in ``pyproject.toml`` under the entry-point groups
``mdnext.readers``, ``mdnext.writers`` and ``mdnext.models``, exactly as a third-party plugin
declares its own. Discovery is lazy: nothing is imported until a registry is first asked.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from mdnext.errors import MDNextError

T = TypeVar("T")

#: Distributions whose entry points are mdnext's own: a failure to load one is an error.
BUILTIN_DISTRIBUTIONS = {"mdnext"}


class RegistryError(MDNextError, KeyError):
    """An unknown or duplicated registry name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping of names to plugin objects, discovered from one entry-point group.

    Args:
        group: The entry-point group, e.g. ``"mdnext.readers"``.
        kind: What the entries are, for messages ("reader", "writer", "model").
    """

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str, obj: T | None = None) -> T | Callable[[T], T]:
        """Add ``obj`` under ``name``; a name already taken is an error.

        Usable as a decorator: ``@registry.register("name")``.
        """
        if obj is None:
            return lambda o: self._add(name, o)
        return self._add(name, obj)

    def _add(self, name: str, obj: T) -> T:
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is registered twice ({self.group})")
        self._entries[name] = obj
        return obj

    def discover(self) -> None:
        """Load the entry points of this group once. Broken third-party plugins only warn."""
        if self._discovered:
            return
        self._discovered = True
        for ep in entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            builtin = dist is not None and dist.name in BUILTIN_DISTRIBUTIONS
            try:
                obj = ep.load()
            except Exception as exc:  # a third-party plugin must not break mdnext
                if builtin:
                    raise
                warnings.warn(f"skipping {self.kind} plugin {ep.name!r} ({ep.value}): {exc}", stacklevel=2)
                continue
            self._add(ep.name, obj)

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name lists the known ones."""
        self.discover()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Sorted names of all entries."""
        self.discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs sorted by name."""
        self.discover()
        return sorted(self._entries.items())


readers: Registry = Registry("mdnext.readers", "reader")
writers: Registry = Registry("mdnext.writers", "writer")
models: Registry = Registry("mdnext.models", "model")
