"""``clareps bank build | show``: canonical banks and what they look like (``bank sweep``: studies/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.config import load_config
from clareps.errors import ClarepsError
from clareps.paths import default_judge, preset

bank_app = typer.Typer(help="Canonical banks: build, show, sweep.", no_args_is_help=True)


@bank_app.command("build")
def build_cmd(config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML preset"),
              set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value"),
              out: Path = typer.Option(Path("runs/bank"), "--out", "-o"),
              teacher: Optional[str] = typer.Option(None, "--teacher", "-t",
                                                    help="teacher .safetensors or diffusers folder (default: shipped)"),
              control: bool = typer.Option(False, "--control", help="the guidance-only control bank (k = 0)"),
              judge: Optional[Path] = typer.Option(None, "--judge", help="shape judge for metrics"),
              metrics: bool = typer.Option(True, "--metrics/--no-metrics"),
              quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Build (or resume, or reuse) a canonical bank and measure it."""
    from clareps.clarid.bank import BankConfig, build_bank, resolved
    from clareps.clarid.bank_views import measure_bank
    from clareps.distributed import context
    from clareps.errors import interrupt_note
    from clareps.io import check_writable

    overrides = set_ + ([f"teacher={teacher}"] if teacher is not None else []) + (["kind=control"] if control else [])
    cfg = load_config(BankConfig, config or preset("bank-default"), overrides)
    check_writable(out)
    interrupt_note(f"finished shards are in {out / 'shards'}; rerun the same command to resume")
    bank, reused = build_bank(cfg, out, quiet=quiet)
    if not context().main:  # under torchrun, rank 0 reports and measures
        return
    typer.echo(f"bank: {out} ({len(bank)} items, {'reused' if reused else 'built'}, "
               f"{float(bank.seconds.sum()) / 60:.1f} item-minutes)")
    if metrics and judge is None and cfg.data.kind != "benchmark":
        typer.echo("metrics: skipped (the default shape judge is for the default benchmark; pass --judge)")
    elif metrics:
        result = measure_bank(out, resolved(cfg), judge or default_judge())
        summary = ", ".join(f"{k} {v:.3f}" for k, v in result.items() if isinstance(v, float))
        typer.echo(f"metrics: {out / 'metrics.json'}\n{summary}")


@bank_app.command("show")
def show_cmd(bank: Path = typer.Option(..., "--bank", "-b", help="canonical bank folder"),
             control: Optional[Path] = typer.Option(None, "--control", help="control bank folder"),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="default: the bank folder"),
             per_class: int = typer.Option(4, "--per-class")) -> None:
    """Per class: originals | control | canonical samples, and the singular value spectra."""
    from clareps.clarid.bank_format import load_bank
    from clareps.clarid.bank_views import comparison_grid, spectra_plot
    from clareps.config import build_config
    from clareps.data.spec import DataSpec, load_data
    from clareps.io import check_writable

    if per_class < 1:
        raise ClarepsError(f"--per-class must be at least 1, got {per_class}")
    out = out or bank
    check_writable(out)
    canonical = load_bank(bank)
    banks, names = [canonical], ["canonical"]
    if control is not None:
        ctrl = load_bank(control)
        if not torch_equal(ctrl.source_index, canonical.source_index) or not torch_equal(ctrl.labels, canonical.labels):
            raise ClarepsError(f"{control} holds other items than {bank} (build both with the same seed and source)")
        differ = [k for k in ("teacher_sha256", "data_fingerprint", "t_e", "w", "tap")
                  if ctrl.meta.get(k) != canonical.meta.get(k)]
        if differ:
            raise ClarepsError(f"{control} is not a control of {bank}: its {differ[0]} differs "
                               f"({ctrl.meta.get(differ[0])} vs {canonical.meta.get(differ[0])})")
        banks, names = [ctrl, canonical], ["control", "canonical"]
    train = load_data(build_config(DataSpec, canonical.meta["config"]["data"], f"{bank}/bank.json"))
    grid = comparison_grid(banks, names, train, out / "comparison.png", per_class)
    spectra = spectra_plot([canonical], [f"k={canonical.meta.get('k')}"], out / "spectra.png")
    typer.echo(f"grid: {grid}\nspectra: {spectra}")


def torch_equal(a, b) -> bool:
    import torch
    return a.shape == b.shape and bool(torch.equal(a, b))
