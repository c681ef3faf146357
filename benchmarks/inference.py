"""Inference benchmark: rollout speed and peak memory against atom count, mdnext against e3nn's example.

For each atom count N, in one run, mdnext's default :class:`~mdnext.models.equivariant.EquivariantModel`
(history 4, cutoff 5 Å, default hyperparameters, float32 network) and the peer, e3nn's
``gate_points_2101.Network`` with the dmol.pub tutorial's hyperparameters, each extrapolate the
same seed frames with :func:`mdnext.rollout.rollout`. Every (N, model) runs in a fresh Python
process, so that its peak memory is its own.

**Systems.** ``--sizes`` picks them by N:

* 12: the bundled 12-bead polymer, ``data/paths.npz`` (open boundaries);
* 3341: adenylate kinase from MDAnalysisTests (``adk.psf`` + ``adk_dims.dcd``, read with
  ``mdnext.io.load(DCD, topology=PSF)``; open boundaries, the PSF's atom types as species);
* any other N: a periodic cubic box of n³ argon atoms, n = round(N^(1/3)) (3375 → 3,375;
  30000 → 29,791; 100000 → 97,336), at liquid-argon density 0.0213 Å⁻³ (lattice spacing 3.61 Å): a simple-cubic
  lattice jittered by 0.3 Å (Gaussian, per component), then 4 random-walk steps of 0.05 Å per
  component, so that the model has a history. About 11 neighbours per atom within 5 Å.

Cost follows the edge count, and adenylate kinase, with its hydrogens, has about 43 neighbours
per atom within 5 Å against the box's 11. The linear-cost criterion therefore compares argon
boxes only (3,375 atoms, the default size next to adk's, against the largest box); the table
also shows the cost per edge.

The seed is the system's last 5 frames (history 4 needs 5).

**mdnext's model.** Untrained, but its ``1o`` head is drawn from N(0, 1) instead of zeros, so
the network's output reaches the prediction. The closed-form quantities are set from the seed,
as ``fit_closed_form`` would: ``displacement_scale`` = RMS of the seed's displacements,
``avg_num_neighbors`` = edges per atom of the seed's last frame; ``residual_scale`` = 0.01 Å
keeps the random residual small, so the atoms keep moving like the prior (constant velocity:
what the unfitted prior predicts) and the graph stays that of a liquid.

**The peer.** ``gate_points_2101.Network(irreps_in=None, irreps_hidden="5x0e + 5x0o + 5x1e +
5x1o", irreps_out="1x1o", irreps_node_attr=None, irreps_edge_attr=spherical_harmonics(3),
layers=3, max_radius=5.0, number_of_basis=10, radial_layers=1, radial_neurons=128,
num_neighbors=11, num_nodes=12, reduce_output=False)``: the tutorial's settings (see
``benchmarks/tutorial.py``) except ``max_radius``, which is mdnext's cutoff (5 Å instead of
3.5 Å; ``--peer-radius 3.5`` restores it) so that both models see about the same edges. Its
graph is its own: e3nn 0.6.0's ``gate_points_2101.radius_graph`` (it does not use
torch_cluster, which is not installed here) computes the full N × N ``torch.cdist`` matrix
and keeps the pairs with 0 < r < max_radius, without periodic boundaries. The network reads
float32 positions only (no history, no species); its output, times 0.01 like mdnext's
residual, is the predicted displacement. Its edge count is counted with vesin on the same
positions (open boundaries, its radius), not with its own code.

**Measurements** (``--threads`` torch threads, 1 by default): a 1-step rollout to warm up
(e3nn's first calls are slow), then a timed ``--steps``-step rollout (5 by default): frames per
second, microseconds per atom per step and per edge per step (edges of the seed's last
frame). Peak memory is ``ru_maxrss`` of the process at the
end; ``+MiB`` subtracts its value after the imports, the system's construction and the model's
(the baseline). mdnext's ``radius_graph`` time on the seed frame is shown beside it.

**Limits.** After the baseline, the process may grow its address space by ``--memory-limit``
GiB more (8 by default; ``RLIMIT_AS``): an allocation beyond that fails and is recorded as
"out of memory". The warm-up and the timed rollout together must finish within
``--time-limit`` seconds (60 by default) for the peer and 600 s for mdnext; past that, the
process is killed by ``SIGALRM`` and the row says "over 60 s" (with the warm-up's time and the
memory up to then, when the warm-up finished). The peer is tried at every N: the limits keep
each attempt short, and the table then shows which limit it meets where.

Usage (from the repository root)::

    python benchmarks/inference.py                                  # 12, 3341, 3375, ~30k, ~100k atoms
    python benchmarks/inference.py --sizes 12 3341 --steps 3        # a quick look
    python benchmarks/inference.py --sizes 3375 100000 --no-peer    # the linear-cost check only

Prints a table and writes ``benchmarks/results/inference.json`` (``--output``): the rows, the
criteria (µs per atom per step of the argon boxes, from the smallest with at least 1000 atoms
to the largest, within 2×; mdnext's peak memory at the largest N within 4 GiB), the peer's
limit, the settings and the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script or imported from the tests
    sys.path.insert(0, str(HERE))

import numpy as np
import torch
from neighbors import median_seconds
from reporting import load_average, machine_info, write_json

REPO = HERE.parent
RESULTS = HERE / "results"
POLYMER = REPO / "data" / "paths.npz"
#: Liquid argon number density, atoms/Å³.
DENSITY = 0.0213
CUTOFF = 5.0
HISTORY = 4
SEED_FRAMES = HISTORY + 1
#: Gaussian jitter of the lattice sites and random-walk step of the seed frames, Å (per component).
JITTER = 0.3
SEED_STEP = 0.05
#: Scale of the untrained networks' output in the prediction, Å (mdnext's ``residual_scale``).
OUTPUT_SCALE = 0.01
DEFAULT_SIZES = (12, 3341, 3375, 30_000, 100_000)
DEFAULT_STEPS = 5
PEER_TIME_LIMIT = 60.0
MDNEXT_TIME_LIMIT = 600.0
MEMORY_LIMIT_GB = 8.0
#: The acceptance criteria: µs per atom per step from ~3k atoms to the largest N, and peak memory.
MAX_PER_ATOM_RATIO = 2.0
MAX_PEAK_MIB = 4096.0
#: The tutorial's ``gate_points_2101.Network`` settings (benchmarks/tutorial.py), max_radius aside.
PEER_NETWORK = {
    "irreps_in": None, "irreps_hidden": "5x0e + 5x0o + 5x1e + 5x1o", "irreps_out": "1x1o",
    "irreps_node_attr": None, "irreps_edge_attr_lmax": 3, "layers": 3, "number_of_basis": 10,
    "radial_layers": 1, "radial_neurons": 128, "num_neighbors": 11, "num_nodes": 12, "reduce_output": False,
}


# ----------------------------------------------------------------------------- systems


@dataclasses.dataclass
class System:
    """Seed frames of one benchmark system.

    Attributes:
        name: ``polymer``, ``adk`` or ``argon box``.
        positions: (F, N, 3) float64, Å, oldest first (unwrapped).
        species: (N,) int64 codes into ``species_names``.
        species_names: Species names.
        cell: (3, 3) float64 lattice vectors as rows, Å, or None.
        periodic: Periodic along x, y and z (True) or open (False).
    """

    name: str
    positions: np.ndarray
    species: np.ndarray
    species_names: list[str]
    cell: np.ndarray | None
    periodic: bool

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[1])


def argon_box(n_atoms: int, n_frames: int = SEED_FRAMES, seed: int = 0) -> System:
    """A jittered simple-cubic lattice of round(n_atoms^(1/3))³ atoms at liquid-argon density.

    Args:
        n_atoms: Requested atom count (the box holds the nearest cube, at least 2³).
        n_frames: Frames: the lattice, then random-walk steps of :data:`SEED_STEP` Å.
        seed: Random seed.
    """
    side = max(2, round(n_atoms ** (1.0 / 3.0)))
    spacing = DENSITY ** (-1.0 / 3.0)
    rng = np.random.default_rng(seed)
    sites = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) * spacing
    first = sites + rng.normal(0.0, JITTER, sites.shape)
    steps = rng.normal(0.0, SEED_STEP, (n_frames - 1, *sites.shape))
    positions = np.concatenate([first[None], first + np.cumsum(steps, axis=0)])
    return System("argon box", positions, np.zeros(len(sites), dtype=np.int64), ["Ar"],
                  np.eye(3) * side * spacing, True)


def _from_frames(name: str, frames: Any) -> System:
    names, codes = np.unique(np.asarray(frames.species).astype(str), return_inverse=True)
    positions = np.asarray(frames.positions[-SEED_FRAMES:], dtype=np.float64)
    periodic = bool(frames.is_periodic)
    cell = np.asarray(frames.cell[-1], dtype=np.float64) if periodic else None
    return System(name, positions, codes.astype(np.int64), [str(n) for n in names], cell, periodic)


def build_system(size: int) -> System:
    """12: the bundled polymer; 3341: adenylate kinase (MDAnalysisTests); else an argon box."""
    import mdnext

    if size == 12:
        return _from_frames("polymer", mdnext.load(POLYMER, dt=0.00125))
    if size == 3341:
        from MDAnalysisTests.datafiles import DCD, PSF

        return _from_frames("adk", mdnext.load(DCD, topology=PSF))
    return argon_box(size)


# ----------------------------------------------------------------------------- models


def _seed_graph(system: System, cutoff: float, periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from mdnext.neighbors import radius_graph

    cell = torch.zeros(1, 3, 3, dtype=torch.float64) if system.cell is None else torch.from_numpy(system.cell)[None]
    pbc = torch.full((1, 3), periodic, dtype=torch.bool)
    return radius_graph(torch.from_numpy(system.positions[-1]), cutoff, None, cell, pbc)


def mdnext_model(system: System, cutoff: float = CUTOFF, seed: int = 0) -> torch.nn.Module:
    """mdnext's default equivariant model with a random head and scales set from the seed."""
    from mdnext.models.equivariant import EquivariantModel
    from mdnext.neighbors import minimum_image

    torch.manual_seed(seed)
    model = EquivariantModel(HISTORY, system.species_names, cutoff=cutoff)
    torch.nn.init.normal_(model.head.weight)
    displacements = torch.from_numpy(np.diff(system.positions, axis=0))
    if system.periodic:
        displacements = minimum_image(displacements, torch.from_numpy(system.cell), torch.ones(3, dtype=torch.bool))
    edge_index, _ = _seed_graph(system, cutoff, system.periodic)
    model.displacement_scale.fill_(float(displacements.square().mean().sqrt()))
    model.residual_scale.fill_(OUTPUT_SCALE)
    model.avg_num_neighbors.fill_(max(edge_index.shape[1] / system.n_atoms, 1.0))
    return model.eval()


