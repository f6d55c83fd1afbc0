"""CLI verbs of the studies: ``bank sweep`` (a grid of banks), ``bank compare``, ``distill-sweep`` (a grid of
distillation settings chosen on validation data), and under ``study``: ``table ...`` and ``selectivity ...``
(``clareps.studies.table_cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.bank.cli import MASK_HELP, check_judges
from clareps.config import SEED_MAX, is_seed, load_config
from clareps.errors import ClarepsError
from clareps.paths import default_judge, preset, resolve_preset
from clareps.runs import refuse_foreign_folder


def _numbers(option: str, text: str, kind: type) -> list:
    """A comma-separated option as a non-empty list of numbers, or a one-line error naming it."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ClarepsError(f"bad {option} {text!r}: expected comma-separated {kind.__name__}s") from None
    if not values:
        raise ClarepsError(f"{option} is empty: give at least one value")
    return values


def _choices(option: str, text: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma-separated option as a non-empty list of allowed names, or a one-line error naming it."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names or not set(names) <= set(allowed):
        raise ClarepsError(f"bad {option} {text!r}: use one or more of {', '.join(allowed)}")
    return names


def bank_sweep_cmd(config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML preset (base)"),
              set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value"),
              t_e: str = typer.Option("0.3,0.5,0.7", "--t-e", help="comma-separated fractions of T"),
              k: str = typer.Option("4,16", "--k", help="comma-separated k (the k = 0 control is always run)"),
              w: str = typer.Option("1,3", "--w", help="comma-separated guidance scales"),
              variants: str = typer.Option("plain,norm", "--variants",
                                    help="plain (x_te less the directions) and/or norm (rescaled to |x_te|)"),
              teacher: Optional[str] = typer.Option(None, "--teacher", "-t",
                                                    help="teacher .safetensors or diffusers folder (default: shipped)"),
              directions: str = typer.Option("jacobian", "--directions",
                                             help="comma-separated: jacobian, random, low-frequency, shuffled, tail, "
                                                  "class-contrastive, region-restricted, mask-oracle"),
              feature_label: str = typer.Option("class", "--feature-label", help="class and/or null"),
              tap: Optional[str] = typer.Option(None, "--tap", help="comma-separated taps (default: the config's)"),
              per_class: int = typer.Option(10, "--per-class"),
              judge: Optional[Path] = typer.Option(None, "--judge"),
              mask_judge: Optional[Path] = typer.Option(None, "--mask-judge", help=MASK_HELP),
              out: Path = typer.Option(Path("runs/sweep"), "--out", "-o"),
              quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Grid over t_e, k, w, the variant, the directions, the feature label and the tap on a matched
    subset; a table and the chosen (Jacobian) setting."""
    from typing import get_args

    from clareps.bank.build import BankConfig
    from clareps.clarid.directions import DirectionKind
    from clareps.studies.bank_sweep import run_sweep
    from clareps.errors import interrupt_note
    from clareps.io import check_writable

    names = _choices("--variants", variants, ("plain", "norm"))
    kinds = _choices("--directions", directions, get_args(DirectionKind))
    labels = _choices("--feature-label", feature_label, ("class", "null"))
    overrides = set_ + ([f"teacher={teacher}"] if teacher is not None else []) + [f"per_class={per_class}"]
    base = load_config(BankConfig, config or preset("bank-default"), overrides)
    grid = _numbers("--t-e", t_e, float), _numbers("--k", k, int), _numbers("--w", w, float)
    taps = [v.strip() for v in tap.split(",") if v.strip()] if tap else None
    check_judges(judge, mask_judge)
    check_writable(out)
    refuse_foreign_folder(out, "a bank sweep", markers=("sweep.json",), own=("te*_k*_w*", "sweep.*"))
    interrupt_note(f"finished banks are in {out}; rerun the same command to resume")
    rows, best = run_sweep(base, out, *grid, names, judge or default_judge(), quiet, directions=kinds,
                           feature_labels=labels, taps=taps, mask_judge=mask_judge)
    typer.echo((out / "sweep.md").read_text() + f"\ntable: {out / 'sweep.md'} (also .csv, .json)")


def distill_sweep_cmd(grid: list[str] = typer.Option(..., "--grid", "-g",
                                             help="an axis, key=v1,v2,... (repeat for a product grid)"),
              bank: Optional[Path] = typer.Option(None, "--bank", "-b", help="the bank the method reads"),
              method: str = typer.Option("cadistill", "--method", "-m", help="the method whose settings vary"),
              seeds: str = typer.Option("0", "--seeds", help="comma-separated training seeds"),
              config: Optional[str] = typer.Option(None, "--config", "-c", help="preset name or YAML path"),
              set_: list[str] = typer.Option([], "--set", "-s", help="override for every run: key.sub=value"),
              out: Path = typer.Option(Path("runs/distill-sweep"), "--out", "-o"),
              pgd_eps: float = typer.Option(2.0, "--pgd-eps", help="PGD budget on validation, in 1/255"),
              pgd_images: int = typer.Option(200, "--pgd-images", help="validation images attacked"),
              tolerance: float = typer.Option(0.02, "--tolerance", help="allowed val accuracy drop vs ce"),
              one_axis: bool = typer.Option(False, "--one-axis", help="the preset, then each axis value alone (not the product)"),
              quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Choose distillation settings (the lambdas, ...) on the validation split: one table, one pick."""
    from clareps.studies.distill_sweep import parse_grid, run_sweep
    from clareps.errors import ClarepsError, interrupt_note
    from clareps.io import check_writable

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ClarepsError(f"bad --seeds {seeds!r}: expected integers like 0,1,2") from None
    if not seed_list or not all(is_seed(s) for s in seed_list):
        raise ClarepsError(f"bad --seeds {seeds!r}: expected integers from 0 to {SEED_MAX} like 0,1,2")
    if not (pgd_eps > 0 and pgd_images >= 1 and 0 <= tolerance <= 1):  # not: NaN fails too
        raise ClarepsError(f"need --pgd-eps > 0, --pgd-images >= 1 and --tolerance in [0, 1], got "
                           f"{pgd_eps}, {pgd_images}, {tolerance}")
    check_writable(out)
    refuse_foreign_folder(out, "a distill sweep", markers=("sweep.json",), own=("runs", "sweep.*"))
    interrupt_note(f"finished students are in {out}; rerun the same command to resume")
    run_sweep(resolve_preset(config, "distill-default"), list(set_), parse_grid(grid), seed_list, out, bank, method,
                pgd_eps, pgd_images, tolerance, quiet, one_axis)
    typer.echo((out / "sweep.md").read_text().rstrip() + f"\ntable: {out / 'sweep.md'}")


def bank_compare_cmd(banks: list[Path] = typer.Argument(..., help="the reference bank folder, then the others"),
                     judge: Optional[Path] = typer.Option(None, "--judge"),
                     mask_judge: Optional[Path] = typer.Option(None, "--mask-judge", help=MASK_HELP),
                     out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write OUT.md, OUT.json and OUT.png (the same items in each bank)")
                     ) -> None:
    """Banks of the same items against the first, item by item: each measure's paired difference
    and its 95 % interval (e.g. a sweep's Jacobian bank against its k = 0 control and random directions)."""
    from clareps.bank.format import BANK_FILE
    from clareps.io import write_json, write_text
    from clareps.studies.bank_compare import compare_banks, compare_grid, compare_markdown

    for folder in banks:
        if not (folder / BANK_FILE).is_file():
            raise ClarepsError(f"no bank at {folder} (missing {BANK_FILE})")
    check_judges(judge, mask_judge)
    rows = compare_banks(banks, judge or default_judge(), mask_judge)
    text = compare_markdown(banks, rows)
    if out is not None:  # OUT.md and OUT.json (OUT may hold dots: te0.5_k4)
        stem = out.with_suffix("") if out.suffix in (".md", ".json") else out
        write_text(stem.with_name(stem.name + ".md"), text)
        write_json(stem.with_name(stem.name + ".json"), {"reference": str(banks[0]), "rows": rows})
        compare_grid(banks, stem.with_name(stem.name + ".png"))
    typer.echo(text.rstrip())


def register(app: typer.Typer, bank: typer.Typer) -> None:
    bank.command("sweep")(bank_sweep_cmd)
    bank.command("compare")(bank_compare_cmd)
    app.command("distill-sweep")(distill_sweep_cmd)
