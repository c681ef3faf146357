"""The scaling benchmarks (inference, neighbour lists, a trajectory larger than memory) at tiny sizes."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def _load_script(name: str):
    if str(BENCHMARKS) not in sys.path:  # inference.py imports its sibling neighbors.py
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def neighbors():
    return _load_script("neighbors")


@pytest.fixture(scope="module")
def inference():
    return _load_script("inference")


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _positive_finite(row: dict, keys: list[str]) -> None:
    for key in keys:
        value = row[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)


# ----------------------------------------------------------------------------- neighbors.py


def test_gas_box_density(neighbors):
    positions, cell = neighbors.gas_box(500)
    assert positions.shape == (500, 3) and cell.shape == (3, 3)
    assert 500 / np.linalg.det(cell) == pytest.approx(neighbors.DENSITY)
    assert positions.min() >= 0 and positions.max() < cell[0, 0]


def test_open_edge_count_matches_brute_force(neighbors):
    row = neighbors.time_neighbors(300, periodic=False, repeats=1)
    positions, _ = neighbors.gas_box(300)
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    assert row["edges"] == int(((distances < neighbors.CUTOFF) & (distances > 0)).sum())


def test_neighbors_main_writes_json(neighbors, tmp_path, capsys):
    out = tmp_path / "neighbors.json"
    assert neighbors.main(["--sizes", "12", "1500", "--repeats", "1", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "wrote" in capsys.readouterr().out
    assert {"settings", "machine", "rows", "per_atom_ratio"} <= set(report)
    assert {"cpu_model", "cores_available", "torch_threads", "versions", "date"} <= set(report["machine"])
    assert [(row["n_atoms"], row["periodic"]) for row in report["rows"]] == [
        (12, True), (12, False), (1500, True), (1500, False)]
    for row in report["rows"]:
        _positive_finite(row, ["edges", "edges_per_atom", "median_ms", "min_ms", "us_per_atom", "vesin_median_ms"])
    periodic, open_ = report["rows"][2], report["rows"][3]
    assert periodic["edges"] > open_["edges"]  # the open box loses neighbours across its faces
    # about 4/3 π r³ ρ = 11.2 neighbours per atom at liquid-argon density
    assert 10.0 < periodic["edges_per_atom"] < 12.5
    assert report["per_atom_ratio"] == {}  # needs two sizes of at least 1000 atoms


# ----------------------------------------------------------------------------- inference.py


def test_argon_box(inference):
    system = inference.argon_box(500, n_frames=5)
    assert system.n_atoms == 8**3 and system.positions.shape == (5, 512, 3) and system.periodic
    assert system.n_atoms / np.linalg.det(system.cell) == pytest.approx(inference.DENSITY)
    steps = np.diff(system.positions, axis=0)
    assert steps.std() == pytest.approx(inference.SEED_STEP, rel=0.05)


def test_mdnext_model_head_is_not_zero(inference):
    model = inference.mdnext_model(inference.argon_box(64))
    assert model.head.weight.abs().sum() > 0
    assert float(model.residual_scale) == inference.OUTPUT_SCALE
    assert model.cutoff == inference.CUTOFF and model.history == inference.HISTORY


ROW_KEYS = ["n_atoms", "edges", "edges_per_atom", "warmup_s", "rollout_s", "frames_per_s", "us_per_atom_step",
            "us_per_edge_step", "peak_rss_mib", "baseline_rss_mib", "parameters"]


@pytest.mark.parametrize(("size", "model"), [(12, "mdnext"), (500, "mdnext"), (12, "peer")])
def test_measure_in_process(inference, size, model):
    config = {"size": size, "model": model, "steps": 1, "threads": 1, "peer_radius": 5.0, "time_limit": 60.0,
              "memory_limit_gb": 8.0}
    row = inference.measure(config)
    assert row["status"] == "ok" and row["model"] == model
    _positive_finite(row, ROW_KEYS)
    assert row["increment_mib"] >= 0
    assert row["system"] == ("polymer" if size == 12 else "argon box")
    if model == "mdnext":
        _positive_finite(row, ["graph_ms"])
    assert row["frames_per_s"] == pytest.approx(1.0 / row["rollout_s"])


def test_run_report_and_table(inference, tmp_path):
    report = inference.run([12], steps=1, peer=True, isolated=False)
    assert {"benchmark", "settings", "machine", "rows", "criteria"} <= set(report)
    assert [row["model"] for row in report["rows"]] == ["mdnext", "peer"]
    assert report["criteria"]["peer_limit"] is None
    assert report["criteria"]["linear_cost"] is None  # no argon boxes of 1000 atoms or more
    assert report["criteria"]["memory"]["n_atoms"] == 12
    out = tmp_path / "inference.json"
    inference.write_json(report, out)
    assert json.loads(out.read_text())["rows"][0]["status"] == "ok"
    text = inference.format_report(report)
    assert "polymer" in text and "peer limit: none reached" in text


def test_criteria(inference):
    def row(n, us, model="mdnext", status="ok", system="argon box", peak=500.0):
        return {"n_atoms": n, "size": n, "model": model, "status": status, "system": system,
                "us_per_atom_step": us, "us_per_edge_step": None if us is None else us / 10, "peak_rss_mib": peak}

    rows = [row(3341, 200.0, system="adk"), row(3375, 50.0), row(97336, 110.0, peak=5000.0),
            row(3375, 80.0, "peer"), row(29791, None, "peer", "over 60 s"), row(97336, None, "peer", "out of memory")]
    found = inference.criteria(rows)
    assert found["linear_cost"]["from_n_atoms"] == 3375 and found["linear_cost"]["to_n_atoms"] == 97336
    assert found["linear_cost"]["ratio"] == pytest.approx(2.2) and not found["linear_cost"]["passed"]
    assert found["memory"] == {"n_atoms": 97336, "peak_rss_mib": 5000.0, "max_mib": 4096.0, "passed": False}
    assert found["peer_limit"] == {"n_atoms": 29791, "size": 29791, "status": "over 60 s"}
    rows[2]["us_per_atom_step"], rows[2]["peak_rss_mib"] = 90.0, 1000.0
    found = inference.criteria(rows)
    assert found["linear_cost"]["passed"] and found["memory"]["passed"]


def test_measure_isolated_process(inference):
    """The fresh-process path: the child's JSON comes back with its own peak memory."""
    config = {"size": 12, "model": "mdnext", "steps": 1, "threads": 1, "peer_radius": 5.0, "time_limit": 60.0,
              "memory_limit_gb": 8.0}
    row = inference.measure_isolated(config)
    assert row["status"] == "ok", row
    _positive_finite(row, ROW_KEYS)
    assert row["memory_scope"] == "whole run"


