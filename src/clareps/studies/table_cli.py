"""``clareps study table ...`` (the studies' tables beyond ``aggregate``'s) and ``clareps study selectivity ...``
(the selectivity study's steps between ``bank sweep`` and ``bank compare``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.bank.cli import MASK_HELP, check_judges
from clareps.errors import ClarepsError

FILES = dict(exists=True, dir_okay=False)


def _names(option: str, text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise ClarepsError(f"{option} is empty: give at least one method")
    return names


def per_class_cmd(evals: list[Path] = typer.Argument(..., **FILES, help="the students' evaluation files "
                                                    "(eval-MODE.json)")) -> None:
    """Per class, each method's mean over seeds, and each CaDistill label against ce (cadistill also against
    control), paired by seed: clean accuracy on mixed-rand, the background gap, the fast attacks at 2/255."""
    from clareps.studies.student_tables import per_class_tables

    typer.echo(per_class_tables(evals), nl=False)


def probe_cmd(probes: list[Path] = typer.Argument(..., **FILES, help="the students' probe.json (`clareps probe`)")
              ) -> None:
    """The CKA with each held-out bank per method (mean ± std over seeds), and each CaDistill label against
    each baseline, paired by seed."""
    from clareps.studies.student_tables import probe_cells, probe_table

    typer.echo(probe_table(probe_cells(probes)), nl=False)


def paired_cmd(results: Path = typer.Argument(..., **FILES, help="results.json of `clareps aggregate` or "
                                              "`clareps study assemble`"),
               methods: str = typer.Option("kd,feat-real", "--methods", help="comma-separated: the rows' methods"),
               against: str = typer.Option("ce,control,cadistill", "--against", help="comma-separated: each "
                                           "paired with every one of --methods")) -> None:
    """Any methods of an aggregate against any others, paired by seed, as results.md pairs the CaDistill labels."""
    from clareps.studies.student_tables import paired_results

    typer.echo(paired_results(results, _names("--methods", methods), _names("--against", against)))


AGREE_METRICS = ("clean/test-original,clean/test-only-fg,clean/test-mixed-rand,bg/gap,robust/pgd@1/255,"
                 "robust/pgd@2/255,robust/worst-fast@1/255,robust/worst-fast@2/255,corr/mean,corr/mce,"
                 "saliency/integrated-gradients")


def agree_cmd(reference: Path = typer.Argument(..., **FILES, help="results.json of the study"),
              rerun: Path = typer.Argument(..., **FILES, help="results.json of its rerun (another recipe, seeds...)"),
              comparisons: str = typer.Option("cadistill-vs-ce,cadistill-vs-control", "--comparisons",
                                              help="comma-separated: METHOD-vs-BASELINE, as results.json names them"),
              metrics: str = typer.Option(AGREE_METRICS, "--metrics", help="comma-separated: results.json's "
                                          "metric keys; KEY=RERUN_KEY where the rerun names it otherwise"),
              json_out: Optional[Path] = typer.Option(None, "--json", help="also write the rows as JSON")) -> None:
    """Do two runs of a study reach the same verdicts? Each metric's paired intervals and verdicts side by
    side, per comparison, and each metric's claim (every comparison better)."""
    from clareps.io import write_json
    from clareps.studies.agreement import agreement, agreement_markdown

    result = agreement(reference, rerun, _names("--comparisons", comparisons), _names("--metrics", metrics))
    if json_out is not None:
        write_json(json_out, result)
    typer.echo(agreement_markdown(result))


def clarid_cmd(compares: list[Path] = typer.Argument(..., **FILES, help="`bank compare --out` JSON files")) -> None:
    """The CLARID study's wide tables: each measure, the reference bank's value, and each other bank's with
    its paired difference and 95 % interval over items."""
    from clareps.studies.clarid_table import clarid_table

    typer.echo("\n".join(clarid_table(p) for p in compares))


def selectivity_table_cmd(archive: Path = typer.Argument(..., exists=True, file_okay=False,
                                                         help="the study's archive folder"),
                          figure: Optional[Path] = typer.Option(None, "--figure",
                                                                help="also the plot against teacher quality (PNG)")
                          ) -> None:
    """The selectivity study's tables and slopes over its teachers, and its families' held-out table."""
    from clareps.studies.selectivity_table import selectivity_tables

    typer.echo(selectivity_tables(archive, figure), nl=False)


def items_cmd(banks: list[str] = typer.Argument(..., help="NAME=FOLDER: banks of the same items"),
              out: Path = typer.Option(..., "--out", "-o", help="the JSON file"),
              judge: Optional[Path] = typer.Option(None, "--judge"),
              mask_judge: Optional[Path] = typer.Option(None, "--mask-judge", help=MASK_HELP)) -> None:
    """Every per-item measure of each bank, as one JSON file (what the study's slopes and bootstrap read)."""
    from clareps.bank.format import BANK_FILE
    from clareps.io import write_json
    from clareps.paths import default_judge
    from clareps.studies.bank_compare import refuse_other_items
    from clareps.studies.selectivity import bank_items

    pairs = [b.split("=", 1) for b in banks]
    if any(len(p) != 2 or not p[0] for p in pairs):
        raise ClarepsError(f"banks are NAME=FOLDER, got {banks!r}")
    folders = {name: Path(folder) for name, folder in pairs}
    for folder in folders.values():
        if not (folder / BANK_FILE).is_file():
            raise ClarepsError(f"no bank at {folder} (missing {BANK_FILE})")
    refuse_other_items(list(folders.values()))
    check_judges(judge, mask_judge)
    typer.echo(f"items: {write_json(out, bank_items(folders, judge or default_judge(), mask_judge))}")


def choose_cmd(validation: Path = typer.Argument(..., exists=True, file_okay=False,
                                                 help="the validation folder: references/ and KIND_SETTING-VALUE banks"),
               out: Path = typer.Option(..., "--out", "-o", help="the JSON file (chosen.json)")) -> None:
    """Each direction family's setting, chosen on the validation items by the study's rule."""
    from clareps.io import write_json
    from clareps.studies.selectivity import choose_settings

    chosen = choose_settings(validation)
    write_json(out, chosen)
    for kind, c in chosen["chosen"].items():
        typer.echo(f"{kind}: {c['setting']}={c['value']} ({c['by']})")
    typer.echo(f"chosen: {out}")


def teacher_cmd(raw: Path = typer.Argument(..., **FILES, help="a teacher .safetensors of the repository's history"),
                sidecar: Path = typer.Argument(..., **FILES, help="its JSON sidecar"),
                out: Path = typer.Option(..., "--out", "-o", help="the teacher .safetensors to write")) -> None:
    """A teacher of the repository's history with its metadata inside (the oldest kept it in the sidecar only)."""
    from clareps.studies.selectivity import teacher_with_metadata

    typer.echo(f"teacher: {teacher_with_metadata(raw, sidecar, out)}")


def register(table: typer.Typer, selectivity: typer.Typer) -> None:
    table.command("per-class")(per_class_cmd)
    table.command("probe")(probe_cmd)
    table.command("paired")(paired_cmd)
    table.command("agree")(agree_cmd)
    table.command("clarid")(clarid_cmd)
    table.command("selectivity")(selectivity_table_cmd)
    selectivity.command("items")(items_cmd)
    selectivity.command("choose")(choose_cmd)
    selectivity.command("teacher")(teacher_cmd)
