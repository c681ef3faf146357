"""mdnext: learn the dynamics in a molecular trajectory and extrapolate it.

The public API::

    frames = mdnext.load("traj.dcd", topology="top.psf", select="protein")  # Frames, Å and ps
    model = mdnext.train(frames)                                            # a fitted model
    future = mdnext.extrapolate(model, frames, n_frames=100)                # Frames
    mdnext.save(future, "future.xyz")

Importing mdnext has no side effects; heavy modules (torch, e3nn) load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from mdnext.errors import MDNextError
from mdnext.frames import Frames
from mdnext.io import load, save

__all__ = ["Frames", "MDNextError", "__version__", "evaluate", "extrapolate", "load", "save", "train"]

_LAZY = {"train": "mdnext.api", "evaluate": "mdnext.api", "extrapolate": "mdnext.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mdnext' has no attribute {name!r}")
