"""How far linear forecasts reach: the iterated centred autoregressive prior against the best
*direct* linear forecaster of each horizon, on the test split of a trajectory.

The prior (``centred_autoregressive``, the equivariant model's default) predicts one step and is
iterated. The direct forecaster is fitted by least squares for each horizon h separately: the
centroid's displacement over h steps from the centroid's last K one-step displacements (one
coefficient per lag), and every atom's displacement relative to the centroid over h steps from
its last K relative displacements (one coefficient per lag, shared by atoms and x/y/z) — the
same features as the prior, but aimed at step h instead of step 1. If the iterated prior scores
about as well as the direct fit at h, no linear forecast does better there, and a learned model
has to find nonlinear structure to beat it.

Usage::

    python benchmarks/linear_horizon.py                      # ../shared/data/paths.npz
    python benchmarks/linear_horizon.py data/paths.npz --horizons 1,10,100

Prints a table and writes ``benchmarks/results/linear_horizon.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script or imported from the tests
    sys.path.insert(0, str(HERE))

from reporting import machine_info, run_script, write_json  # noqa: E402

import mdnext  # noqa: E402
from mdnext.checkpoint import build_model  # noqa: E402
from mdnext.data import encode_species, species_list  # noqa: E402
from mdnext.errors import MDNextError  # noqa: E402
from mdnext.evaluation import evaluation_datasets  # noqa: E402
from mdnext.frames import Frames  # noqa: E402
from mdnext.metrics import even_subset  # noqa: E402
from mdnext.rollout import rollout  # noqa: E402
from mdnext.trainer import TrainConfig, fit  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "paths.npz"
RESULTS = HERE / "results"


def centred_lags(positions: np.ndarray, t: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroid lags (S, K, 3) and relative lags (S, N, K, 3) of the one-step displacements
    ending at frames ``t`` (S,): lag j is ``x[t - j] - x[t - j - 1]``, Å."""
    steps = np.stack([positions[t - j] - positions[t - j - 1] for j in range(lags)], axis=2)  # S, N, K, 3
    centroid = steps.mean(axis=1)
    return centroid, steps - centroid[:, None]


def fit_direct(positions: np.ndarray, t: np.ndarray, lags: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients (centroid (K,), relative (K,)) of the h-step forecast from frames ``t``."""
    centroid, relative = centred_lags(positions, t, lags)
    ahead = positions[t + horizon] - positions[t]  # S, N, 3
    ahead_centroid = ahead.mean(axis=1)
    ahead_relative = ahead - ahead_centroid[:, None]
    a = np.linalg.lstsq(centroid.transpose(0, 2, 1).reshape(-1, lags), ahead_centroid.reshape(-1), rcond=None)[0]
    b = np.linalg.lstsq(relative.transpose(0, 1, 3, 2).reshape(-1, lags), ahead_relative.reshape(-1), rcond=None)[0]
    return a, b


def predict_direct(positions: np.ndarray, t: np.ndarray, lags: int, coefficients: tuple[np.ndarray, np.ndarray]
                   ) -> np.ndarray:
    """Positions (S, N, 3) h steps after frames ``t`` by the direct forecaster, Å."""
    centroid, relative = centred_lags(positions, t, lags)
    a, b = coefficients
    return positions[t] + np.einsum("skc,k->sc", centroid, a)[:, None] + np.einsum("snkc,k->snc", relative, b)


def rmsd(predicted: np.ndarray, true: np.ndarray) -> float:
    """Mean over starts of the RMSD over atoms (S, N, 3 arrays), Å."""
    return float(np.sqrt(((predicted - true) ** 2).sum(-1).mean(-1)).mean())


def run(frames: Frames, lags: int = 8, horizons: Sequence[int] = (1, 10, 100), max_starts: int = 64,
        test_fraction: float = 0.2, val_fraction: float = 0.1) -> dict[str, Any]:
    """RMSD (Å) of the iterated prior, the direct linear forecasters and standing still, per horizon.

    The prior and the direct fits use the same training windows (those of
    :func:`~mdnext.evaluation.evaluation_datasets`, which reach at least 8 frames back);
    the starts are at most ``max_starts`` evenly spaced test frames that fit the longest horizon.
    """
    species = species_list([frames])
    datasets = evaluation_datasets([frames], lags, 1, species, test_fraction, val_fraction)
    train, test = datasets.ranges["train"][0], datasets.ranges["test"][0]
    longest = max(horizons)
    starts = even_subset(np.arange(test.start + lags, test.stop - longest), max_starts)
    if not starts.size:
        raise MDNextError(f"the test split ({len(test)} frames) is too short for {lags} lags and {longest} steps")
    positions = np.asarray(frames.positions, dtype=np.float64)

    prior = build_model("centred_autoregressive", {"history": lags, "species": species})
    fit(prior, datasets.train, datasets.val, TrainConfig(quiet=True))
    seed = torch.from_numpy(np.stack([positions[t - lags:t + 1] for t in starts]))
    with torch.no_grad():
        iterated = rollout(prior.eval(), seed, encode_species(frames.species, species), longest, 1,
                           max_step_rms=float("inf")).numpy()

    rows = []
    for h in horizons:
        fitted = np.arange(train.start + datasets.history, train.stop - h)  # the prior's windows (≥ 8 lags back)
        direct = predict_direct(positions, starts, lags, fit_direct(positions, fitted, lags, h))
        true = positions[starts + h]
        rows.append({"horizon": int(h), "iterated_prior": rmsd(iterated[:, h - 1], true),
                     "direct_linear": rmsd(direct, true), "zero": rmsd(positions[starts], true)})
    return {"lags": lags, "starts": [int(starts[0]), int(starts[-1]), int(starts.size)], "rows": rows}


def table(report: dict[str, Any]) -> str:
    """The rows as text."""
    lines = [f"{'horizon':>8} {'iterated prior':>16} {'direct linear':>15} {'zero':>10}"]
    for row in report["rows"]:
        lines.append(f"{row['horizon']:>8} {row['iterated_prior']:>16.4g} {row['direct_linear']:>15.4g} {row['zero']:>10.4g}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="Trajectory (default: the tutorial's).")
    parser.add_argument("--lags", type=int, default=8, help="Past displacements K (the baselines' 8).")
    parser.add_argument("--horizons", default="1,10,100", help="Comma-separated steps.")
    parser.add_argument("--output", type=Path, default=RESULTS / "linear_horizon.json")
    args = parser.parse_args(argv)

    def measure() -> Path:
        machine = machine_info()
        frames = mdnext.load(args.data)
        report = {**run(frames, args.lags, [int(h) for h in args.horizons.split(",")]), "data": str(args.data),
                  "machine": machine}
        print(table(report))
        write_json(report, args.output)
        return args.output

    return run_script("linear_horizon.py", measure)


if __name__ == "__main__":
    sys.exit(main())