def peer_network(radius: float) -> torch.nn.Module:
    """e3nn's ``gate_points_2101.Network`` with the tutorial's settings and ``max_radius = radius``."""
    from e3nn import o3
    from e3nn.nn.models.gate_points_2101 import Network

    kwargs = {key: value for key, value in PEER_NETWORK.items() if key != "irreps_edge_attr_lmax"}
    kwargs["irreps_hidden"] = o3.Irreps(kwargs["irreps_hidden"])
    kwargs["irreps_edge_attr"] = o3.Irreps.spherical_harmonics(PEER_NETWORK["irreps_edge_attr_lmax"])
    return Network(max_radius=radius, **kwargs)


def peer_model(system: System, radius: float, seed: int = 0) -> torch.nn.Module:
    """The peer as a history-0 displacement model: ``0.01 × Network({pos, batch})``, float32 inside."""
    from mdnext.models.base import DisplacementModel

    class PeerModel(DisplacementModel):
        name = "gate_points_2101"

        def __init__(self) -> None:
            super().__init__(0, system.species_names)
            torch.manual_seed(seed)
            self.network = peer_network(radius)

        def forward(self, data: Any) -> torch.Tensor:
            inputs = {"pos": data.pos.to(torch.float32)}
            if getattr(data, "batch", None) is not None:
                inputs["batch"] = data.batch
            return OUTPUT_SCALE * self.network(inputs).to(torch.float64)

    return PeerModel().eval()


