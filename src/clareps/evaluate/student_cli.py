"""CLI verbs: ``evaluate`` (one student -> one results JSON) and ``aggregate`` (runs -> one table)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.paths import resolve_preset
from clareps.errors import ClarepsError
from clareps.runs import refuse_foreign_folder

DEFAULT_PRESET = "evaluate-default"


def _preset_path(config: Optional[str]) -> Path:
    return resolve_preset(config, DEFAULT_PRESET)


LABEL_HELP = ("the method label the results are grouped by (default: the student's method): METHOD-NAME for a "
              "variant, e.g. cadistill-spatial")


def checked_label(label: Optional[str], student: Path) -> Optional[str]:
    """``--label``: the student's method or METHOD-NAME (as a demo config's variants), so aggregate still finds
    the ce reference and pairs a CaDistill variant with the baselines; checked before any work."""
    if label is None:
        return None
    from clareps.io import read_meta

    method = read_meta(student).get("method")
    variant = label.startswith(f"{method}-") and len(label) > len(method) + 1
    if method is None or not (label == method or variant) or any(c.isspace() for c in label):
        raise ClarepsError(f"--label {label!r}: name it {method} or {method}-SOMETHING, without spaces "
                           f"(the student's method is {method})")
    return label


def _refuse_foreign_results(out: Path) -> None:
    """A results file is written new or over an evaluation's results, never over someone else's file."""
    import json

    if out.is_dir():
        raise ClarepsError(f"--out {out} is a folder: give a results file (e.g. {out / 'eval.json'})")
    if not out.exists():
        return
    try:
        kept = json.loads(out.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        kept = None
    if not (isinstance(kept, dict) and "format" in kept and "summary" in kept):
        raise ClarepsError(f"{out} holds a file that is not an evaluation's results: use another --out")


def evaluate_cmd(student: Path = typer.Option(..., "--student", help="distill run directory or student .safetensors"),
                 fast: bool = typer.Option(False, "--fast", help="few images, one budget (same as --mode fast)"),
                 mode: str = typer.Option("full", "--mode", "-m", help="the preset section: full | fast | demo | ..."),
                 out: Optional[Path] = typer.Option(None, "--out", "-o",
                                                    help="results JSON (default: RUN_DIR/eval.json, eval-MODE.json)"),
                 config: Optional[str] = typer.Option(None, "--config", "-c", help="preset name or YAML path"),
                 set_: list[str] = typer.Option([], "--set", "-s", help="override in the chosen mode: key.sub=value"),
                 variant: list[str] = typer.Option([], "--variant",
                                                   help="NAME=FILE.npz: another test variant for clean accuracy "
                                                        "(repeatable; test-mixed-same and test-mixed-rand give the "
                                                        "background gap)"),
                 reference: Optional[Path] = typer.Option(None, "--reference",
                                                          help="the ce student's results JSON, for mCE"),
                 device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda[:N]"),
                 label: Optional[str] = typer.Option(None, "--label", help=LABEL_HELP),
                 force: bool = typer.Option(False, "--force", help="evaluate again even if the results exist"),
                 quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Clean, background, adversarial, corruption and saliency metrics of one student, as one JSON."""
    from clareps.evaluate.suite import (evaluate_student, load_eval_config, maps_path, resolve_student,
                                        result_name, results_current, write_results)
    from clareps.io import check_writable, read_json

    mode = "fast" if fast else mode
    from clareps.config import named_files

    overrides = list(set_) + ([f"device={device}"] if device is not None else [])
    overrides += [f"variant_files.{name}={file}" for name, file in named_files("--variant", variant).items()]
    cfg = load_eval_config(_preset_path(config), mode, overrides)
    path = resolve_student(student)
    label = checked_label(label, path)
    out = out or path.parent / result_name(mode)
    check_writable(out.parent)
    _refuse_foreign_results(out)
    if not force and results_current(out, path, cfg, need_mce=reference is not None):
        kept = read_json(out) if label is not None else None
        if kept is not None and kept.get("method") != label:
            write_results(dict(kept, method=label), out)
        typer.echo(f"results with these settings exist for this student: reused (--force to redo)\n"
                   f"results: {out}")
        return
    ref = read_json(reference) if reference is not None else None
    results = evaluate_student(path, cfg, mode=mode, reference=ref, maps_path=maps_path(out), quiet=quiet)
    write_results(results if label is None else dict(results, method=label), out)
    s = results["summary"]
    shown = [k for k in ("clean/test-original", "clean/test", "bg/gap", "corr/mean", "saliency/saliency") if k in s]
    shown += [k for k in s if k.startswith("robust/worst@")]
    typer.echo(", ".join(f"{k} {s[k]:.3f}" for k in shown))
    for test, why in results.get("skipped", {}).items():
        typer.echo(f"skipped: {'background tests' if test == 'background' else test}: {why}")
    bad = [k for k, v in results.get("checks", {}).items() if not v]
    if bad:
        typer.echo(f"warning: sanity checks failed: {', '.join(bad)} (see 'checks' and "
                   "'robustness.monotone_violations' in the results)")
    if results["data"]["matches_student"] is False:
        typer.echo("warning: evaluated on other data than the student was trained on")
    typer.echo(f"{mode} evaluation in {results['seconds']['total']:.0f} s\nresults: {out}")


