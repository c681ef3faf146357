"""How far linear forecasts reach: the iterated centred autoregressive prior against the best
*direct* linear forecaster of each horizon, on the test split of a trajectory.

The prior (``centred_autoregressive``, the equivariant model's default) predicts one step and is
iterated. The direct forecaster is the same model fitted for each horizon h separately on the
displacement h steps ahead instead of one: the centroid's h-step displacement from the
centroid's last K one-step displacements (one coefficient per lag), and every atom's h-step
displacement relative to the centroid from its last K relative displacements (one coefficient
per lag, shared by atoms and x/y/z), applied once. If the iterated prior scores
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
from collections.abc import Iterable, Iterator, Sequence
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
from mdnext.data import Datasets, encode_species, make_loader, species_list  # noqa: E402
from mdnext.errors import MDNextError  # noqa: E402
from mdnext.evaluation import evaluation_datasets  # noqa: E402
from mdnext.frames import Frames  # noqa: E402
from mdnext.metrics import even_subset  # noqa: E402
from mdnext.models.base import DisplacementModel  # noqa: E402
from mdnext.rollout import rollout  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "paths.npz"
RESULTS = HERE / "results"


def ahead(loader: Iterable[Any], horizon: int) -> Iterator[Any]:
    """The loader's windows with target ``y`` = the displacement ``horizon`` steps ahead, Å."""
    for batch in loader:
        if horizon > 1:
            batch.y = batch.future[:, :horizon].sum(dim=1)
        yield batch


def fit_direct(datasets: Datasets, lags: int, horizon: int) -> DisplacementModel:
    """The centred autoregressive model fitted (closed form) on the h-step targets of the
    training windows that reach h steps ahead: one application forecasts h steps."""
    direct = build_model("centred_autoregressive", {"history": lags, "species": datasets.species})
    train = datasets.train.with_horizon(horizon) if horizon > 1 else datasets.train
    direct.fit_closed_form(ahead(make_loader(train, 64), horizon))
    return direct.eval()


def rmsd(predicted: np.ndarray, true: np.ndarray) -> float:
    """Mean over starts of the RMSD over atoms (S, N, 3 arrays), Å."""
    return float(np.sqrt(((predicted - true) ** 2).sum(-1).mean(-1)).mean())


def run(frames: Frames, lags: int = 8, horizons: Sequence[int] = (1, 10, 100), max_starts: int = 64,
        test_fraction: float = 0.2, val_fraction: float = 0.1) -> dict[str, Any]:
    """RMSD (Å) of the iterated prior, the direct linear forecasters and standing still, per horizon.

    The prior and the direct fits use the training windows of
    :func:`~mdnext.evaluation.evaluation_datasets` (for h steps, those that reach h steps ahead);
    the starts are at most ``max_starts`` evenly spaced test frames that fit the longest horizon.
    """
    species = species_list([frames])
    datasets = evaluation_datasets([frames], lags, 1, species, test_fraction, val_fraction)
    test = datasets.ranges["test"][0]
    longest = max(horizons)
    starts = even_subset(np.arange(test.start + lags, test.stop - longest), max_starts)
    if not starts.size:
        raise MDNextError(f"the test split ({len(test)} frames) is too short for {lags} lags and {longest} steps")
    positions = np.asarray(frames.positions, dtype=np.float64)

    seed = torch.from_numpy(np.stack([positions[t - lags:t + 1] for t in starts]))
    codes = encode_species(frames.species, species)
    prior = fit_direct(datasets, lags, 1)  # the one-step fit: the prior itself
    iterated = rollout(prior, seed, codes, longest, 1, max_step_rms=float("inf")).numpy()

    rows = []
    for h in horizons:
        direct = rollout(fit_direct(datasets, lags, h), seed, codes, 1, 1, max_step_rms=float("inf"))[:, 0].numpy()
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
