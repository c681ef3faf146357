"""What every benchmark script shares: the machine it ran on, and writing its report as JSON."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mdnext.checkpoint import versions
from mdnext.errors import MDNextError, OutputError, first_line
from mdnext.io import atomic_path

HERE = Path(__file__).resolve().parent


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch threads, load average, versions, git commit and date of this run.

    Call it before the measurement: the load average then says who else was running.
    """
    import torch_geometric
    import vesin

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=HERE, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": load_average(),
        "platform": platform.platform(),
        "versions": {**versions(), "vesin": vesin.__version__, "torch_geometric": str(torch_geometric.__version__)},
        "git_commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` atomically (non-finite floats as null).

    Raises:
        OutputError: The directory cannot be made or the file cannot be written.
    """

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(clean(report), indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report ({exc.strerror or exc})") from None


def run_script(name: str, body: Callable[[], Path]) -> int:
    """A script's exit code: 0 after ``body()`` wrote the report whose path it returns ("wrote …"),
    2 with one line on stderr naming the script when it raises :class:`MDNextError`."""
    try:
        written = body()
    except MDNextError as exc:
        print(f"{name}: {first_line(exc)}", file=sys.stderr)
        return 2
    print(f"wrote {written}")
    return 0
