"""Run the main job on built-in defaults: simulate a micrograph, denoise it, score it.

Needs no data and no GPU. Writes ``demo.png`` (raw | low-pass | DRACO | DRACO --blend-halves |
DRACO --pseudo-halves | clean), ``metrics.json`` and the images under ``OUTDIR``.

Example:
    draco demo -o demo_output
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from draco_em.cli._app import app, example


@app.command(epilog=example("draco demo -o demo_output"))
def demo(
    outdir: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path(
        "demo_output"
    ),
    size: Annotated[int, typer.Option(help="Simulated micrograph edge in px.")] = 1024,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 7,
    weights: Annotated[
        str, typer.Option("--model", help="bundled (the shipped denoiser) or a weights file.")
    ] = "bundled",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Simulate, denoise with the bundled model, and compare raw / low-pass / DRACO (plain,
    --blend-halves, --pseudo-halves) against the clean image."""
    from draco_em.demo.run import DemoConfig, run_demo, summary_table

    cfg = DemoConfig(
        outdir=outdir, size=size, seed=seed, weights=weights, device=device, progress=not quiet
    )
    metrics = run_demo(cfg)
    typer.echo(summary_table(metrics))
    typer.echo(f"figure: {outdir / 'demo.png'}   metrics: {outdir / 'metrics.json'}")