def aggregate_cmd(runs: list[Path] = typer.Argument(..., help="run directories (their eval.json) or result files"),
                  out: Path = typer.Option(..., "--out", "-o", help="folder for results.md, .csv, .json"),
                  fast: bool = typer.Option(False, "--fast", help="read eval-fast.json in run directories"),
                  mode: str = typer.Option("full", "--mode", "-m", help="read eval-MODE.json in run directories"),
                  ) -> None:
    """Mean ± std over seeds per method: one table as Markdown, CSV and JSON."""
    from clareps.evaluate.aggregate import aggregate, find_results, load_runs, to_markdown, write_tables
    from clareps.io import check_writable

    check_writable(out)
    refuse_foreign_folder(out, "a results table", own=("results.md", "results.csv", "results.json"))
    agg = aggregate(load_runs(find_results(runs, "fast" if fast else mode)))
    paths = write_tables(agg, out)
    typer.echo(to_markdown(agg))
    typer.echo("\n".join(f"{k}: {v}" for k, v in paths.items()))


def probe_cmd(student: Path = typer.Option(..., "--student", help="distill run directory or student .safetensors"),
              bank: list[str] = typer.Option(..., "--bank", "-b",
                                             help="NAME=DIR: a bank to score against (repeat; e.g. held-out "
                                                  "canonical and control banks built with another seed)"),
              out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON (default RUN_DIR/probe.json)"),
              label: Optional[str] = typer.Option(None, "--label", help=LABEL_HELP)) -> None:
    """Linear CKA between the student's penultimate features and each bank's canonical features."""
    from clareps.evaluate.probe import probe
    from clareps.evaluate.suite import resolve_student
    from clareps.io import write_json

    pairs = [b.split("=", 1) for b in bank]
    if any(len(p) != 2 or not p[0] for p in pairs):
        raise ClarepsError(f"--bank takes NAME=DIR, got {bank!r}")
    path = resolve_student(student)
    label = checked_label(label, path)
    result = probe(path, dict(pairs))
    if label is not None:
        result["method"] = label
    out = out or path.parent / "probe.json"
    write_json(out, result)
    for name, row in result["banks"].items():
        note = "" if row["held_out"] else " (the bank it trained on: not held out)"
        typer.echo(f"{name}: CKA {row['cka']:.3f}" + (f", pooled {row['cka_pooled']:.3f}" if "cka_pooled" in row
                                                      else "") + f" on {row['items']} items{note}")
    typer.echo(f"probe: {out}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("aggregate")(aggregate_cmd)
    app.command("probe")(probe_cmd)
