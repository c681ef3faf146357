"""The ``mdnext`` command line: one click group, thin commands over the library."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

import mdnext
from mdnext.errors import MDNextError


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
    func = click.option("--select", default=None, help="Atom selection (MDAnalysis selection language).")(func)
    func = click.option("--format", "fmt", default=None, help="Input format (default: from the extension), e.g. dcd, xyz, ase:xyz.")(func)
    func = click.option("--topology", "-t", type=click.Path(), default=None, help="Topology file (PSF, PDB, GRO, …) for DCD/XTC/TRR input.")(func)
    return func


@click.group(cls=MDNextGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(mdnext.__version__, prog_name="mdnext")
def main() -> None:
    """Learn the dynamics in a molecular trajectory and extrapolate it."""


@main.command()
@click.argument("traj", type=click.Path())
@input_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(traj: str, topology: str | None, fmt: str | None, select: str | None, as_json: bool) -> None:
    """Summarise TRAJ: frames, atoms, species, dt, time span, box and memory."""
    from mdnext.summary import format_summary, summarize

    summary = summarize(mdnext.load(traj, fmt, topology=topology, select=select))
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


@main.command()
@click.argument("source", type=click.Path())
@click.argument("target", type=click.Path())
@input_options
@click.option("--stride", default=1, show_default=True, type=click.IntRange(min=1), help="Keep every STRIDE-th frame.")
@click.option("--to-format", default=None, help="Output format (default: from the extension).")
@click.option("--force", is_flag=True, help="Overwrite TARGET if it exists.")
def convert(
    source: str, target: str, topology: str | None, fmt: str | None, select: str | None,
    stride: int, to_format: str | None, force: bool,
) -> None:
    """Convert SOURCE to TARGET (the format follows the extension), written atomically."""
    frames = mdnext.load(source, fmt, topology=topology, select=select, stride=stride)
    mdnext.save(frames, target, to_format, overwrite=force)
    click.echo(f"wrote {frames.n_frames} frames of {frames.n_atoms} atoms to {target}")


if __name__ == "__main__":  # pragma: no cover
    main()
