"""``clareps demo``: the command line of the pipeline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from clareps.demo.pipeline import Pipeline
from clareps.demo.spec import load_demo_config
from clareps.paths import resolve_preset


def demo(config: Optional[str] = typer.Option(None, "--config", "-c",
                                              help="demo preset name or YAML path (default: demo-default)"),
         section: Optional[str] = typer.Option(None, "--section", help="the config's section to run (default: demo)"),
         full: bool = typer.Option(False, "--full", help="the config's 'full' section (--section full): the "
                                                          "complete protocol"),
         set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value (e.g. seeds=[0])"),
         out: Optional[Path] = typer.Option(None, "--out", "-o", help="run root (default: the config's 'out')"),
         device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda[:N]"),
         quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """The whole pipeline: data, banks, the methods x seeds, evaluation, table and HTML report."""
    from clareps.errors import ClarepsError, interrupt_note
    from clareps.evaluate.aggregate import to_markdown
    from clareps.io import check_writable

    if full and section not in (None, "full"):
        raise ClarepsError(f"--full is --section full: give one of --full and --section {section}")
    mode = "full" if full else section or "demo"
    overrides = list(set_) + ([f"device={device}"] if device is not None else [])
    cfg = load_demo_config(resolve_preset(config, "demo-default"), mode, overrides)
    pipeline = Pipeline(cfg, out or Path(cfg.out), mode, quiet=quiet)
    check_writable(pipeline.run.root)
    interrupt_note(f"finished stages are kept in {pipeline.run.root}; rerun the same command to resume")
    report, agg = pipeline.run_all()
    wall = time.perf_counter() - pipeline.t0
    reused = sum(info["reused"] for info in pipeline.stages.values())
    typer.echo(to_markdown(agg))
    typer.echo(f"{len(pipeline.stages)} stages ({reused} reused) in {wall / 60:.1f} min\n"
               f"table: {pipeline.run.results / 'results.md'}\nreport: {report}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
