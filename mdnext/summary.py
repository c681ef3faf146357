"""A plain-data summary of :class:`Frames`, as printed by ``mdnext info``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mdnext.frames import Frames


def summarize(frames: Frames) -> dict[str, Any]:
    """Counts, time and box of ``frames`` as JSON-ready data (lengths Å, times ps, sizes bytes)."""
    species, counts = np.unique(frames.species, return_counts=True)
    times = frames.times
    summary: dict[str, Any] = {
        "source": dict(frames.source),
        "n_frames": frames.n_frames,
        "n_atoms": frames.n_atoms,
        "species": {str(s): int(c) for s, c in zip(species, counts)},
        "masses_known": frames.masses is not None,
        "n_bonds": None if frames.bonds is None else len(frames.bonds),
        "repeated_frames": frames.repeated_frames().tolist(),
        "dt_ps": frames.dt,
        "time_span_ps": None if times is None else [float(times[0]), float(times[-1])],
        "pbc": frames.pbc.tolist(),
        "cell_first_frame": None if frames.cell is None else frames.cell[0].tolist(),
        "cell_lengths_first_frame": None if frames.cell is None else np.linalg.norm(frames.cell[0], axis=1).tolist(),
        "positions_nbytes": frames.nbytes,
    }
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for a :func:`summarize` result."""
    source = summary["source"]
    species = ", ".join(f"{s} {c}" for s, c in summary["species"].items())
    dt = "unknown" if summary["dt_ps"] is None else f"{summary['dt_ps']:g} ps"
    span = summary["time_span_ps"]
    lines = [
        f"file:      {source.get('path', '(object)')} [{source.get('format', '?')} via {source.get('reader', '?')}]",
        f"frames:    {summary['n_frames']}",
        f"atoms:     {summary['n_atoms']} ({species})",
        f"bonds:     {'none in the topology' if summary['n_bonds'] is None else summary['n_bonds']}",
        f"dt:        {dt}",
        f"time:      {'unknown' if span is None else f'{span[0]:g} – {span[1]:g} ps'}",
    ]
    if summary["cell_lengths_first_frame"] is None:
        lines.append("box:       none")
    else:
        lengths = " x ".join(f"{x:.3f}" for x in summary["cell_lengths_first_frame"])
        lines.append(f"box:       {lengths} Å (first frame), pbc {summary['pbc']}")
    lines.append(f"memory:    {human_size(summary['positions_nbytes'])} of float64 positions")
    repeated = summary["repeated_frames"]
    if repeated:
        lines.append(f"repeated:  {len(repeated)} frame(s) equal to the frame before: {first_items(repeated, 10)}")
    return "\n".join(lines)


def first_items(values: Sequence[Any], limit: int) -> str:
    """The first ``limit`` values, comma-separated, with "…" when there are more."""
    return ", ".join(map(str, values[:limit])) + (", …" if len(values) > limit else "")


def human_size(nbytes: int) -> str:
    """``nbytes`` in B, KiB, MiB or GiB, four significant digits."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.4g} {unit}"
        value /= 1024
    return f"{value:.4g} GiB"
