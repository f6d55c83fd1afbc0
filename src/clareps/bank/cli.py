"""``clareps bank build | show``: canonical banks and what they look like (``bank sweep | compare``: studies/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.config import load_config
from clareps.errors import ClarepsError
from clareps.paths import default_judge, preset

MASK_HELP = "mask judge for the shape and background measures (default: the shipped one, default benchmark)"

def build_cmd(config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML preset"),
              set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value"),
              out: Path = typer.Option(Path("runs/bank"), "--out", "-o"),
              teacher: Optional[str] = typer.Option(None, "--teacher", "-t",
                                                    help="teacher .safetensors or diffusers folder (default: shipped)"),
              control: bool = typer.Option(False, "--control", help="the guidance-only control bank (k = 0)"),
              judge: Optional[Path] = typer.Option(None, "--judge", help="shape judge for metrics"),
              mask_judge: Optional[Path] = typer.Option(None, "--mask-judge", help=MASK_HELP),
              metrics: bool = typer.Option(True, "--metrics/--no-metrics"),
              quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Build (or resume, or reuse) a canonical bank and measure it."""
    from clareps.bank.build import BankConfig, build_bank
    from clareps.bank.views import ensure_metrics
    from clareps.distributed import context
    from clareps.errors import any_file, interrupt_note, kept_or_nothing
    from clareps.io import check_writable

    check_judges(judge, mask_judge)
    overrides = set_ + ([f"teacher={teacher}"] if teacher is not None else []) + (["kind=control"] if control else [])
    if config is None:  # the default preset, with the CLARID settings of the teacher's kind
        from clareps.clarid.presets import bank_defaults
        from clareps.config import build_config, override

        given = override({}, overrides).get("teacher")  # the teacher the settings name, if any
        data = override(bank_defaults(None if given in (None, "") else str(given)), overrides)
        cfg = build_config(BankConfig, data, str(preset("bank-default")), overrides)
    else:
        cfg = load_config(BankConfig, config, overrides)
    check_writable(out)
    interrupt_note(kept_or_nothing(any_file(out / "shards", "*.json"), f"finished shards are in {out / 'shards'}"))
    bank, reused = build_bank(cfg, out, quiet=quiet)
    if not context().main:  # under torchrun, rank 0 reports and measures
        return
    typer.echo(f"bank: {out} ({len(bank)} items, {'reused' if reused else 'built'}, "
               f"{float(bank.seconds.sum()) / 60:.1f} item-minutes)")
    if metrics and judge is None and cfg.data.kind != "benchmark":
        typer.echo("metrics: skipped (the default shape judge is for the default benchmark; pass --judge)")
    elif metrics:
        result, kept = ensure_metrics(out, judge or default_judge(), mask_judge)
        typer.echo(f"metrics: {out / 'metrics.json'}{' (reused)' if kept else ''}\n{_summary(result)}")


def show_cmd(bank: Path = typer.Option(..., "--bank", "-b", help="canonical bank folder"),
             control: Optional[Path] = typer.Option(None, "--control", help="control bank folder"),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="default: the bank folder"),
             per_class: int = typer.Option(4, "--per-class"),
             judge: Optional[Path] = typer.Option(None, "--judge", help="shape judge for metrics"),
             mask_judge: Optional[Path] = typer.Option(None, "--mask-judge", help=MASK_HELP),
             metrics: bool = typer.Option(True, "--metrics/--no-metrics",
                                          help="print the metrics (recomputed from the bank when stale)")) -> None:
    """Per class: originals | control | canonical samples, the singular value spectra, and the metrics
    (engine record and measures) of each bank."""
    from clareps.bank.build import BANK_MARKERS
    from clareps.bank.format import load_bank
    from clareps.bank.views import bank_data_spec, comparison_grid, ensure_metrics, spectra_plot
    from clareps.data.spec import load_data
    from clareps.io import check_writable
    from clareps.runs import refuse_foreign_folder

    if per_class < 1:
        raise ClarepsError(f"--per-class must be at least 1, got {per_class}")
    check_judges(judge, mask_judge)
    out = out or bank
    check_writable(out)
    refuse_foreign_folder(out, "a bank or its views", markers=BANK_MARKERS, own=("comparison.png", "spectra.png"))
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
    spec = bank_data_spec(canonical.meta, bank)
    train = load_data(spec)
    grid = comparison_grid(banks, names, train, out / "comparison.png", per_class)
    spectra = spectra_plot([canonical], [f"k={canonical.meta.get('k')}"], out / "spectra.png")
    typer.echo(f"grid: {grid}\nspectra: {spectra}")
    if metrics and judge is None and spec.kind != "benchmark":
        typer.echo("metrics: skipped (the default shape judge is for the default benchmark; pass --judge)")
    elif metrics:
        folders = [control, bank] if control is not None else [bank]
        for name, folder in zip(names, folders):
            result, kept = ensure_metrics(folder, judge or default_judge(), mask_judge)
            typer.echo(f"{name}: {folder / 'metrics.json'}{' (reused)' if kept else ' (computed)'}\n{_summary(result)}")


def check_judges(judge: Path | None, mask_judge: Path | None) -> None:
    """A judge given but absent is refused before any work."""
    for option, path in (("--judge", judge), ("--mask-judge", mask_judge)):
        if path is not None and not Path(path).is_file():
            raise ClarepsError(f"{option} {path}: no such file")


def _summary(metrics: dict) -> str:
    from clareps.bank.metrics import summary_rows

    return "\n".join(f"  {label}: {value}" for label, value in summary_rows(metrics))


def torch_equal(a, b) -> bool:
    import torch
    return a.shape == b.shape and bool(torch.equal(a, b))


def register(bank: typer.Typer) -> None:
    bank.command("build")(build_cmd)
    bank.command("show")(show_cmd)