@pytest.mark.slow
def test_limits_are_recorded(inference):
    """A peer step past the memory limit reads "out of memory"; a run past the time limit, "over 1 s"."""
    base = {"size": 3375, "model": "peer", "threads": 1, "peer_radius": 5.0}
    row = inference.measure_isolated({**base, "steps": 1, "time_limit": 60.0, "memory_limit_gb": 0.02})
    assert row["status"] == "out of memory", row
    row = inference.measure_isolated({**base, "steps": 200, "time_limit": 1.0, "memory_limit_gb": 8.0})
    assert row["status"] == "over 1 s", row
    assert row["edges"] > 0


# ----------------------------------------------------------------------------- the linear-cost fix


def test_edge_blocks_give_the_same_model(inference):
    """The interactions' per-edge work in blocks (for linear cost) gives the all-at-once result and gradients."""
    from torch_geometric.data import Batch, Data

    system = inference.argon_box(125)
    model = inference.mdnext_model(system).train()
    history = torch.from_numpy(np.diff(system.positions, axis=0)[::-1].transpose(1, 0, 2).copy())
    window = Data(pos=torch.from_numpy(system.positions[-1]), history=history,
                  species=torch.from_numpy(system.species), cell=torch.from_numpy(system.cell)[None],
                  pbc=torch.ones(1, 3, dtype=torch.bool))
    data = Batch.from_data_list([window])
    edges = model._graph(data)[0].shape[1]
    results = []
    for block in (edges + 1, 97):  # one block; 97-edge blocks (the last one shorter)
        for layer in model.layers:
            layer.edge_block = block
        model.zero_grad()
        out = model(data)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (whole, whole_grads), (blocked, blocked_grads) = results
    assert edges > 10 * 97
    # under autograd each block's float32 sums are added to the running total: another order of addition
    torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-9)
    for got, expected in zip(blocked_grads, whole_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert model.layers[0].edge_block == 97 and inference.mdnext_model(system).layers[0].edge_block >= 1024


def test_large_trajectory_benchmark_runs_small(tmp_path):
    """The larger-than-memory benchmark end to end on a tiny tiled DCD: cache, train, RSS report."""
    import subprocess

    out = tmp_path / "large.json"
    command = [sys.executable, str(BENCHMARKS / "large_trajectory.py"), "--gigabytes", "0.004", "--minutes", "0.02",
               "--max-windows", "4", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["atoms"] == 3341 and result["frames"] >= 98
    assert result["positions_gigabytes"] == pytest.approx(result["frames"] * 3341 * 24 / 1e9)
    peaks = result["rss_peak_mb_by_phase"]
    assert {"cache build", "training + evaluation"} <= set(peaks)
    assert 0 < peaks["cache build"] <= result["ru_maxrss_mb"] < 4000
    assert result["metrics"]["splits"]["train"] == 4 and math.isfinite(result["metrics"]["mse"])
