"""Benchmark: the dmol.pub tutorial's e3nn model against mdnext's default, on the tutorial's data.

Runs, in one process and on the same trajectory:

1. the tutorial's own setup, with e3nn's ``gate_points_2101.Network`` trained as the tutorial
   trains it (its graph code, batch size 1, Adam, 16 epochs), and the tutorial's linear
   baseline ``frame @ W + b`` trained as the tutorial trains it;
2. mdnext's default, with the ``mdnext train`` defaults read from the CLI (now: equivariant
   model, history 4, stride 1, 200 epochs, batch 64, lr 3e-3) under a wall-clock budget, and
   every baseline mdnext reports.

It prints one table and writes the same as JSON (with machine information).

**The tutorial's setup**, read from its source notebook ``applied/e3nn_traj.ipynb`` in
https://github.com/whitead/dmol-book and the rendered page
https://dmol.pub/applied/e3nn_traj.html ("Equivariant Neural Network for Predicting
Trajectories", Sam Cox). Verified there:

* data: ``paths.npz``, key ``arr``, (2048, 12, 2), padded to 3D with z = 0;
* features are frames 0…2046, labels frames 1…2047; the e3nn model's target is the
  displacement ``label - feature`` ("predict the distance to the next frame");
* one ``torch_geometric`` ``Data(x=None, pos=frame, y=displacement)`` per frame, both float32;
* split without shuffling: the first 1637 frames train, the last 410 test (80:20);
* ``Network(irreps_in=None, irreps_hidden="5x0e + 5x0o + 5x1e + 5x1o", irreps_out="1x1o",
  irreps_node_attr=None, irreps_edge_attr=spherical_harmonics(3), layers=3, max_radius=3.5,
  number_of_basis=10, radial_layers=1, radial_neurons=128, num_neighbors=11, num_nodes=12,
  reduce_output=False)``; the network builds its own radius graph from ``pos``;
* training: ``DataLoader(batch_size=1, shuffle=False)``, ``torch.optim.Adam(lr=1e-4)``
  (**1e-4**, not 1e-6: 1e-6 is the linear baseline's step size), 16 epochs, loss
  ``torch.mean((yhat - data.y) ** 2)`` per frame; after every epoch the test loss is the mean
  of the per-frame losses over the 410 test frames (the page reports 3.5619e-05 after 16);
* linear baseline: ``yhat = frame @ w + b`` on *positions* (the next frame, not a
  displacement), ``w = zeros((3, 3))``, scalar ``b = 0.0``, plain gradient descent with step
  1e-6 on each training frame's ``mean((yhat - y) ** 2)``, 12 epochs.

Not in the tutorial, added here: a fixed seed for the network's initialisation; the size of
the training split for a shortened trajectory (``--max-frames``) is ``int(0.8 * (T - 1))``,
which is 1637 for T = 2048. The training passes are timed apart from the test passes.

**Metrics.** Test MSE is :func:`mdnext.metrics.mse`: the mean over windows, atoms and x/y/z of
the squared displacement error, in data units² (Å² for the bundled file). The table scores
every model on mdnext's test windows (the last 20% of frames; windows carry 8 past
displacements for the baselines, so they start 8 frames into that span); the tutorial's
models are also scored on the tutorial's own 410 test frames. Rollout RMSD is
:func:`mdnext.metrics.rollout_rmsd` on the same test span. "Time to 10%" is the training time
until the test MSE after an epoch is first within 10% of the model's final test MSE (tutorial
e3nn: on its own test frames, final = last epoch; mdnext: on its test windows, final = the
returned best-validation model, per-epoch values from each epoch's last weights).

Usage (from the repository root)::

    python benchmarks/tutorial.py                                    # ../shared/data/paths.npz
    python benchmarks/tutorial.py --data data/paths.npz --dt 0.00125  # the bundled file
    python benchmarks/tutorial.py --max-frames 200 --epochs 1 --mdnext-minutes 0.2  # quick look
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
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
from e3nn import o3
from e3nn.nn.models.gate_points_2101 import Network
from reporting import machine_info, run_script, write_json
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

import mdnext
from mdnext import cli
from mdnext.api import topology_options
from mdnext.checkpoint import TrainedModel, build_model, data_hash
from mdnext.data import Datasets, make_loader, species_list
from mdnext.evaluation import evaluate, evaluation_datasets, score
from mdnext.frames import Frames
from mdnext.metrics import evaluate_windows, mse
from mdnext.models.base import DisplacementModel
from mdnext.topology import BOND_SOURCES
from mdnext.trainer import TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]
#: The tutorial's trajectory: third-party data kept outside the repository, never copied in.
DEFAULT_DATA = REPO.parent / "shared" / "data" / "paths.npz"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "tutorial.json"

#: The tutorial's ``gate_points_2101.Network`` settings (irreps as strings).
TUTORIAL_NETWORK = {
    "irreps_in": None,
    "irreps_hidden": "5x0e + 5x0o + 5x1e + 5x1o",
    "irreps_out": "1x1o",
    "irreps_node_attr": None,
    "irreps_edge_attr_lmax": 3,
    "layers": 3,
    "max_radius": 3.5,
    "number_of_basis": 10,
    "radial_layers": 1,
    "radial_neurons": 128,
    "num_neighbors": 11,
    "num_nodes": 12,
    "reduce_output": False,
}
TUTORIAL_LR = 1e-4
TUTORIAL_EPOCHS = 16
TUTORIAL_TRAIN_FRACTION = 0.8
LINEAR_STEP = 1e-6
LINEAR_EPOCHS = 12
#: The ``mdnext train`` options whose defaults this benchmark runs.
CLI_OPTIONS = ("model_name", "history", "stride", "cutoff", "epochs", "batch_size", "lr", "unroll", "val_horizon",
               "test_fraction", "val_fraction")
HORIZONS = (1, 10, 100)
TOLERANCE = 0.1
METRIC_NOTES = {
    "test_mse": "mean over test windows, atoms and x/y/z of the squared displacement error (data units²), "
                "on mdnext's test windows for every row",
    "test_mse_own_split": "the tutorial's models on the tutorial's own test frames",
    "test_mse_by_epoch": "test MSE after each epoch (mdnext: of that epoch's last weights; its 'mse' is the "
                         "best-validation model's)",
    "seconds_to_within_10pct": "training seconds until the test MSE after an epoch is first within 10% of the "
                               "final test MSE",
    "frames_per_second": "training windows (frames) x epochs / training seconds",
}


# ----------------------------------------------------------------------------- helpers


def seconds_to_within(seconds: Sequence[float], values: Sequence[float], final: float,
                      tolerance: float = TOLERANCE) -> float | None:
    """Cumulative seconds at the first epoch whose value is within ``tolerance`` of ``final``.

    Args:
        seconds: Cumulative training seconds at the end of each epoch.
        values: Test MSE after each epoch.
        final: The model's final test MSE.
    """
    for elapsed, value in zip(seconds, values):
        if abs(value - final) <= tolerance * abs(final):
            return float(elapsed)
    return None


def _after_first(seconds: Sequence[float]) -> float | None:
    """Mean seconds per epoch, leaving out the first (warm-up) epoch."""
    if len(seconds) < 2:
        return None
    return (seconds[-1] - seconds[0]) / (len(seconds) - 1)


class FunctionModel(DisplacementModel):
    """A history-0 displacement model around a function of a batch of windows.

    Lets mdnext's own metrics (test windows, rollout) score the tutorial's models, which read
    only the current positions.

    Args:
        name: Row name.
        species: Species names of the data (the model ignores them).
        function: Batch → (n, 3) predicted displacement, data units.
        module: The network behind ``function``, if any (registered as a submodule).
    """

    def __init__(self, name: str, species: list[str], function: Callable[[Any], torch.Tensor],
                 module: torch.nn.Module | None = None) -> None:
        super().__init__(0, species)
        self.name = name
        self.function = function
        self.network = module

    def forward(self, data: Any) -> torch.Tensor:
        return self.function(data).to(torch.float64)


# ----------------------------------------------------------------------------- the tutorial


def tutorial_network() -> torch.nn.Module:
    """The tutorial's ``gate_points_2101.Network`` with its settings."""
    kwargs = {key: value for key, value in TUTORIAL_NETWORK.items() if key != "irreps_edge_attr_lmax"}
    kwargs["irreps_hidden"] = o3.Irreps(kwargs["irreps_hidden"])
    kwargs["irreps_edge_attr"] = o3.Irreps.spherical_harmonics(TUTORIAL_NETWORK["irreps_edge_attr_lmax"])
    return Network(**kwargs)


