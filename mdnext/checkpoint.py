"""Model checkpoints: plain dicts of tensors and plain data, loaded with ``weights_only=True``.

A checkpoint never pickles code. It holds the model's registry ``name`` and ``hparams`` (from
which the model class rebuilds it), its ``state_dict`` (fitted normalisation statistics are
buffers in it), the window geometry (``history``, ``stride``, ``dt``), training metadata and the
library versions it was written with.
"""

from __future__ import annotations

import hashlib
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mdnext import registry
from mdnext.data import read_frames
from mdnext.errors import InputError, first_line
from mdnext.frames import Frames
from mdnext.io import atomic_path
from mdnext.models.base import DisplacementModel

FORMAT_VERSION = 2
#: Format 2: the equivariant layers' tensor-product outputs are grouped by irrep, so their
#: ``linear_out`` weights are ordered differently from format 1 (same shapes: they would load
#: silently and wrongly), and format-1 equivariant checkpoints are refused.
_EQUIVARIANT_SINCE = 2


def versions() -> dict[str, str]:
    """Versions of mdnext and the libraries that shape a model's numbers."""
    import e3nn

    import mdnext

    found = {
        "mdnext": mdnext.__version__,
        "torch": torch.__version__,  # a str subclass that weights_only loading refuses
        "e3nn": e3nn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    return {name: str(version) for name, version in found.items()}


#: Frames hashed at a time by :func:`data_hash`.
HASH_BLOCK_FRAMES = 256


def data_hash(frames_list: list[Frames]) -> str:
    """A short SHA-256 of the positions, species and bonds of all trajectories (identifies the training data).

    Read in blocks of frames, so a memory-mapped trajectory is never resident whole.
    """
    digest = hashlib.sha256()
    for frames in frames_list:
        for start in range(0, frames.n_frames, HASH_BLOCK_FRAMES):
            block = np.arange(start, min(start + HASH_BLOCK_FRAMES, frames.n_frames))
            digest.update(read_frames(frames.positions, block).tobytes())
        digest.update("|".join(frames.species.tolist()).encode())
        if frames.bonds is not None:
            digest.update(frames.bonds.tobytes())
    return digest.hexdigest()[:16]


def build_model(name: str, hparams: dict[str, Any]) -> DisplacementModel:
    """A fresh model from its registry ``name`` and ``hparams``."""
    return registry.models.get(name)(**hparams)


def save_checkpoint(path: str | Path, model: DisplacementModel, *, stride: int, dt: float | None,
                    training: dict[str, Any], extra: dict[str, Any] | None = None,
                    overwrite: bool = True) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically.

    Args:
        path: Output file (``.pt``).
        model: The model; its ``name`` and ``hparams`` must rebuild it.
        stride: Frames between the current frame and the predicted one.
        dt: Time between the training data's frames in ps (None where unknown).
        training: Plain-data metadata (seed, data hash, metrics, config, …).
        extra: Further entries (e.g. optimiser state for resuming); tensors and plain data only.
        overwrite: Replace an existing file.
    """
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "hparams": model.hparams,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "species": list(model.species),
        "history": model.history,
        "stride": int(stride),
        "dt": dt,
        "training": training,
        "versions": versions(),
        **(extra or {}),
    }
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``); refuse anything else.

    Raises:
        InputError: Missing, unsafe (needs pickled code) or not an mdnext checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(
            f"{path}: not a safe mdnext checkpoint (refusing to unpickle code): {first_line(exc)}"
        ) from exc
    if not isinstance(checkpoint, dict) or "format_version" not in checkpoint or "model" not in checkpoint:
        raise InputError(f"{path}: not an mdnext checkpoint (no format_version/model entries)")
    if checkpoint["format_version"] > FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format {checkpoint['format_version']} is newer than this mdnext reads")
    if checkpoint["model"] == "equivariant" and checkpoint["format_version"] < _EQUIVARIANT_SINCE:
        raise InputError(f"{path}: an equivariant model in checkpoint format {checkpoint['format_version']}, whose "
                         "layers order their weights differently from this mdnext's: train it again")
    saved = checkpoint.get("versions", {})
    current = versions()
    differing = [f"{k} {saved[k]} (now {current[k]})" for k in ("mdnext", "torch", "e3nn") if saved.get(k) != current[k]]
    if differing:
        warnings.warn(f"{path}: written with {', '.join(differing)}", stacklevel=2)
    return checkpoint


def load_model(path: str | Path) -> tuple[DisplacementModel, dict[str, Any]]:
    """Rebuild the model stored in ``path`` (in eval mode) and return it with its checkpoint dict."""
    checkpoint = read_checkpoint(path)
    try:
        model = build_model(checkpoint["model"], checkpoint["hparams"])
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as exc:
        raise InputError(f"{path}: cannot rebuild model {checkpoint['model']!r}: {first_line(exc)}") from exc
    model.eval()
    return model, checkpoint


@dataclass
class TrainedModel:
    """A fitted model with what it needs to be used: its window geometry and time step.

    Attributes:
        model: The displacement model (eval mode).
        stride: Data frames between the current frame and the predicted one.
        dt: Time between the training data's frames in ps (None where unknown); a prediction
            reaches ``stride * dt`` ps ahead.
        training: Plain-data metadata (config, seed, data hash, metrics, log).
    """

    model: DisplacementModel
    stride: int = 1
    dt: float | None = None
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def history(self) -> int:
        """Number k of past displacements the model reads."""
        return self.model.history

    @property
    def species(self) -> list[str]:
        """Species names the model knows, in code order."""
        return list(self.model.species)

    @property
    def metrics(self) -> dict[str, Any]:
        """Test metrics measured after training (empty when not measured)."""
        return self.training.get("metrics", {})

    def save(self, path: str | Path, *, overwrite: bool = False, extra: dict[str, Any] | None = None) -> Path:
        """Write a safe checkpoint (see :func:`save_checkpoint`)."""
        return save_checkpoint(path, self.model, stride=self.stride, dt=self.dt, training=self.training,
                               extra=extra, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> TrainedModel:
        """Read a checkpoint written by :meth:`save` (safely, ``weights_only=True``)."""
        model, checkpoint = load_model(path)
        return cls(model=model, stride=checkpoint["stride"], dt=checkpoint["dt"], training=checkpoint["training"])