# ----------------------------------------------------------------------------- one configuration


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _address_space_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "alloc" in text or "out of memory" in text


def measure(config: dict[str, Any], report: Callable[[str, dict[str, Any]], None] | None = None,
            enforce_limits: bool = False) -> dict[str, Any]:
    """Build one system and model, roll out, and time and measure it (in this process).

    Args:
        config: ``size``, ``model`` (``"mdnext"`` or ``"peer"``), ``steps``, ``threads``,
            ``peer_radius`` (Å), ``time_limit`` (s) and ``memory_limit_gb``.
        report: Called with ("SETUP" | "WARMUP", partial result) as the run goes.
        enforce_limits: Set ``RLIMIT_AS`` and ``SIGALRM`` (only in a process of its own).

    Returns:
        The row: ``n_atoms``, ``system``, ``model``, ``status`` ("ok" or "out of memory"),
        ``steps``, ``warmup_s``, ``rollout_s``, ``frames_per_s``, ``us_per_atom_step``, ``us_per_edge_step``,
        ``peak_rss_mib``, ``baseline_rss_mib``, ``increment_mib`` (MiB; ``memory_scope`` says
        whether they cover the whole run or, in a row cut short, only the setup and the warm-up),
        ``edges``, ``edges_per_atom``,
        ``graph_ms`` (mdnext only), ``parameters``, ``setup_s``.
    """
    from mdnext.rollout import rollout

    torch.set_num_threads(int(config["threads"]))
    started = time.perf_counter()
    system = build_system(int(config["size"]))
    is_peer = config["model"] == "peer"
    model = peer_model(system, config["peer_radius"]) if is_peer else mdnext_model(system)
    radius = config["peer_radius"] if is_peer else model.cutoff
    edge_index, _ = _seed_graph(system, radius, system.periodic and not is_peer)
    row: dict[str, Any] = {
        "size": int(config["size"]), "n_atoms": system.n_atoms, "system": system.name, "model": config["model"],
        "periodic": system.periodic and not is_peer, "cutoff": radius, "steps": int(config["steps"]),
        "edges": int(edge_index.shape[1]), "edges_per_atom": edge_index.shape[1] / system.n_atoms,
        "parameters": int(sum(p.numel() for p in model.parameters())), "threads": torch.get_num_threads(),
        "graph_ms": None,
    }
    if not is_peer:
        row["graph_ms"] = 1e3 * median_seconds(lambda: _seed_graph(system, radius, system.periodic), 3)[0]
    row["setup_s"] = time.perf_counter() - started
    row["baseline_rss_mib"] = _max_rss_mib()
    if report is not None:
        report("SETUP", row)
    if enforce_limits:
        space = _address_space_bytes()
        if space is not None:
            limit = space + int(config["memory_limit_gb"] * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        signal.alarm(max(1, math.ceil(config["time_limit"])))

    kwargs = {"cell": system.cell, "pbc": system.periodic, "max_step_rms": math.inf}
    seed = torch.from_numpy(system.positions)
    species = torch.from_numpy(system.species)
    try:
        started = time.perf_counter()
        rollout(model, seed, species, 1, **kwargs)
        row["warmup_s"] = time.perf_counter() - started
        row.update(peak_rss_mib=_max_rss_mib(), memory_scope="setup and warm-up")
        row["increment_mib"] = row["peak_rss_mib"] - row["baseline_rss_mib"]
        if report is not None:
            report("WARMUP", row)
        started = time.perf_counter()
        frames = rollout(model, seed, species, int(config["steps"]), **kwargs)
        seconds = time.perf_counter() - started
    except (MemoryError, RuntimeError) as exc:
        if not _is_out_of_memory(exc):
            raise
        row["status"] = "out of memory"
        row["error"] = str(exc).strip().splitlines()[-1][:300]
    else:
        if not bool(torch.isfinite(frames).all()):
            raise RuntimeError("the rollout produced non-finite positions")
        per_step = seconds / int(config["steps"])
        row.update(status="ok", rollout_s=seconds, frames_per_s=1.0 / per_step,
                   us_per_atom_step=1e6 * per_step / system.n_atoms,
                   us_per_edge_step=1e6 * per_step / row["edges"] if row["edges"] else None)
    finally:
        if enforce_limits:
            signal.alarm(0)
    row.update(peak_rss_mib=_max_rss_mib(), memory_scope="whole run")
    row["increment_mib"] = row["peak_rss_mib"] - row["baseline_rss_mib"]
    return row


def worker(config_json: str) -> int:
    """Entry point of the child process: measure one configuration, print tagged JSON lines."""

    def emit(tag: str, row: dict[str, Any]) -> None:
        print(f"{tag} {json.dumps(row)}", flush=True)

    emit("RESULT", measure(json.loads(config_json), report=emit, enforce_limits=True))
    return 0


def measure_isolated(config: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`measure` in a fresh Python process; a limit reached becomes the row's status."""
    env = {**os.environ, "OMP_NUM_THREADS": str(config["threads"]), "MKL_NUM_THREADS": str(config["threads"])}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(config)]
    # The child's own alarm stops it; this outer limit only covers a stuck setup.
    outer = config["time_limit"] + 600.0
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=outer,
                              cwd=REPO)
        stdout, returncode, stderr = done.stdout, done.returncode, done.stderr
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        returncode, stderr = None, ""
    tagged: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        tag, _, payload = line.partition(" ")
        if tag in ("SETUP", "WARMUP", "RESULT"):
            tagged[tag] = json.loads(payload)
    if "RESULT" in tagged:
        return tagged["RESULT"]
    row = tagged.get("WARMUP") or tagged.get("SETUP") or {"size": config["size"], "model": config["model"]}
    if returncode == -signal.SIGALRM:
        row["status"] = f"over {config['time_limit']:g} s"
    elif returncode == -signal.SIGKILL:
        row["status"] = "killed (out of memory?)"
    elif returncode is None:
        row["status"] = f"over {outer:g} s (setup)"
    else:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        row["status"] = "out of memory" if "alloc" in last.lower() or "memoryerror" in last.lower() else "error"
        row["error"] = last[:300]
    return row


