"""The e3nn trajectory tutorial, reproduced with mdnext's API.

The tutorial ("Equivariant Neural Network for Predicting Trajectories", dmol.pub) trains an
e3nn network and a linear baseline ``frame @ W + b`` to predict the next frame of a 12-bead
2D polymer (``paths.npz``) and tests them on the last 20% of the frames. In mdnext that
setup is ``history=0`` with a zero prior: the network sees the current positions only.
mdnext's default reads 4 past displacements on top of a fitted centred autoregressive prior.
Told that the beads form a chain (``bonds="chain"``), the model also sees which neighbours
are bonded and starts from a force field fitted to the trajectory (``force_matched``). All
three are printed beside the baselines (``linear`` is the tutorial's), followed by the
equivariance error of the e3nn models and of the linear model.

Data: ``../shared/data/paths.npz`` (the tutorial's own file) when it is there, else the
bundled ``data/paths.npz``; both hold frames 0.00125 ps apart (not stored in the file).

Run from anywhere::

    python examples/tutorial.py                  # all 2048 frames, 20 s per model: about 90 s
    python examples/tutorial.py --quick          # smoke test: 150 frames, 1 epoch: ~6 s
    python examples/tutorial.py --time-limit 300 # train longer

Times measured on 2 idle CPU cores. On a machine busy with other jobs, run with
``OMP_NUM_THREADS=1``: there two torch threads waiting for each other were up to 5x slower.

Training stops at the first epoch boundary after ``--time-limit`` seconds, so the scores
depend a little on the machine's speed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mdnext
from mdnext.evaluation import format_table
from mdnext.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[1]
TUTORIAL_DATA = REPO.parent / "shared" / "data" / "paths.npz"
BUNDLED_DATA = REPO / "data" / "paths.npz"
DT_PS = 0.00125  # time between the frames of paths.npz


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="paths.npz to read (default: the tutorial's file if present, else the bundled one)")
    parser.add_argument("--frames", type=int, default=None, help="use the first FRAMES frames (default: all)")
    parser.add_argument("--epochs", type=int, default=200, help="at most this many epochs per model")
    parser.add_argument("--time-limit", type=float, default=20.0, help="training budget per model, s (default 20)")
    parser.add_argument("--horizons", default="1,10,100", help="rollout horizons in frames (default 1,10,100)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 150 frames, 1 epoch, horizon 1")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.epochs, args.horizons = 150, 1, "1"
    return args


def main() -> None:
    args = parse_args()
    path = args.data or (TUTORIAL_DATA if TUTORIAL_DATA.is_file() else BUNDLED_DATA)
    frames = mdnext.load(path, dt=DT_PS)[: args.frames]  # (T, 12, 2) padded to z = 0, Å
    chain = mdnext.load(path, dt=DT_PS, bonds="chain")[: args.frames]  # the same, bonds (i, i + 1)
    horizons = [int(h) for h in args.horizons.split(",")]
    print(f"data: {path} -> {frames}")

    config = TrainConfig(epochs=args.epochs, time_limit=args.time_limit, seed=0, quiet=True)
    setups = {
        "e3nn, tutorial (k=0)": (frames, {"history": 0, "model_options": {"prior": "zero"}}),
        "e3nn, mdnext (k=4)": (frames, {"history": 4}),
        "e3nn + bonds (k=4)": (chain, {"history": 4}),
    }
    results = {}
    for name, (data, setup) in setups.items():
        started = time.perf_counter()
        trained = mdnext.train(data, config=config, horizons=horizons, **setup)
        metrics = trained.metrics
        print(f"\n{name}: {metrics['epochs']} epochs, {time.perf_counter() - started:.0f} s with evaluation")
        print(format_table(metrics, name))
        results[name] = metrics

    print("\nequivariance error, max |f(g.x) - g.f(x)| over rotations, reflections, translations, permutations")
    for name, metrics in results.items():
        print(f"  {name:<24}{metrics['equivariance_error']:10.3g} Å "
              f"({metrics['equivariance_error_relative']:.3g} of the displacement RMS)")
    metrics = next(iter(results.values()))
    linear = metrics["baseline_equivariance_error"]["linear"]
    print(f"  {'linear (frame @ W + b)':<24}{linear:10.3g} Å "
          f"({linear / metrics['displacement_rms']:.3g} of the displacement RMS)")


if __name__ == "__main__":
    main()
