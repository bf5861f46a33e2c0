"""The ``ivy-gpu`` command line (also installed as ``ivytools-batch``).

Thin over the library: commands parse arguments, call ``ivy_gpu`` and report.
Exit codes: 0 all succeeded, 1 some video failed, 2 bad usage or unreadable
inputs (the scaffold, the batch CSV, a video named on the command line). Errors
are one line naming the file; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import typer

from ivy_gpu.cli import measure, review, station, tools
from ivy_gpu.cli.common import console
from ivy_gpu.cli.site import site_app

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    help="GPU-accelerated STIV and discharge from river videos.",
)


def _version(value: bool) -> None:
    if value:
        from ivy_gpu import __version__

        console.print(f"ivy-gpu {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="Log to stderr: -v progress, -vv details."
    ),
) -> None:
    """GPU-accelerated STIV and discharge from river videos."""
    import warnings

    from ivy_gpu.log import IvyGpuWarning, configure

    configure(verbose)
    warnings.filterwarnings("ignore", category=IvyGpuWarning)  # printed by each command


for command in (
    measure.process,
    measure.batch,
    station.watch,
    review.validate,
    review.info,
    review.recompute,
    review.report,
    tools.demo,
    tools.bench,
    tools.backends,
):
    app.command()(command)
app.add_typer(site_app, name="site")

if __name__ == "__main__":  # pragma: no cover
    app()
