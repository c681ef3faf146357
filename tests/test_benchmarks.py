"""The benchmark scripts under ``benchmarks/``: tiny end-to-end runs and their helpers."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLED_PATHS = REPO / "data" / "paths.npz"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tutorial():
    return _load_script("tutorial")


def _finite_numbers(value) -> list[float]:
    """Every int/float inside a nested JSON value."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    items = value.values() if isinstance(value, dict) else value
    return [number for item in items for number in _finite_numbers(item)]


@pytest.mark.parametrize("bonds", ["topology", "chain"])
def test_tutorial_benchmark_smoke(tutorial, tmp_path, capsys, bonds):
    out = tmp_path / "tutorial.json"
    threads = torch.get_num_threads()
    try:
        status = tutorial.main([
            "--data", str(BUNDLED_PATHS), "--dt", "0.00125", "--max-frames", "100", "--epochs", "2",
            "--mdnext-minutes", "0.2", "--mdnext-epochs", "2", "--threads", "1", "--horizons", "1", "10",
            "--json", str(out), "-q", "--bonds", bonds,
        ])
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())

    for key in ("data", "machine", "tutorial_e3nn", "tutorial_linear", "mdnext", "rows"):
        assert key in report
    assert report["data"]["n_frames"] == 100 and report["data"]["n_atoms"] == 12
    for key in ("cpu_count", "torch_threads", "date", "versions"):
        assert key in report["machine"]
    assert {"torch", "e3nn"} <= set(report["machine"]["versions"])
    assert all(math.isfinite(x) for x in _finite_numbers(report))

    names = [row["model"] for row in report["rows"]]
    assert names[:3] == ["tutorial e3nn (gate_points_2101)", "tutorial linear (GD)", "mdnext equivariant"]
    assert set(names[3:]) == {"zero", "constant_velocity", "constant_acceleration", "autoregressive",
                              "centred_autoregressive", "linear"}
    for row in report["rows"]:
        assert row["test_mse"] > 0 and row["model"] in printed
        assert set(row["rollout_rmsd"]) == {"1", "10"}
    for row in report["rows"][:3]:
        assert row["train_seconds"] > 0 and row["frames_per_second"] > 0
    tutorial_row, ours_row = report["rows"][0], report["rows"][2]  # the models with a per-epoch test curve
    assert 0 < tutorial_row["seconds_to_within_10pct"] <= tutorial_row["train_seconds"]
    # mdnext's: 0 when it keeps its starting point (epoch 0, the prior alone)
    assert (ours_row["seconds_to_within_10pct"] == 0) == (report["mdnext"]["best_epoch"] == 0)
    assert 0 <= ours_row["seconds_to_within_10pct"] <= ours_row["train_seconds"]

    e3nn = report["tutorial_e3nn"]
    # The tutorial's split of 99 (frame, next frame) pairs: int(0.8 * 99) = 79 train, 20 test.
    assert (e3nn["train_frames"], e3nn["test_frames"], e3nn["epochs"]) == (79, 20, 2)
    assert e3nn["test_mse_own_split"] == e3nn["test_mse_by_epoch"][-1]
    assert e3nn["settings"]["lr"] == 1e-4 and e3nn["settings"]["batch_size"] == 1

    ours = report["mdnext"]
    assert ours["epochs"] == len(ours["test_mse_by_epoch"]) == len(ours["seconds_by_epoch"]) <= 2
    # The per-epoch curve is scored on the same windows as the final metric: the best epoch's
    # weights are the returned model's, so its value is the reported test MSE exactly (best
    # epoch 0: the model kept its start, its prior alone).
    best = ours["prior"]["mse"] if ours["best_epoch"] == 0 else ours["test_mse_by_epoch"][ours["best_epoch"] - 1]
    assert best == ours["mse"]
    assert ours["settings"]["history"] == 4 and ours["settings"]["config"]["epochs"] == 2
    # the bundled file names no bonds: mdnext's model uses the chain's only when told
    assert report["data"]["bonds"] == bonds
    assert ours["prior"]["name"] == ("force_matched" if bonds == "chain" else "centred_autoregressive")
    assert ours["settings"]["hparams"]["bond_types"] == (bonds == "chain")
    assert ours["frames_per_second"] == pytest.approx(ours["train_windows"] * ours["epochs"] / ours["train_seconds"])


def test_tutorial_benchmark_missing_data(tutorial, tmp_path, capsys):
    assert tutorial.main(["--data", str(tmp_path / "absent.npz"), "--json", str(tmp_path / "x.json")]) == 2
    message = capsys.readouterr().err
    assert "absent.npz" in message and "not found" in message and len(message.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_tutorial_graphs_and_split(tutorial):
    positions = np.random.default_rng(0).normal(size=(6, 4, 3))
    graphs = tutorial.tutorial_graphs(positions)
    assert len(graphs) == 5
    assert graphs[2].pos.dtype == torch.float32
    np.testing.assert_allclose(graphs[2].y.numpy(), positions[3] - positions[2], rtol=1e-6)
    assert tutorial.tutorial_split(2048) == 1637  # the tutorial's hard-coded 1637 / 410


def test_tutorial_linear_step_matches_autograd(tutorial, monkeypatch):
    """The hand-written gradient of the tutorial's linear loss agrees with autograd."""
    rng = np.random.default_rng(1)
    positions = rng.normal(size=(3, 5, 3))
    monkeypatch.setattr(tutorial, "LINEAR_EPOCHS", 1)
    monkeypatch.setattr(tutorial, "TUTORIAL_TRAIN_FRACTION", 0.5)  # one training frame of two
    w, b, _ = tutorial.run_tutorial_linear(positions)
    w0 = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    b0 = torch.zeros((), dtype=torch.float64, requires_grad=True)
    x, y = torch.from_numpy(positions[0]), torch.from_numpy(positions[1])
    torch.mean((x @ w0 + b0 - y) ** 2).backward()
    np.testing.assert_allclose(w, -tutorial.LINEAR_STEP * w0.grad.numpy(), rtol=1e-12)
    assert b == pytest.approx(-tutorial.LINEAR_STEP * float(b0.grad), rel=1e-12)


def test_seconds_to_within(tutorial):
    seconds, values = [1.0, 2.0, 3.0, 4.0], [10.0, 1.2, 1.05, 1.0]
    assert tutorial.seconds_to_within(seconds, values, 1.0) == 3.0
    assert tutorial.seconds_to_within(seconds, values, 1.0, tolerance=0.25) == 2.0
    assert tutorial.seconds_to_within(seconds, [10.0] * 4, 1.0) is None


def test_tutorial_benchmark_follows_cli_defaults(tutorial):
    defaults = tutorial.cli_defaults()
    assert defaults["model_name"] == "equivariant"
    assert (defaults["history"], defaults["stride"], defaults["batch_size"]) == (4, 1, 64)
    assert (defaults["epochs"], defaults["lr"]) == (200, 3e-3)
