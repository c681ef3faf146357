"""Smoke tests of the coarse-time-step benchmark (benchmarks/make_lj.py, benchmarks/lj_coarse.py).

A tiny liquid-argon trajectory (32 atoms, 100 frames saved every 20 steps of 10 fs) is made
once; the benchmark trains on it for a few seconds.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.lj import LennardJones

import mdnext

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import lj_coarse  # noqa: E402
import make_lj  # noqa: E402

TINY = {"n_cells": 2, "n_frames": 100, "cutoff": 5.5, "melt_ps": 1.0, "equilibrate_ps": 1.0, "seed": 0}
SMALL_MODEL = {"cutoff": 4.5, "hidden_irreps": "4x0e + 2x1o", "num_layers": 1}
PHYSICS_BASELINES = ("zero", "constant_velocity", "constant_acceleration", "autoregressive", "centred_autoregressive")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[mdnext.Frames, Path]:
    """The tiny trajectory and an extxyz file holding it."""
    path = tmp_path_factory.mktemp("lj") / "tiny.extxyz"
    frames = make_lj.make_lj(**TINY)
    mdnext.save(frames, path)
    return frames, path


def test_calculator_matches_ase_lennard_jones() -> None:
    atoms = bulk("Ar", "fcc", a=make_lj.fcc_lattice_constant(1.4, 39.948), cubic=True).repeat(3)
    atoms.rattle(0.3, seed=1)
    atoms.positions += 13.0  # outside the box: the calculator must wrap for vesin
    results = []
    for calc in (make_lj.LennardJonesVesin(3.405, 0.0103, rc=8.5),
                 LennardJones(sigma=3.405, epsilon=0.0103, rc=8.5, smooth=True)):
        atoms.calc = calc
        results.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_potential_energies()))
    (energy, forces, energies), (ase_energy, ase_forces, ase_energies) = results
    assert energy == pytest.approx(ase_energy, rel=1e-12)
    np.testing.assert_allclose(forces, ase_forces, atol=1e-12)
    np.testing.assert_allclose(energies, ase_energies, atol=1e-12)
    assert np.abs(forces).max() > 0.1  # a rattled lattice feels real forces


def test_lattice_constant_gives_the_density() -> None:
    a = make_lj.fcc_lattice_constant(1.4, 39.948)
    density = 4 * 39.948 * make_lj.GRAMS_PER_AMU / (a * 1e-8) ** 3
    assert density == pytest.approx(1.4, rel=1e-12)
    assert 5.7 < a < 5.8


def test_tiny_trajectory_is_coarse_unwrapped_and_conserves_energy(tiny: tuple[mdnext.Frames, Path]) -> None:
    frames, path = tiny
    assert frames.positions.shape == (100, 32, 3)
    assert frames.dt == pytest.approx(0.2)
    assert frames.source["max_energy_drift_eV_per_atom"] < 1e-4  # k_B T ≈ 8.6e-3 eV
    assert 60 < frames.source["mean_temperature_K"] < 140  # liquid, near the 100 K target
    check = make_lj.coarseness(frames)
    assert check["cv_over_zero"] > 1.0 and check["lag1_correlation"] < 0.5
    box = frames.cell[0, 0, 0]
    assert np.any((frames.positions < 0) | (frames.positions >= box))  # atoms left the box: unwrapped

    loaded = mdnext.load(path)
    assert loaded.dt == pytest.approx(0.2, rel=1e-12)
    np.testing.assert_allclose(loaded.positions, frames.positions, atol=1e-7)


def test_make_lj_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cli.extxyz"
    argv = ["-o", str(path), "--cells", "2", "--frames", "12", "--cutoff", "5.5", "--melt-ps", "0.2",
            "--equilibrate-ps", "0.2"]
    assert make_lj.main(argv) == 0
    out = capsys.readouterr().out
    assert "constant velocity" in out and "diffusion coefficient" in out
    frames = mdnext.load(path)
    assert frames.positions.shape == (12, 32, 3) and frames.dt == pytest.approx(0.2) and frames.pbc.all()
    assert make_lj.main(argv) == 1  # refuses to overwrite
    assert "exists" in capsys.readouterr().err


def test_make_lj_refuses_a_cutoff_beyond_half_the_box() -> None:
    with pytest.raises(mdnext.MDNextError, match="half the box"):
        make_lj.make_lj(n_cells=2, n_frames=2, cutoff=8.5)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train on one torch thread (restored afterwards): on a shared 2-core machine the second
    thread's synchronisation makes the many tiny tensor operations of small graphs ~5× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _finite(value: object) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_benchmark_json_and_wrapping(tiny: tuple[mdnext.Frames, Path], tmp_path: Path, one_thread: None) -> None:
    _, path = tiny
    output = tmp_path / "result.json"
    argv = ["--frames", str(path), "--minutes", str(2 / 60), "--json", str(output), "--threads", "1",
            "--cutoff", str(SMALL_MODEL["cutoff"]), "--hidden-irreps", SMALL_MODEL["hidden_irreps"], "--layers", "1",
            "--horizons", "1,5"]
    assert lj_coarse.main(argv) == 0
    result = json.loads(output.read_text())
    for key in ("metrics", "ratio", "best_baseline", "passed", "cv_over_zero", "train_seconds", "data", "settings",
                "machine", "log"):
        assert key in result
    metrics = result["metrics"]
    assert set(metrics["baselines"]) == {*PHYSICS_BASELINES, "linear"}
    assert _finite(metrics["mse"]) and _finite(metrics["baselines"]) and _finite(metrics["rollout_rmsd"])
    assert set(metrics["rollout_rmsd"]) == {"1", "5"}
    assert result["ratio"] == pytest.approx(metrics["mse"] / min(metrics["baselines"].values()), rel=1e-12)
    assert result["best_baseline"] == min(metrics["baselines"], key=metrics["baselines"].get)
    assert result["cv_over_zero"] > 1.0
    assert result["data"]["n_atoms"] == 32 and result["data"]["dt_ps"] == pytest.approx(0.2)
    assert result["settings"]["model_options"] == SMALL_MODEL
    assert 0 < result["train_seconds"] < 60 and result["log"]

    wrapped = lj_coarse.run_benchmark(mdnext.load(path), minutes=2 / 60, wrapped=True, model_options=SMALL_MODEL,
                                      horizons=(1, 5))
    assert wrapped["wrapped"] and wrapped["metrics"]["splits"] == metrics["splits"]
    for name in PHYSICS_BASELINES:  # the same windows, hence the same baseline errors
        assert wrapped["metrics"]["baselines"][name] == pytest.approx(metrics["baselines"][name], rel=1e-10, abs=1e-14)
        for h, rmsd in metrics["baseline_rollout_rmsd"][name].items():
            assert wrapped["metrics"]["baseline_rollout_rmsd"][name][h] == pytest.approx(rmsd, rel=1e-10)
