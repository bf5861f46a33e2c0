"""The ``ivy-gpu`` command line (also installed as ``ivytools-batch``).

Thin over the library: commands parse arguments, call ``ivy_gpu`` and report.
Exit codes: 0 success, 2 bad usage or unreadable input; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="GPU-accelerated STIV and discharge from river videos.")
console = Console()
err_console = Console(stderr=True)


def _fail(exc: Exception, debug: bool) -> None:
    if debug:
        raise exc
    err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def demo(
    backend: str = typer.Option("auto", help="auto | numpy | numba | cupy"),
    seed: int = typer.Option(2026, help="Seed of the generated scenes."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Run the STIV engine on generated scenes and print true vs measured velocity per node."""
    import numpy as np

    from ivy_gpu.stiv import stiv_exhaustive
    from ivy_gpu.synthetic import advected_texture

    gsd, dt = 0.02, 1 / 30
    scenes = [(0.45, 95.0), (0.80, 60.0), (1.20, 250.0)]  # m/s, geographic direction
    table = Table(title=f"ivy_gpu demo: STIV on generated scenes (gsd {gsd} m/px, dt 1/30 s)")
    for col in ("scene", "node", "true m/s", "measured m/s", "error %", "true dir", "measured dir"):
        table.add_column(col, justify="right")
    try:
        worst = 0.0
        for k, (speed, direction) in enumerate(scenes):
            stack = advected_texture((240, 160, 200), speed_px=speed * dt / gsd,
                                     direction_geo=direction, seed=seed + k)
            x = np.linspace(60, 140, 5)
            y = np.array([60.0, 70.0, 80.0, 90.0, 100.0])
            r = stiv_exhaustive(stack, x, y, num_pixels=48, phi_origin=direction + 4, d_phi=1,
                                phi_range=20, pixel_gsd=gsd, d_t=dt, refine=True,
                                backend=backend)
            for i in range(x.size):
                err = (r.magnitude[i] / speed - 1) * 100
                worst = max(worst, abs(err))
                table.add_row(str(k + 1), f"({x[i]:.0f}, {y[i]:.0f})", f"{speed:.3f}",
                              f"{r.magnitude[i]:.3f}", f"{err:+.2f}", f"{direction:.1f}",
                              f"{r.direction[i]:.1f}")
    except (ValueError, RuntimeError) as exc:
        _fail(exc, debug)
    console.print(table)
    console.print(f"backend: {r.backend}; largest speed error {worst:.2f} %")


@app.command()
def bench(
    quick: bool = typer.Option(False, help="Small workloads only (a smoke run)."),
    output: Path = typer.Option(Path("bench_output"), help="Folder for the JSON and Markdown."),
) -> None:
    """Run the benchmark suite on generated workloads and write a table."""
    from ivy_gpu.benchmarks.suite import main as run

    console.print(run(quick=quick, out_dir=output))


@app.command()
def backends() -> None:
    """List the compute backends and whether each is usable here."""
    from ivy_gpu.backends import BACKENDS, gpu_status, resolve_backend

    usable, why = gpu_status()
    for name in BACKENDS:
        state = ("usable" if name != "cupy" or usable else f"unavailable: {why}")
        console.print(f"{name:6s} {state}")
    console.print(f"auto -> {resolve_backend('auto')}")


if __name__ == "__main__":  # pragma: no cover
    app()
