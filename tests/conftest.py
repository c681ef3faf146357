"""Shared fixtures: small trajectories and the location of the tutorial's data."""

from __future__ import annotations

import os

# MKL may use fewer threads on a busy machine, which changes float sums between runs: pin it
# (before torch loads MKL) so that "same seed, same result" holds on a loaded CI machine too.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mdnext.frames import Frames  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: The tutorial's original trajectory: third-party data, read from ../shared, never copied.
TUTORIAL_PATHS = REPO.parent / "shared" / "data" / "paths.npz"
BUNDLED_PATHS = REPO / "data" / "paths.npz"


@pytest.fixture
def tutorial_paths() -> Path:
    """Path of the tutorial's paths.npz; the test is skipped where it is absent."""
    if not TUTORIAL_PATHS.is_file():
        pytest.skip(f"tutorial data not found at {TUTORIAL_PATHS}")
    return TUTORIAL_PATHS


@pytest.fixture
def small_frames() -> Frames:
    """5 frames of 3 atoms in a periodic orthorhombic box, dt 0.1 ps."""
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 10, size=(5, 3, 3))
    return Frames(
        positions=positions,
        species=np.array(["O", "H", "H"]),
        masses=np.array([15.999, 1.008, 1.008]),
        cell=np.diag([10.0, 11.0, 12.0]),
        pbc=True,
        dt=0.1,
        atoms={"names": np.array(["OW", "HW1", "HW2"])},
    )
