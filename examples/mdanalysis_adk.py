"""Learn adenylate kinase's C-alpha motion from an MDAnalysis Universe and continue it.

MDAnalysisTests ships 98 frames of adenylate kinase (PSF + DCD, frames 1 ps apart). The
script selects the 214 C-alpha atoms with MDAnalysis, trains mdnext's e3nn model on them
(history 2, an 8 Å neighbour cutoff, which suits a C-alpha trace), extrapolates 20 frames,
turns them back into an MDAnalysis Universe with the protein's topology, measures the RMSD
of each new frame against the last input frame with ``MDAnalysis.analysis.rms.RMSD``, and
writes ``adk_next.dcd`` (with the true 1 ps time step).

Run::

    python examples/mdanalysis_adk.py                   # 20 s of training: 26 s in all
    python examples/mdanalysis_adk.py --out results/    # keep adk_next.dcd in results/
    python examples/mdanalysis_adk.py --quick           # smoke test: 60 atoms, 1 epoch: ~6 s

Times measured on 2 idle CPU cores (on a busy machine, set ``OMP_NUM_THREADS=1``).

Needs MDAnalysisTests (``pip install MDAnalysisTests``) for the data files.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import MDAnalysis as mda
from MDAnalysis.analysis.rms import RMSD
from MDAnalysis.coordinates.DCD import DCDReader
from MDAnalysisTests.datafiles import DCD, PSF

import mdnext
from mdnext.evaluation import format_table
from mdnext.plugins.mdanalysis import to_universe
from mdnext.trainer import TrainConfig

# MDAnalysis's DCD reader warns about a change planned for MDAnalysis 3.0 that does not matter here.
warnings.filterwarnings("ignore", message="DCDReader currently makes independent timesteps")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--select", default="name CA", help='atoms to learn (default "name CA")')
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: a new temporary one)")
    parser.add_argument("-n", "--n-frames", type=int, default=20, help="frames to extrapolate (default 20)")
    parser.add_argument("--epochs", type=int, default=200, help="at most this many epochs")
    parser.add_argument("--time-limit", type=float, default=20.0, help="training budget, s (default 20)")
    parser.add_argument("--cutoff", type=float, default=8.0, help="neighbour cutoff, Å (default 8)")
    parser.add_argument("--force", action="store_true", help="overwrite adk_next.dcd")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: the C-alpha atoms of residues 1-60, 1 epoch, 5 frames")
    args = parser.parse_args()
    if args.quick:
        args.select, args.epochs, args.n_frames = "name CA and resid 1:60", 1, 5
    return args


def main() -> None:
    args = parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mdnext_adk_"))
    out.mkdir(parents=True, exist_ok=True)

    u = mda.Universe(PSF, DCD)
    ca = u.select_atoms(args.select)
    frames = mdnext.load(ca)  # or mdnext.plugins.mdanalysis.from_universe(u, select=args.select)
    print(f"input: {frames}")

    # 98 frames: the default split tests on the last 20, so rollouts are scored up to 10 frames.
    config = TrainConfig(epochs=args.epochs, batch_size=16, time_limit=args.time_limit, quiet=True)
    trained = mdnext.train(frames, history=2, model_options={"cutoff": args.cutoff}, config=config,
                           horizons=(1,) if args.quick else (1, 10))
    print(f"\ntrained {trained.metrics['epochs']} epochs in {trained.metrics['train_seconds']:.0f} s")
    print(format_table(trained.metrics, "e3nn (k=2)"))

    future = mdnext.extrapolate(trained, frames, args.n_frames)  # Frames, time continuing at 1 ps
    v = to_universe(future, template=ca)  # same atoms, names and residues as the selection
    rmsd = RMSD(v, reference=ca, ref_frame=frames.n_frames - 1).run()  # superposed, Å
    print(f"\nRMSD of the extrapolated frames to the last input frame (t = {frames.times[-1]:g} ps)")
    print(f"{'frame':>6}{'time (ps)':>11}{'RMSD (Å)':>10}")
    for frame, time, value in rmsd.results.rmsd:
        print(f"{int(frame) + 1:>6}{time:>11.2f}{value:>10.3f}")

    path = out / "adk_next.dcd"
    mdnext.save(future, path, overwrite=args.force)
    with DCDReader(str(path)) as written:
        print(f"\nwrote {path}: {written.n_frames} frames of {written.n_atoms} atoms, dt {written.dt:g} ps")


if __name__ == "__main__":
    main()