# ----------------------------------------------------------------------------- the run and its report


def criteria(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The linear-cost and memory criteria on mdnext's rows, and the peer's limit.

    ``linear_cost``: µs per atom per step of the largest argon box over that of the smallest
    one with at least 1000 atoms (same density, so the same edges per atom; pass: ≤ 2), with
    the same ratio per edge. ``memory``: mdnext's peak RSS at the largest N (pass: ≤ 4096 MiB).
    ``peer_limit``: the first N at which the peer did not finish, and why (None: it finished
    everywhere it ran).
    """
    ours = [row for row in rows if row["model"] == "mdnext" and row.get("status") == "ok"]
    result: dict[str, Any] = {"linear_cost": None, "memory": None, "peer_limit": None}
    large = [row for row in ours if row["n_atoms"] >= 1000 and row["system"] == "argon box"]
    if len(large) >= 2:
        low = min(large, key=lambda row: row["n_atoms"])
        high = max(large, key=lambda row: row["n_atoms"])
        ratio = high["us_per_atom_step"] / low["us_per_atom_step"]
        result["linear_cost"] = {"from_n_atoms": low["n_atoms"], "to_n_atoms": high["n_atoms"], "ratio": ratio,
                                 "per_edge_ratio": high["us_per_edge_step"] / low["us_per_edge_step"],
                                 "max_ratio": MAX_PER_ATOM_RATIO, "passed": bool(ratio <= MAX_PER_ATOM_RATIO)}
    if ours:
        high = max(ours, key=lambda row: row["n_atoms"])
        result["memory"] = {"n_atoms": high["n_atoms"], "peak_rss_mib": high["peak_rss_mib"],
                            "max_mib": MAX_PEAK_MIB, "passed": bool(high["peak_rss_mib"] <= MAX_PEAK_MIB)}
    for row in rows:
        if row["model"] == "peer" and row.get("status") != "ok":
            result["peer_limit"] = {"n_atoms": row.get("n_atoms"), "size": row.get("size"), "status": row["status"]}
            break
    return result


def run(sizes: Sequence[int], steps: int = DEFAULT_STEPS, threads: int = 1, peer: bool = True,
        peer_radius: float = CUTOFF, time_limit: float = PEER_TIME_LIMIT, memory_limit_gb: float = MEMORY_LIMIT_GB,
        isolated: bool = True, log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Measure every (size, model), smallest size first; the JSON report.

    Args:
        sizes: Atom counts (see the module docstring for the systems).
        steps: Timed rollout steps after the 1-step warm-up.
        threads: torch threads.
        peer: Also run e3nn's ``gate_points_2101.Network``.
        peer_radius: The peer's ``max_radius``, Å.
        time_limit: The peer's limit on warm-up + timed rollout, s (mdnext's is 600 s).
        memory_limit_gb: Address space allowed beyond the baseline, GiB.
        isolated: One fresh process per configuration, with the limits (False: in this
            process, without limits; for the tests).
    """
    machine = machine_info()
    machine["torch_threads"] = threads
    rows: list[dict[str, Any]] = []
    for size in sorted(sizes):
        for model in ("mdnext", "peer") if peer else ("mdnext",):
            config = {"size": size, "model": model, "steps": steps, "threads": threads, "peer_radius": peer_radius,
                      "time_limit": time_limit if model == "peer" else MDNEXT_TIME_LIMIT,
                      "memory_limit_gb": memory_limit_gb}
            row = measure_isolated(config) if isolated else measure(config)
            rows.append(row)
            log(format_row(row))
    machine["load_average_end"] = load_average()
    return {
        "benchmark": "inference",
        "settings": {"sizes": sorted(sizes), "steps": steps, "warmup_steps": 1, "threads": threads,
                     "history": HISTORY, "cutoff": CUTOFF, "network_dtype": "float32", "peer": peer,
                     "peer_radius": peer_radius, "peer_network": PEER_NETWORK, "peer_time_limit_s": time_limit,
                     "mdnext_time_limit_s": MDNEXT_TIME_LIMIT, "memory_limit_gib": memory_limit_gb,
                     "isolated": isolated, "density": DENSITY, "output_scale": OUTPUT_SCALE},
        "machine": machine,
        "rows": rows,
        "criteria": criteria(rows),
    }


HEADER = (f"{'N':>7} {'system':<10} {'model':<7} {'status':<14} {'warm-up s':>9} {'frames/s':>9} {'µs/atom/step':>13} "
          f"{'µs/edge/step':>13} {'peak MiB':>9} {'+MiB':>7} {'edges/atom':>10} {'graph ms':>9}")


def format_row(row: dict[str, Any]) -> str:
    """One table line (— where a value is missing)."""

    def cell(key: str, width: int, spec: str) -> str:
        value = row.get(key)
        return f"{'—':>{width}}" if value is None else f"{value:>{width}{spec}}"

    status = row.get("status", "?")
    return (f"{row.get('n_atoms', row.get('size')):>7} {row.get('system', '—'):<10} {row['model']:<7} "
            f"{status:<14} {cell('warmup_s', 9, '.2f')} {cell('frames_per_s', 9, '.3g')} "
            f"{cell('us_per_atom_step', 13, '.1f')} "
            f"{cell('us_per_edge_step', 13, '.2f')} "
            f"{cell('peak_rss_mib', 9, '.0f')} {cell('increment_mib', 7, '.0f')} "
            f"{cell('edges_per_atom', 10, '.2f')} {cell('graph_ms', 9, '.2f')}")


def format_report(report: dict[str, Any], table: bool = True) -> str:
    """The table (unless ``table`` is False), the criteria and the machine, as printed."""
    lines = [HEADER, "-" * len(HEADER), *(format_row(row) for row in report["rows"]), ""] if table else []
    found = report["criteria"]
    cost = found["linear_cost"]
    if cost is not None:
        lines.append(f"linear cost (argon boxes): µs/atom/step at N = {cost['to_n_atoms']} over N = "
                     f"{cost['from_n_atoms']}: {cost['ratio']:.2f} (≤ {cost['max_ratio']:g}: "
                     f"{'PASS' if cost['passed'] else 'FAIL'}); per edge {cost['per_edge_ratio']:.2f}")
    memory = found["memory"]
    if memory is not None:
        lines.append(f"memory: peak RSS at N = {memory['n_atoms']}: {memory['peak_rss_mib']:.0f} MiB "
                     f"(≤ {memory['max_mib']:.0f}: {'PASS' if memory['passed'] else 'FAIL'})")
    if report["settings"]["peer"]:
        limit = found["peer_limit"]
        lines.append("peer limit: none reached" if limit is None
                     else f"peer limit: N = {limit['n_atoms'] or limit['size']}: {limit['status']}")
    machine = report["machine"]
    lines.append(f"{machine['cpu_model']}, {machine['cores_available']} cores, {machine['torch_threads']} torch "
                 f"thread(s), load average at start {machine['load_average_start']}, at end "
                 f"{machine.get('load_average_end')}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        help="atom counts: 12 polymer, 3341 adenylate kinase, others argon boxes of ~N atoms "
                             f"(default {' '.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed rollout steps (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help="also run e3nn's gate_points_2101.Network (default: yes)")
    parser.add_argument("--peer-radius", type=float, default=CUTOFF, help="the peer's max_radius, Å (default 5)")
    parser.add_argument("--time-limit", type=float, default=PEER_TIME_LIMIT,
                        help="the peer's limit on warm-up + rollout, s (default 60)")
    parser.add_argument("--memory-limit", type=float, default=MEMORY_LIMIT_GB,
                        help="address space beyond the baseline, GiB (default 8)")
    parser.add_argument("--output", type=Path, default=RESULTS / "inference.json", help="output JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is None and (min(args.sizes) < 1 or args.steps < 1 or args.threads < 1):
        parser.error("sizes, steps and threads must be >= 1")
    if not (args.time_limit > 0 and args.memory_limit > 0 and args.peer_radius > 0):
        parser.error("--time-limit, --memory-limit and --peer-radius must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table, write the JSON."""
    args = parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    print(HEADER, "-" * len(HEADER), sep="\n", flush=True)
    report = run(args.sizes, args.steps, args.threads, args.peer, args.peer_radius, args.time_limit,
                 args.memory_limit, log=lambda line: print(line, flush=True))
    print()
    print(format_report(report, table=False))
    write_json(report, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
