"""What every benchmark script shares: writing its report as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mdnext.errors import OutputError
from mdnext.io import atomic_path


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
