"""Neighbour-list benchmark: :func:`mdnext.neighbors.radius_graph` time against atom count.

For each N, N atoms at uniform random positions in a cube at liquid-argon number density
(0.0213 atoms/Å³, so the box edge is (N / 0.0213)^(1/3) Å: 8.3 Å for 12 atoms, 175 Å for
300k), cutoff 5 Å (about 11 neighbours per atom). The same positions are timed with periodic
boundaries (cubic cell) and without (an open cluster: atoms near the faces have fewer
neighbours). Each time is the median of ``--repeats`` calls after one warm-up call; the raw
vesin call on the same positions is timed beside it, so the table shows what the wrapper
(wrapping into the cell, int64 indices, dropping zero-length pairs) adds.

Usage (from the repository root)::

    python benchmarks/neighbors.py                                    # 12 … 300k atoms
    python benchmarks/neighbors.py --sizes 12 3341 10000 --repeats 3  # a quick look

Prints a table and writes ``benchmarks/results/neighbors.json`` (``--output``), with the
machine (CPU model, cores, threads, load average, versions).
"""

from __future__ import annotations

import argparse
import statistics
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
from reporting import load_average, machine_info, write_json
from vesin import NeighborList

from mdnext.neighbors import radius_graph

RESULTS = HERE / "results"
#: Liquid argon number density, atoms/Å³ (1.41 g/cm³ at 39.95 g/mol).
DENSITY = 0.0213
#: Neighbour-list cutoff, Å (mdnext's default).
CUTOFF = 5.0
DEFAULT_SIZES = (12, 3341, 10_000, 30_000, 100_000, 300_000)
DEFAULT_REPEATS = 5


def gas_box(n_atoms: int, density: float = DENSITY, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random positions in a cube at ``density``.

    Args:
        n_atoms: Number of atoms N.
        density: Number density, atoms/Å³.
        seed: Random seed.

    Returns:
        Positions (N, 3) float64 in [0, L) Å and the cell (3, 3) float64, Å, rows = lattice vectors.
    """
    edge = (n_atoms / density) ** (1.0 / 3.0)
    positions = np.random.default_rng(seed).uniform(0.0, edge, size=(n_atoms, 3))
    return positions, np.eye(3) * edge


def median_seconds(function: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median and minimum wall time of ``repeats`` calls after one warm-up call, and the last result."""
    result = function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), result


def time_neighbors(n_atoms: int, periodic: bool, repeats: int = DEFAULT_REPEATS, cutoff: float = CUTOFF,
                   seed: int = 0) -> dict[str, Any]:
    """Time ``radius_graph`` (and raw vesin) on one gas box.

    Returns:
        ``n_atoms``, ``periodic``, ``edges`` (directed, both directions counted),
        ``edges_per_atom``, ``median_ms``, ``min_ms``, ``us_per_atom`` (median / N, µs),
        ``vesin_median_ms`` (vesin's ``compute`` alone) and ``box_edge`` (Å).
    """
    positions, cell = gas_box(n_atoms, seed=seed)
    pos = torch.from_numpy(positions)
    cell_t = torch.from_numpy(cell).unsqueeze(0)
    pbc = torch.full((1, 3), periodic, dtype=torch.bool)
    median, fastest, (edge_index, _) = median_seconds(lambda: radius_graph(pos, cutoff, None, cell_t, pbc), repeats)
    calculator = NeighborList(cutoff=cutoff, full_list=True)
    box = cell if periodic else np.zeros((3, 3))
    vesin_median, _, _ = median_seconds(lambda: calculator.compute(positions, box, periodic, "ijD"), repeats)
    edges = int(edge_index.shape[1])
    return {
        "n_atoms": n_atoms, "periodic": periodic, "edges": edges, "edges_per_atom": edges / n_atoms,
        "median_ms": 1e3 * median, "min_ms": 1e3 * fastest, "us_per_atom": 1e6 * median / n_atoms,
        "vesin_median_ms": 1e3 * vesin_median, "box_edge": float(cell[0, 0]),
    }


def run(sizes: Sequence[int], repeats: int = DEFAULT_REPEATS, cutoff: float = CUTOFF,
        log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Time every size, periodic and open; the JSON report (``rows``, ``settings``, ``machine``)."""
    machine = machine_info()
    rows = []
    for n_atoms in sizes:
        for periodic in (True, False):
            rows.append(time_neighbors(n_atoms, periodic, repeats, cutoff))
            log(format_row(rows[-1]))
    machine["load_average_end"] = load_average()
    return {
        "benchmark": "neighbors",
        "settings": {"sizes": list(sizes), "repeats": repeats, "cutoff": cutoff, "density": DENSITY,
                     "system": "uniform random positions in a cube at liquid-argon density",
                     "function": "mdnext.neighbors.radius_graph"},
        "machine": machine,
        "rows": rows,
        "per_atom_ratio": per_atom_ratios(rows),
    }


def per_atom_ratios(rows: Sequence[dict[str, Any]], smallest: int = 1000) -> dict[str, Any]:
    """µs per atom at the largest N over that at the smallest N ≥ ``smallest``, periodic and open."""
    ratios: dict[str, Any] = {}
    for periodic, key in ((True, "periodic"), (False, "open")):
        chosen = [row for row in rows if row["periodic"] == periodic and row["n_atoms"] >= smallest]
        if len(chosen) >= 2:
            low = min(chosen, key=lambda row: row["n_atoms"])
            high = max(chosen, key=lambda row: row["n_atoms"])
            ratios[key] = {"from": low["n_atoms"], "to": high["n_atoms"],
                           "ratio": high["us_per_atom"] / low["us_per_atom"]}
    return ratios


HEADER = f"{'N':>8} {'boundary':>9} {'edges':>10} {'edges/atom':>11} {'median ms':>10} {'µs/atom':>8} {'vesin ms':>9}"


def format_row(row: dict[str, Any]) -> str:
    """One table line."""
    return (f"{row['n_atoms']:>8} {'periodic' if row['periodic'] else 'open':>9} {row['edges']:>10} "
            f"{row['edges_per_atom']:>11.2f} {row['median_ms']:>10.3f} {row['us_per_atom']:>8.3f} "
            f"{row['vesin_median_ms']:>9.3f}")


def format_table(report: dict[str, Any], table: bool = True) -> str:
    """The rows as a text table (unless ``table`` is False), with the per-atom cost ratios and the machine."""
    lines = [HEADER, "-" * len(HEADER), *(format_row(row) for row in report["rows"])] if table else []
    for key, ratio in report["per_atom_ratio"].items():
        lines.append(f"{key}: µs/atom at N = {ratio['to']} over N = {ratio['from']}: {ratio['ratio']:.2f}")
    machine = report["machine"]
    lines.append(f"{machine['cpu_model']}, {machine['cores_available']} cores, {machine['torch_threads']} torch "
                 f"thread(s), load average at start {machine['load_average_start']}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        help=f"atom counts (default {' '.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed calls per case (median)")
    parser.add_argument("--cutoff", type=float, default=CUTOFF, help="cutoff, Å (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--output", type=Path, default=RESULTS / "neighbors.json", help="output JSON")
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or args.repeats < 1 or args.threads < 1 or not args.cutoff > 0:
        parser.error("sizes, repeats and threads must be >= 1 and the cutoff > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table, write the JSON."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(HEADER, "-" * len(HEADER), sep="\n", flush=True)
    report = run(args.sizes, args.repeats, args.cutoff, log=lambda line: print(line, flush=True))
    print()
    print(format_table(report, table=False))
    write_json(report, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
