"""Train on a DCD larger than the memory allowed, with bounded peak RSS.

The trajectory is MDAnalysisTests' adenylate kinase (PSF + DCD: 3341 atoms, 98 frames) tiled
into a multi-GB DCD: the 98 frames forwards, then backwards, again and again (so neighbouring
frames stay neighbours and no window jumps). mdnext reads it through its on-disk cache
(:mod:`mdnext.cache`: one streaming pass writes a float64 copy that training memory-maps and
reads window by window) and trains its default equivariant model for a time budget, at most
``--max-windows`` windows per epoch and split. The model's own memory grows with the edges in a
batch, not with the trajectory: at the default 5 Å cutoff the protein has 43 neighbours per
atom and one training window alone takes about 1.1 GB, so the benchmark uses a 3 Å cutoff
(11 neighbours per atom, as in a liquid at 5 Å) and one window per batch.

Everything runs in a child process whose resident set size is sampled every 0.2 s and whose
``ru_maxrss`` is read at the end; the table gives the peak of each phase (cache build, training
with evaluation) and the whole run. Prints a table and writes JSON.

    python benchmarks/large_trajectory.py                          # 3 GB DCD, 5-minute training
    python benchmarks/large_trajectory.py --gigabytes 0.2 --minutes 0.5   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script or imported from the tests
    sys.path.insert(0, str(HERE))

from reporting import write_json

RESULTS = HERE / "results"
DATA = HERE / "data"


def tile_dcd(target: Path, gigabytes: float) -> dict[str, Any]:
    """Write the adenylate kinase DCD tiled (forwards, backwards, …) to at least ``gigabytes`` GB."""
    import MDAnalysis as mda
    import numpy as np
    from MDAnalysisTests.datafiles import DCD, PSF

    universe = mda.Universe(PSF, DCD)
    block = np.stack([universe.atoms.positions.copy() for _ in universe.trajectory])
    pingpong = np.concatenate([block, block[-2:0:-1]])
    frame_bytes = universe.atoms.n_atoms * 3 * 4 + 6 * 4  # three float32 records with their markers
    n_frames = int(np.ceil(gigabytes * 1e9 / frame_bytes))
    partial = target.with_suffix(".partial.dcd")
    with mda.Writer(str(partial), n_atoms=universe.atoms.n_atoms, dt=universe.trajectory.dt) as writer:
        for i in range(n_frames):
            universe.atoms.positions = pingpong[i % len(pingpong)]
            writer.write(universe.atoms)
    os.replace(partial, target)
    return {"frames": n_frames, "atoms": int(universe.atoms.n_atoms), "bytes": target.stat().st_size}


class RssSampler:
    """Samples this process's resident set size (MB) in a background thread, per named phase."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.phase, self.peaks = interval, "start", {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> None:
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), self.rss_mb())

    def enter(self, phase: str) -> None:
        self.sample()
        self.phase = phase

    def stop(self) -> dict[str, float]:
        self.sample()
        self._stop.set()
        self._thread.join()
        return self.peaks


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Cache, train and evaluate in this process; returns timings, RSS peaks and metrics."""
    sampler = RssSampler()
    import torch

    torch.set_num_threads(args.threads)
    from MDAnalysisTests.datafiles import PSF

    import mdnext
    from mdnext.trainer import TrainConfig

    result: dict[str, Any] = {"rss_after_imports_mb": sampler.rss_mb()}
    sampler.enter("cache build")
    started = time.perf_counter()
    frames = mdnext.load(args.dcd, topology=PSF, cache=args.cache_dir)
    result["cache_seconds"] = time.perf_counter() - started
    result["frames"], result["atoms"] = frames.n_frames, frames.n_atoms
    result["positions_gigabytes"] = frames.nbytes / 1e9
    sampler.enter("training + evaluation")
    started = time.perf_counter()
    config = TrainConfig(time_limit=60 * args.minutes, batch_size=args.batch_size, max_windows=args.max_windows,
                         quiet=True)
    trained = mdnext.train(frames, history=args.history, horizons=(1, 10), config=config,
                           model_options={"cutoff": args.cutoff})
    result["train_and_evaluate_seconds"] = time.perf_counter() - started
    sampler.enter("end")
    peaks = sampler.stop()
    result["rss_peak_mb_by_phase"] = peaks
    result["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics = trained.metrics
    result["metrics"] = {key: metrics[key] for key in ("mse", "baselines", "rollout_rmsd", "train_seconds", "epochs",
                                                       "splits", "equivariance_error_relative")}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=3.0, help="Size of the tiled DCD (GB).")
    parser.add_argument("--minutes", type=float, default=5.0, help="Training budget.")
    parser.add_argument("--max-windows", type=int, default=256, help="Windows per epoch and per split.")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--cutoff", type=float, default=3.0, help="Neighbour cutoff, Å (5 Å: 43 edges per atom).")
    parser.add_argument("--history", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="Keep the tiled DCD and the cache in benchmarks/data.")
    parser.add_argument("--json", type=Path, default=RESULTS / "large_trajectory.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dcd", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    with tempfile.TemporaryDirectory(dir=DATA if args.keep else None) as scratch:
        folder = DATA if args.keep else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        dcd = folder / f"adk_tiled_{args.gigabytes:g}GB.dcd"
        started = time.perf_counter()
        made = tile_dcd(dcd, args.gigabytes) if not dcd.is_file() else {"bytes": dcd.stat().st_size}
        tile_seconds = time.perf_counter() - started
        command = [sys.executable, __file__, "--child", "--dcd", str(dcd), "--cache-dir", str(folder / "cache"),
                   "--minutes", str(args.minutes), "--max-windows", str(args.max_windows),
                   "--batch-size", str(args.batch_size), "--cutoff", str(args.cutoff), "--history", str(args.history), "--threads", str(args.threads)]
        environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_DYNAMIC": "FALSE"}
        done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
        if done.returncode != 0:
            sys.exit(f"the training process failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(dcd_bytes=made["bytes"], tile_seconds=tile_seconds, settings=vars(args) | {"json": str(args.json)},
                  machine={"cpu_count": os.cpu_count(), "platform": platform.platform(),
                           "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9})
    for key in ("dcd", "cache_dir"):
        result["settings"].pop(key, None)
    print(f"DCD {result['dcd_bytes'] / 1e9:.2f} GB: {result['frames']} frames × {result['atoms']} atoms; "
          f"float64 cache {result['positions_gigabytes']:.2f} GB built in {result['cache_seconds']:.0f} s")
    print(f"{'phase':<24}{'peak RSS (MB)':>16}")
    for phase, peak in result["rss_peak_mb_by_phase"].items():
        print(f"{phase:<24}{peak:>16.0f}")
    print(f"{'whole run (ru_maxrss)':<24}{result['ru_maxrss_mb']:>16.0f}")
    metrics = result["metrics"]
    print(f"trained {metrics['epochs']} epochs in {metrics['train_seconds']:.0f} s; test mse {metrics['mse']:.4g} Å² "
          f"(autoregressive {metrics['baselines']['autoregressive']:.4g}, zero {metrics['baselines']['zero']:.4g})")
    write_json(result, args.json)


if __name__ == "__main__":
    main()
