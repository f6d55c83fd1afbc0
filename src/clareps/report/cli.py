"""``clareps report RUN_ROOT``: the HTML report of a run root (``clareps demo``'s, or one laid out the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report_cmd(run_root: Path = typer.Argument(..., help="a run root made by `clareps demo` (e.g. runs/demo), or laid "
                                               "out as one by hand: banks/, kd-teacher/, students/, results/"),
               out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (default RUN_ROOT/report.html)"),
               figures: Optional[Path] = typer.Option(None, "--figures",
                                                      help="also write each figure as a PNG file in this folder"),
               embedding: Optional[str] = typer.Option(None, "--embedding",
                                                       help="auto | umap | tsne | pca: the 2-D embedding of the "
                                                            "features (default: the demo config's, else auto)")
               ) -> None:
    """One self-contained HTML page: data, teacher, banks, results, robustness, saliency, compute."""
    from clareps.errors import ClarepsError
    from clareps.io import check_writable
    from clareps.report.html import build_report

    if embedding not in (None, "auto", "umap", "tsne", "pca"):
        raise ClarepsError(f"--embedding {embedding!r}: one of auto, umap, tsne, pca")
    if not run_root.is_dir():
        raise ClarepsError(f"no run root at {run_root} (make one with `clareps demo`)")
    if not (run_root / "demo.json").is_file() and not (run_root / "results" / "results.json").is_file():
        raise ClarepsError(f"{run_root} is not a demo run root (no demo.json: make one with `clareps demo`) nor "
                           f"laid out as one (no results/results.json: `clareps aggregate ... --out "
                           f"{run_root / 'results'}`)")
    check_writable((out or run_root / "report.html").parent)
    if figures is not None:
        check_writable(figures)
    typer.echo(f"report: {build_report(run_root, out, figures=figures, embedding=embedding)}")
    if figures is not None:
        typer.echo(f"figures: {figures}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
