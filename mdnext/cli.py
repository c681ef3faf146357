"""The ``mdnext`` command line: one click group, thin commands over the library."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

import mdnext
from mdnext.errors import MDNextError
from mdnext.io import check_output
from mdnext.topology import BOND_SOURCES

#: Training budget (minutes) of ``mdnext extrapolate`` when it fits its own model.
QUICK_TIME_LIMIT_MINUTES = 2.0
#: Test split of a trajectory too short for the default splits (no validation split then).
SHORT_TEST_FRACTION = 0.4


class UserError(click.ClickException):
    """A user error: one line on stderr and exit code 2, no traceback."""

    exit_code = 2


class MDNextGroup(click.Group):
    """Turns :class:`MDNextError` from any command into :class:`UserError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MDNextError as exc:
            raise UserError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


def input_options(func: Callable) -> Callable:
    """The options every command that reads a trajectory takes."""
    func = click.option("--bonds", default="topology", show_default=True, type=click.Choice(BOND_SOURCES),
                        help="Bond topology: the input's (PSF, TPR, PDB CONECT, mdnext npz), a linear chain in atom "
                             "order (a bead-spring polymer such as the tutorial's), or none.")(func)
    func = click.option("--select", default=None, help="Atom selection (MDAnalysis selection language).")(func)
    func = click.option("--format", "fmt", default=None, help="Input format (default: from the extension), e.g. dcd, xyz, ase:xyz.")(func)
    func = click.option("--topology", "-t", type=click.Path(), default=None, help="Topology file (PSF, PDB, GRO, …) for DCD/XTC/TRR input.")(func)
    return func


@click.group(cls=MDNextGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(mdnext.__version__, prog_name="mdnext")
def main() -> None:
    """Learn the dynamics in a molecular trajectory and extrapolate it."""
    # Runs before torch is imported: MKL would otherwise use fewer threads on a busy machine
    # and change float sums, so that the same --seed would not give the same model.
    os.environ.setdefault("MKL_DYNAMIC", "FALSE")


@main.command()
@click.argument("traj", type=click.Path())
@input_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(traj: str, topology: str | None, fmt: str | None, select: str | None, bonds: str, as_json: bool) -> None:
    """Summarise TRAJ: frames, atoms, species, dt, time span, box and memory."""
    from mdnext.summary import format_summary, summarize

    summary = summarize(mdnext.load(traj, fmt, topology=topology, select=select, bonds=bonds))
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


@main.command()
@click.argument("source", type=click.Path())
@click.argument("target", type=click.Path())
@input_options
@click.option("--stride", default=1, show_default=True, type=click.IntRange(min=1), help="Keep every STRIDE-th frame.")
@click.option("--to-format", default=None, help="Output format (default: from the extension).")
@click.option("--force", is_flag=True, help="Overwrite TARGET if it exists.")
def convert(
    source: str, target: str, topology: str | None, fmt: str | None, select: str | None, bonds: str,
    stride: int, to_format: str | None, force: bool,
) -> None:
    """Convert SOURCE to TARGET (the format follows the extension), written atomically."""
    frames = mdnext.load(source, fmt, topology=topology, select=select, stride=stride, bonds=bonds)
    mdnext.save(frames, target, to_format, overwrite=force)
    click.echo(f"wrote {frames.n_frames} frames of {frames.n_atoms} atoms to {target}")


def _load_all(trajs: tuple[str, ...], topology: str | None, fmt: str | None, select: str | None, bonds: str,
              dt: float | None = None, cache: bool = False) -> list[mdnext.Frames]:
    return [mdnext.load(t, fmt, topology=topology, select=select, dt=dt, cache=cache, bonds=bonds) for t in trajs]


def training_options(func: Callable) -> Callable:
    """Model and optimisation options shared by ``train`` and ``extrapolate``."""
    options = [
        click.option("--history", "-k", default=4, show_default=True, type=click.IntRange(min=0), help="Past displacements the model reads."),
        click.option("--stride", "-s", default=1, show_default=True, type=click.IntRange(min=1), help="Predict the frame STRIDE frames ahead."),
        click.option("--cutoff", default=None, type=click.FloatRange(min=0, min_open=True), help="Neighbour cutoff in Å (equivariant model)."),
        click.option("--epochs", default=200, show_default=True, type=click.IntRange(min=1)),
        click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1)),
        click.option("--lr", default=3e-3, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Initial learning rate (cosine-annealed)."),
        click.option("--time-limit", default=None, type=click.FloatRange(min=0, min_open=True), help="Training budget in minutes."),
        click.option("--unroll", default=1, show_default=True, type=click.IntRange(min=1), help="Train on rollouts of this many steps (stabler long extrapolation)."),
        click.option("--val-horizon", default=None, type=click.IntRange(min=1), help="Pick the best epoch by the error of validation rollouts this many steps long (default: --unroll); e.g. 100 for long extrapolation."),
        click.option("--seed", default=0, show_default=True, type=int),
        click.option("--test-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True)),
        click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True)),
        click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "auto"])),
        click.option("--dt", default=None, type=click.FloatRange(min=0, min_open=True), help="Time between input frames in ps (overrides the file)."),
        click.option("--max-windows", default=None, type=click.IntRange(min=1), help="For long trajectories: train each epoch on this many random windows; fit, validate and test on this many evenly spaced ones."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _train(trajs: list[mdnext.Frames], model: str, options: dict[str, Any], **kwargs: Any) -> Any:
    from mdnext.trainer import TrainConfig

    config = TrainConfig(
        epochs=options["epochs"], batch_size=options["batch_size"], lr=options["lr"], seed=options["seed"],
        device=options["device"], quiet=options["quiet"], unroll=options["unroll"], val_horizon=options["val_horizon"],
        max_windows=options["max_windows"],
        time_limit=None if options["time_limit"] is None else 60.0 * options["time_limit"],
    )
    model_options = {} if options["cutoff"] is None else {"cutoff": options["cutoff"]}
    return mdnext.train(trajs, model, history=options["history"], stride=options["stride"], config=config,
                        model_options=model_options, test_fraction=options["test_fraction"],
                        val_fraction=options["val_fraction"], **kwargs)


def _quick_train(frames: mdnext.Frames, options: dict[str, Any], save_model: str | None, force: bool) -> Any:
    """Fit the default model on ``frames``; a short trajectory gets a shorter history and no
    validation split (then the last 40% is the test split)."""
    from mdnext.data import DataError

    splits = [(options["test_fraction"], options["val_fraction"]), (SHORT_TEST_FRACTION, 0.0)]
    for test_fraction, val_fraction in splits:
        for history in range(options["history"], 0, -1):
            attempt = {**options, "history": history, "test_fraction": test_fraction, "val_fraction": val_fraction}
            try:
                return _train([frames], "equivariant", attempt, output=save_model, overwrite=force)
            except DataError:
                continue
    raise UserError(f"{frames.source.get('path', 'trajectory')}: {frames.n_frames} frames are too few to fit "
                    "a model on (pass a trained --model)")


HORIZONS_OPTION = click.option("--horizons", default="1,10,100", show_default=True,
                               help="Rollout horizons in steps, comma-separated.")


def _horizon_steps(horizons: str) -> list[int]:
    """``"1,10,100"`` → ``[1, 10, 100]``; anything else is a one-line error."""
    try:
        steps = [int(h) for h in horizons.split(",")]
    except ValueError:
        raise UserError(f"--horizons must be comma-separated integers, got {horizons!r}") from None
    if any(h < 1 for h in steps):
        raise UserError("--horizons must be positive")
    return steps


def _report(metrics: dict[str, Any], name: str, json_path: str | None) -> None:
    from mdnext.evaluation import format_table

    click.echo(format_table(metrics, name))
    click.echo(f"equivariance error: {metrics['equivariance_error']:.3g} Å "
               f"({metrics['equivariance_error_relative']:.3g} of the displacement RMS)")
    if json_path is not None:
        from mdnext.io import atomic_path

        with atomic_path(json_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(metrics, indent=2))


@main.command()
@click.argument("trajs", nargs=-1, required=True, type=click.Path())
@input_options
@click.option("--model", "model_name", default="equivariant", show_default=True, type=click.Choice(["equivariant", "linear", "force_matched"]), help="force_matched: the bead-spring force field alone (needs bonds; fitted in closed form).")
@training_options
@click.option("--output", "-o", required=True, type=click.Path(), help="Model checkpoint to write (.pt).")
@click.option("--metrics", "metrics_path", default=None, type=click.Path(), help="Write the test metrics as JSON.")
@HORIZONS_OPTION
@click.option("--plots", default=None, type=click.Path(file_okay=False), help="Directory for loss, parity and rollout plots.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run that writes OUTPUT.")
@click.option("--init", default=None, type=click.Path(dir_okay=False), help="Fine-tune this trained model (same model, history, stride, species) instead of a new one, e.g. with --unroll 100 --val-horizon 100 for stable long rollouts.")
@click.option("--cache", is_flag=True, help="Read through the on-disk cache ($MDNEXT_CACHE_DIR, default ~/.cache/mdnext): for trajectories larger than memory.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def train(trajs: tuple[str, ...], topology: str | None, fmt: str | None, select: str | None, bonds: str, model_name: str,
          output: str, metrics_path: str | None, horizons: str, plots: str | None, resume: bool, init: str | None,
          cache: bool, force: bool, **options: Any) -> None:
    """Train a displacement model on TRAJS and compare it with the baselines on the test split.

    Under torchrun (``torchrun --nproc_per_node P -m mdnext.cli train …``) the P processes
    train together; rank 0 writes the files and prints."""
    from mdnext import distributed

    _join_processes(options["device"])
    steps = _horizon_steps(horizons)
    dt = options.pop("dt")
    if cache and distributed.world_size() > 1:

        def build_entries() -> None:  # rank 0 builds missing cache entries; the others then open them
            _load_all(trajs, topology, fmt, select, bonds, dt, cache)

        distributed.run_on_main(build_entries)
    frames = _load_all(trajs, topology, fmt, select, bonds, dt, cache)
    trained = _train(frames, model_name, options, output=output, overwrite=force or resume, resume=resume, init=init,
                     horizons=steps, plots=plots)
    if not distributed.is_main():
        return
    _report(trained.metrics, model_name, metrics_path)
    click.echo(f"wrote {output} ({trained.metrics['epochs']} epochs, {trained.metrics['train_seconds']:.0f} s)")


def _join_processes(device: str) -> None:
    """Join the torchrun process group, if launched by torchrun, and say so (rank 0)."""
    import torch

    from mdnext import distributed

    distributed.setup(device)
    if distributed.world_size() > 1 and distributed.is_main():
        backend = torch.distributed.get_backend()
        click.echo(f"training on {distributed.world_size()} processes (torchrun, {backend})")


@main.command()
@click.argument("traj", type=click.Path())
@input_options
@click.option("--model", "model_path", required=True, type=click.Path(), help="Checkpoint written by mdnext train.")
@HORIZONS_OPTION
@click.option("--test-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--json", "json_path", default=None, type=click.Path(), help="Write the metrics as JSON.")
def evaluate(traj: str, topology: str | None, fmt: str | None, select: str | None, bonds: str, model_path: str,
             horizons: str, test_fraction: float, json_path: str | None) -> None:
    """Score MODEL and every baseline on the last TEST_FRACTION of TRAJ."""
    steps = _horizon_steps(horizons)
    from mdnext.checkpoint import TrainedModel

    trained = TrainedModel.load(model_path)
    frames = mdnext.load(traj, fmt, topology=topology, select=select, bonds=bonds)
    metrics = mdnext.evaluate(trained, frames, horizons=steps, test_fraction=test_fraction)
    _report(metrics, trained.model.name, json_path)


@main.command()
@click.argument("traj", type=click.Path())
@input_options
@click.option("-n", "n_frames", required=True, type=int, help="Number of frames to extrapolate.")
@click.option("--output", "-o", required=True, type=click.Path(), help="Output trajectory; format from the extension.")
@click.option("--model", "model_path", default=None, type=click.Path(), help="Checkpoint to use (default: fit one on TRAJ).")
@click.option("--save-model", default=None, type=click.Path(), help="Keep the model fitted on TRAJ here.")
@click.option("--include-input", is_flag=True, help="Write the input frames before the extrapolated ones.")
@click.option("--wrap", is_flag=True, help="Wrap extrapolated positions into the periodic box.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@training_options
def extrapolate(traj: str, topology: str | None, fmt: str | None, select: str | None, bonds: str, n_frames: int,
                output: str,
                model_path: str | None, save_model: str | None, include_input: bool, wrap: bool, force: bool,
                **options: Any) -> None:
    """Continue TRAJ by N predicted frames and write them to OUTPUT.

    Without --model, first fits a model on TRAJ itself (quick defaults: --time-limit 2)."""
    if n_frames < 1:
        raise UserError(f"-n must be a positive number of frames, got {n_frames}")
    check_output(output, overwrite=force)
    frames = mdnext.load(traj, fmt, topology=topology, select=select, dt=options.pop("dt"), bonds=bonds)
    from mdnext import distributed
    from mdnext.checkpoint import TrainedModel

    if model_path is not None:
        trained = TrainedModel.load(model_path)
    else:
        if options["time_limit"] is None:
            options["time_limit"] = QUICK_TIME_LIMIT_MINUTES
        _join_processes(options["device"])
        trained = _quick_train(frames, options, save_model, force)
        if not distributed.is_main():  # under torchrun: rank 0 alone extrapolates and writes
            return
        _report(trained.metrics, "equivariant", None)
    trained.model.to(distributed.resolve_device(options["device"]))
    future = mdnext.extrapolate(trained, frames, n_frames, wrap=wrap, include_input=include_input)
    mdnext.save(future, output, overwrite=force)
    click.echo(f"wrote {future.n_frames} frames of {future.n_atoms} atoms to {output}")


if __name__ == "__main__":  # pragma: no cover
    main()