def tutorial_split(n_frames: int) -> int:
    """Number of training frames among the ``n_frames - 1`` (frame, next frame) pairs (1637 for 2048)."""
    return int(TUTORIAL_TRAIN_FRACTION * (n_frames - 1))


def tutorial_graphs(positions: np.ndarray) -> list[Any]:
    """One float32 ``Data(pos=x[t], y=x[t+1] - x[t])`` per frame t < T - 1, as the tutorial builds them.

    Args:
        positions: (T, N, 3) float64, z = 0 for the tutorial's 2D data.
    """
    features = torch.from_numpy(positions[:-1])
    displacements = torch.from_numpy(positions[1:]) - features
    return [Data(x=None, pos=f.to(torch.float32), y=d.to(torch.float32)) for f, d in zip(features, displacements)]


def _network_forward(network: torch.nn.Module) -> Callable[[Any], torch.Tensor]:
    """The tutorial network as a function of a batch of windows (float32 positions in, float64 out)."""

    def forward(data: Any) -> torch.Tensor:
        inputs = {"pos": data.pos.to(torch.float32)}
        if getattr(data, "batch", None) is not None:
            inputs["batch"] = data.batch
        return network(inputs)

    return forward


def run_tutorial_e3nn(positions: np.ndarray, epochs: int, time_limit: float | None, seed: int,
                      log: Callable[[str], None]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train the tutorial's network as the tutorial does; test MSE after every epoch.

    Args:
        positions: (T, N, 3) float64 positions.
        epochs: Number of epochs (the tutorial's 16).
        time_limit: Stop after the epoch whose training time passes this many seconds (None: none).
        seed: Seed of the network's initialisation.

    Returns:
        The trained network and its results: per-epoch cumulative training seconds and test
        MSE on the tutorial's own test frames (data units²), frames per second of training.
    """
    graphs = tutorial_graphs(positions)
    n_train = tutorial_split(positions.shape[0])
    train_loader = DataLoader(graphs[:n_train], batch_size=1, shuffle=False)
    test_loader = DataLoader(graphs[n_train:], batch_size=1, shuffle=False)
    test_truth = torch.from_numpy(positions[n_train + 1:] - positions[n_train:-1])
    torch.manual_seed(seed)
    network = tutorial_network()
    optimizer = torch.optim.Adam(network.parameters(), lr=TUTORIAL_LR)
    optimizer.zero_grad()
    train_seconds, test_mse, test_seconds = [], [], 0.0
    elapsed = 0.0
    for epoch in range(epochs):
        started = time.perf_counter()
        for data in train_loader:
            loss = torch.mean((network(data) - data.y) ** 2)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        elapsed += time.perf_counter() - started
        train_seconds.append(elapsed)
        started = time.perf_counter()
        with torch.no_grad():
            predicted = torch.stack([network(data) for data in test_loader])
        test_seconds += time.perf_counter() - started
        test_mse.append(mse(predicted, test_truth))
        log(f"tutorial e3nn epoch {epoch + 1}/{epochs}: test MSE {test_mse[-1]:.4g}, {elapsed:.1f} s training")
        if time_limit is not None and elapsed >= time_limit:
            break
    network.eval()
    done = len(train_seconds)
    result = {
        "epochs": done,
        "train_frames": n_train,
        "test_frames": len(graphs) - n_train,
        "test_mse_own_split": test_mse[-1],
        "test_mse_by_epoch": test_mse,
        "seconds_by_epoch": train_seconds,
        "train_seconds": train_seconds[-1],
        "seconds_per_epoch_after_first": _after_first(train_seconds),
        "frames_per_second": n_train * done / train_seconds[-1],
        "test_pass_seconds": test_seconds,
        "seconds_to_within_10pct": seconds_to_within(train_seconds, test_mse, test_mse[-1]),
        "n_parameters": sum(p.numel() for p in network.parameters()),
        "settings": {**TUTORIAL_NETWORK, "lr": TUTORIAL_LR, "optimizer": "Adam", "batch_size": 1,
                     "shuffle": False, "epochs": epochs, "seed": seed},
    }
    return network, result


def run_tutorial_linear(positions: np.ndarray) -> tuple[np.ndarray, float, dict[str, Any]]:
    """The tutorial's linear baseline: next frame = ``frame @ w + b``, per-frame gradient descent.

    Returns:
        ``w`` (3, 3), scalar ``b`` and results (test MSE on the tutorial's test frames, the
        tutorial's own reported figure ``sqrt`` of it, training seconds).
    """
    features, labels = positions[:-1], positions[1:]
    n_train = tutorial_split(positions.shape[0])
    w, b = np.zeros((3, 3)), 0.0
    started = time.perf_counter()
    for _ in range(LINEAR_EPOCHS):
        for x, y in zip(features[:n_train], labels[:n_train]):
            # d/dw and d/db of mean((x @ w + b - y) ** 2) over the frame's N × 3 entries.
            residual = 2.0 * (x @ w + b - y) / y.size
            w = w - LINEAR_STEP * (x.T @ residual)
            b = b - LINEAR_STEP * float(residual.sum())
    seconds = time.perf_counter() - started
    current, following = features[n_train:], labels[n_train:]
    # Position error = displacement error: (x @ w + b) - y = (x @ w + b - x) - (y - x).
    test = mse(torch.from_numpy(current @ w + b - current), torch.from_numpy(following - current))
    result = {
        "epochs": LINEAR_EPOCHS,
        "test_mse_own_split": test,
        "tutorial_reported_rmse": math.sqrt(test),
        "train_seconds": seconds,
        "frames_per_second": n_train * LINEAR_EPOCHS / seconds,
        "settings": {"step": LINEAR_STEP, "optimizer": "gradient descent", "batch_size": 1,
                     "epochs": LINEAR_EPOCHS, "init": "w = 0, b = 0"},
    }
    return w, b, result


# ----------------------------------------------------------------------------- mdnext


def cli_defaults() -> dict[str, Any]:
    """The defaults of ``mdnext train`` (model, history, stride, epochs, batch size, lr, …).

    Read from the click command itself, so the benchmark follows the CLI when its defaults change.
    """
    defaults = {param.name: param.default for param in cli.main.commands["train"].params}
    return {name: defaults[name] for name in CLI_OPTIONS if name in defaults}


def mdnext_datasets(frames: Frames, defaults: dict[str, Any]) -> Datasets:
    """The windows :func:`mdnext.train` makes with ``defaults`` (train / validation / test)."""
    return evaluation_datasets([frames], defaults["history"], defaults["stride"], species_list([frames]),
                               defaults["test_fraction"], defaults["val_fraction"])


def run_mdnext(frames: Frames, datasets: Datasets, defaults: dict[str, Any], time_limit: float | None, seed: int,
               log: Callable[[str], None], horizons: Sequence[int] = HORIZONS) -> tuple[TrainedModel, dict[str, Any]]:
    """mdnext's default model, fitted and scored as :func:`mdnext.train` does, plus per-epoch test MSE.

    ``mdnext.train`` takes no per-epoch hook, so this runs its steps (datasets, model, fit,
    evaluation) and keeps a copy of the weights after each epoch; the copies are scored on the
    test windows after training, so the scoring does not count as training time.

    Args:
        frames: The trajectory; ``datasets``: its windows from :func:`mdnext_datasets`.
        defaults: The ``mdnext train`` settings (:func:`cli_defaults`, epochs possibly changed).
        time_limit: Training budget in seconds.

    Returns:
        The trained model and its results: the test metrics of
        :func:`mdnext.evaluation.evaluate` plus timing and the per-epoch test MSE curve.
    """
    config_fields = {field.name for field in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in defaults.items() if k in config_fields},
                         time_limit=time_limit, seed=seed, quiet=True)
    model_options = topology_options(defaults["model_name"], [frames],
                                     {} if defaults.get("cutoff") is None else {"cutoff": defaults["cutoff"]})
    torch.manual_seed(config.seed)
    net = build_model(defaults["model_name"], {"history": defaults["history"], "species": datasets.species,
                                               **model_options})
    snapshots: list[dict[str, torch.Tensor]] = []

    def keep(model: Any, state: Any) -> None:
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        log(f"mdnext epoch {state.epoch}: {state.elapsed:.1f} s, val loss {state.log[-1]['val_loss']:.4g}")

    state = fit(net, datasets.train, datasets.val, config, on_epoch=keep)
    trained = TrainedModel(net.eval(), defaults["stride"], frames.dt, {"config": config.as_dict()})
    metrics = evaluate(trained, [frames], horizons=horizons, test_fraction=defaults["test_fraction"],
                       val_fraction=defaults["val_fraction"], seed=config.seed)
    probe = copy.deepcopy(net)
    loader = make_loader(datasets.test, 64)
    curve = []
    for weights in snapshots:
        probe.load_state_dict(weights)
        curve.append(evaluate_windows(probe, loader))
    seconds = [row["seconds"] for row in state.log]
    result = {
        **metrics,
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "train_windows": len(datasets.train),
        "train_seconds": state.elapsed,
        "seconds_per_epoch_after_first": _after_first(seconds),
        "frames_per_second": len(datasets.train) * state.epoch / state.elapsed if state.elapsed else None,
        "test_mse_by_epoch": curve,
        "seconds_by_epoch": seconds,
        # best epoch 0: the model kept its starting point (its prior), reached before any training
        "seconds_to_within_10pct": 0.0 if state.best_epoch == 0 else seconds_to_within(seconds, curve, metrics["mse"]),
        "n_parameters": sum(p.numel() for p in net.parameters()),
        "log": state.log,
        "settings": {**defaults, "config": config.as_dict(), "hparams": net.hparams},
    }
    return trained, result


# ----------------------------------------------------------------------------- report


def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model: name, test MSE, rollout RMSD, training time, frames/s, time to 10%."""
    tutorial, linear, ours = report["tutorial_e3nn"], report["tutorial_linear"], report["mdnext"]
    rows = [
        {"model": "tutorial e3nn (gate_points_2101)", **_row_fields(tutorial)},
        {"model": "tutorial linear (GD)", **_row_fields(linear)},
        {"model": "mdnext equivariant", **_row_fields(ours)},
    ]
    for name, value in ours["baselines"].items():
        rows.append({"model": name, "test_mse": value, "rollout_rmsd": ours["baseline_rollout_rmsd"][name],
                     "train_seconds": None, "frames_per_second": None, "seconds_to_within_10pct": None})
    return rows


def _row_fields(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result.get(key) for key in ("rollout_rmsd", "train_seconds", "frames_per_second",
                                             "seconds_to_within_10pct")} | {"test_mse": result["mse"]}


def format_table(rows: list[dict[str, Any]], horizons: Sequence[int] = HORIZONS) -> str:
    """The rows as a fixed-width text table (— where a value does not apply)."""

    def cell(value: float | None, width: int, spec: str = ".4g") -> str:
        return f"{'—':>{width}}" if value is None else f"{value:>{width}{spec}}"

    header = (f"{'model':<34}{'test MSE':>12}" + "".join(f"{'RMSD@' + str(h):>11}" for h in horizons)
              + f"{'train s':>10}{'frames/s':>10}{'s to 10%':>10}")
    lines = [header, "-" * len(header)]
    for row in rows:
        rmsd = row["rollout_rmsd"] or {}
        lines.append(f"{row['model']:<34}{cell(row['test_mse'], 12)}"
                     + "".join(cell(rmsd.get(str(h)), 11) for h in horizons)
                     + cell(row["train_seconds"], 10, ".1f") + cell(row["frames_per_second"], 10, ".1f")
                     + cell(row["seconds_to_within_10pct"], 10, ".1f"))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"paths.npz (default {DEFAULT_DATA})")
    parser.add_argument("--dt", type=float, default=None, help="time between frames in ps (0.00125 for data/paths.npz)")
    parser.add_argument("--max-frames", type=int, default=None, help="use only the first N frames")
    parser.add_argument("--epochs", type=int, default=TUTORIAL_EPOCHS, help="tutorial e3nn epochs (default 16)")
    parser.add_argument("--time-limit-minutes", type=float, default=None,
                        help="stop the tutorial e3nn training after the epoch that passes this budget")
    parser.add_argument("--mdnext-minutes", type=float, default=8.0, help="mdnext training budget (default 8)")
    parser.add_argument("--mdnext-epochs", type=int, default=None,
                        help="mdnext maximum epochs (default: the CLI's, 200)")
    parser.add_argument("--horizons", type=int, nargs="+", default=list(HORIZONS),
                        help="rollout horizons in steps (default 1 10 100)")
    parser.add_argument("--bonds", choices=BOND_SOURCES, default="topology",
                        help="bond topology for mdnext's model: 'chain' declares the polymer's bonds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output JSON (default {DEFAULT_JSON})")
    parser.add_argument("--quiet", "-q", action="store_true", help="no per-epoch progress lines")
    args = parser.parse_args(argv)
    for name in ("max_frames", "epochs", "mdnext_epochs", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.horizons) < 1:
        parser.error("--horizons must be >= 1")
    for name in ("time_limit_minutes", "mdnext_minutes", "dt"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Both runs and the scoring of the tutorial's models on mdnext's windows; the JSON report."""
    machine = machine_info()
    frames = mdnext.load(args.data, dt=args.dt, bonds=args.bonds)
    if args.max_frames is not None:
        frames = frames[: args.max_frames]
    defaults = cli_defaults()
    if args.mdnext_epochs is not None:
        defaults["epochs"] = args.mdnext_epochs
    datasets = mdnext_datasets(frames, defaults)  # fails here, before any training, if the frames are too few
    positions = np.array(frames.positions, dtype=np.float64)

    started = time.perf_counter()
    network, tutorial = run_tutorial_e3nn(positions, args.epochs, _seconds(args.time_limit_minutes), args.seed, log)
    tutorial["wall_seconds"] = time.perf_counter() - started
    w, b, linear = run_tutorial_linear(positions)
    started = time.perf_counter()
    _, ours = run_mdnext(frames, datasets, defaults, _seconds(args.mdnext_minutes), args.seed, log, args.horizons)
    ours["wall_seconds"] = time.perf_counter() - started

    w_t = torch.from_numpy(w)

    def linear_forward(data: Any) -> torch.Tensor:
        pos = data.pos.to(torch.float64)
        return pos @ w_t + b - pos

    scored = [(tutorial, FunctionModel("tutorial_e3nn", datasets.species, _network_forward(network), network)),
              (linear, FunctionModel("tutorial_linear", datasets.species, linear_forward))]
    with torch.no_grad():
        for result, model in scored:
            result.update(score(model, datasets, [frames], args.horizons))
    test_range = datasets.ranges["test"][0]
    report = {
        "benchmark": "tutorial",
        "source": "https://dmol.pub/applied/e3nn_traj.html",
        "data": {"path": str(args.data), "bonds": args.bonds, "n_frames": frames.n_frames, "n_atoms": frames.n_atoms, "dt": frames.dt,
                 "max_frames": args.max_frames, "hash": data_hash([frames]), "test_windows": len(datasets.test),
                 "test_frame_range": [test_range.start, test_range.stop - 1]},
        "machine": machine,
        "metric_notes": METRIC_NOTES,
        "tutorial_e3nn": tutorial,
        "tutorial_linear": linear,
        "mdnext": ours,
    }
    report["rows"] = table_rows(report)
    return report


def summary(report: dict[str, Any], horizons: Sequence[int]) -> str:
    """The table and two lines on the tutorial's own split and the timing."""
    tutorial, linear, ours = report["tutorial_e3nn"], report["tutorial_linear"], report["mdnext"]
    machine = report["machine"]
    return "\n".join([
        format_table(report["rows"], horizons),
        "",
        f"test MSE on the tutorial's own {tutorial['test_frames']} test frames: tutorial e3nn "
        f"{tutorial['test_mse_own_split']:.4g}, tutorial linear {linear['test_mse_own_split']:.4g}; "
        f"the table uses mdnext's {report['data']['test_windows']} test windows.",
        f"tutorial e3nn: {tutorial['epochs']} epochs, {_fmt(tutorial['seconds_per_epoch_after_first'])} s/epoch after "
        f"the first, wall {tutorial['wall_seconds']:.1f} s; mdnext: {ours['epochs']} epochs (best "
        f"{ours['best_epoch']}), {_fmt(ours['seconds_per_epoch_after_first'])} s/epoch after the first, wall "
        f"{ours['wall_seconds']:.1f} s; {machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads.",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (2 for a missing or unreadable data file)."""
    args = parse_args(argv)
    if not args.data.is_file():
        print(f"tutorial.py: {args.data}: data file not found (the tutorial's paths.npz lives in "
              f"../shared/data; use --data data/paths.npz --dt 0.00125 for the bundled one)", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    log = (lambda message: None) if args.quiet else (lambda message: print(message, flush=True))

    def measure() -> Path:
        report = run(args, log)
        print(summary(report, args.horizons))
        write_json(report, args.json)
        return args.json

    return run_script("tutorial.py", measure)


def _seconds(minutes: float | None) -> float | None:
    return None if minutes is None else 60.0 * minutes


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
