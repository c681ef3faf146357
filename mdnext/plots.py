"""Training and evaluation figures (matplotlib, written as PNG files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(log: list[dict[str, float]], path: Path) -> Path:
    """Training and validation loss (normalised to the untrained model's error) per epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [row["epoch"] for row in log]
    ax.semilogy(epochs, [row["train_loss"] for row in log], label="train")
    ax.semilogy(epochs, [row["val_loss"] for row in log], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE / MSE before training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_parity(predicted: np.ndarray, target: np.ndarray, path: Path, *, max_points: int = 20000) -> Path:
    """Predicted against true displacement, one panel per coordinate (as the tutorial drew it).

    Args:
        predicted, target: (M, 3) displacements in Å.
    """
    plt = _pyplot()
    if len(target) > max_points:
        keep = np.random.default_rng(0).choice(len(target), max_points, replace=False)
        predicted, target = predicted[keep], target[keep]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    for axis, ax, name in zip(range(3), axes, "xyz"):
        ax.scatter(target[:, axis], predicted[:, axis], s=2, alpha=0.4)
        low, high = float(target[:, axis].min()), float(target[:, axis].max())
        ax.plot([low, high], [low, high], color="k", lw=0.8)
        ax.set_xlabel(f"true Δ{name} (Å)")
        ax.set_ylabel(f"predicted Δ{name} (Å)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_rollout(rmsd: dict[str, dict[str, float]], path: Path) -> Path:
    """Rollout RMSD against horizon for the model and every baseline.

    Args:
        rmsd: ``{name: {horizon (str): RMSD in Å}}``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in rmsd.items():
        horizons = sorted(int(h) for h in values)
        ax.loglog(horizons, [values[str(h)] for h in horizons], marker="o", label=name)
    ax.set_xlabel("horizon (steps)")
    ax.set_ylabel("RMSD (Å)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
