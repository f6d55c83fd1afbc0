"""Aggregation over seeds: mean ± std per method, one table as Markdown, CSV and JSON.

The input is one evaluation results file per student (``clareps evaluate``). mCE needs the ``ce``
students: each run is compared with the ``ce`` run of the same training seed, or, when there is
none, with the ``ce`` runs' mean accuracies. The std is the sample std (ddof = 1) over seeds;
with one seed it is left empty rather than shown as 0. CaDistill (and cadistill-matched, CaDistill on
the matched-source bank) against ``ce`` and against ``control`` is also compared seed by seed
(paired.py): the mean difference, its 95 % t-interval and the verdict that interval gives.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from clareps.distill.methods import method_rank
from clareps.errors import ClarepsError
from clareps.evaluate.background import VARIANTS
from clareps.evaluate.corruptions import COMMON, TABLE_NAMES, mce, table_of
from clareps.evaluate.paired import CONFIDENCE, by_method, interval_text, paired_table
from clareps.evaluate.suite import FORMAT, result_name
from clareps.io import read_json, write_json, write_text

LOWER_IS_BETTER = ("bg/gap", "corr/mce")


def find_results(paths: list[str | Path], mode: str = "full") -> list[Path]:
    """Result files: a JSON file as given, or ``eval.json`` (``eval-<mode>.json``) in a run dir."""
    out = []
    for p in map(Path, paths):
        f = p / result_name(mode) if p.is_dir() else p
        if not f.is_file():
            raise ClarepsError(f"no evaluation results at {f}: run `clareps evaluate --student {p}"
                               f"{'' if mode == 'full' else ' --mode ' + mode}` first")
        out.append(f)
    return out


def load_runs(files: list[Path]) -> list[dict]:
    runs = []
    for f in files:
        r = read_json(f)
        if r.get("format") != FORMAT:
            raise ClarepsError(f"{f} is not a clareps evaluation file (format {r.get('format')!r})")
        runs.append(dict(r, file=str(f)))
    if not runs:
        raise ClarepsError("no evaluation results given")
    hashes = {(r["mode"], r["config_hash"]) for r in runs}
    if len(hashes) > 1:
        raise ClarepsError(f"the results were made with different evaluation settings {sorted(hashes)}: "
                           "aggregate only runs evaluated the same way")
    seen: dict[tuple, str] = {}
    for r in runs:
        key = (r.get("method"), r.get("train_seed"))
        if key in seen:
            raise ClarepsError(f"method {key[0]} seed {key[1]} appears twice: {seen[key]} and {r['file']}")
        seen[key] = r["file"]
    return runs


def _mean_reference(refs: list[dict]) -> dict:
    first = refs[0]["corruptions"]
    return {"severities": first["severities"], "table": table_of(first),
            "accuracy": {t: list(np.mean([r["corruptions"]["accuracy"][t] for r in refs], axis=0))
                         for t in first["accuracy"]}}


def add_mce(runs: list[dict]) -> str | None:
    """Put ``corr/mce`` into each run's summary against the ``ce`` runs; returns what it was relative to."""
    refs = [r for r in runs if r.get("method") == "ce" and r.get("corruptions")]
    if not refs:
        return None
    mean_ref = _mean_reference(refs)
    for r in runs:
        if not r.get("corruptions"):
            continue
        same = [x for x in refs if x.get("train_seed") == r.get("train_seed")]
        ref = same[0]["corruptions"] if same else mean_ref
        value = mce(r["corruptions"], ref)["mce"]
        if value is not None:
            r["summary"]["corr/mce"] = value
    return "the ce student of the same seed (else the ce students' mean)"


_KINDS = ("clean", "bg", "robust", "corr", "saliency")
_ROBUST = ("pgd", "cw", "apgd-ce", "autoattack", "autoattack-reduced", "worst-fast", "worst")


def metric_order(metric: str) -> tuple:
    """Clean accuracy per variant, background gap, robust accuracy per attack and budget,
    corruptions (mean, mCE, then each type) and saliency; unknown names last."""
    kind, _, name = metric.partition("/")
    rank = _KINDS.index(kind) if kind in _KINDS else len(_KINDS)
    if kind == "clean":
        return rank, VARIANTS.index(name) if name in VARIANTS else len(VARIANTS), name
    if kind == "robust":
        attack, _, budget = name.partition("@")
        num = float(budget.split("/")[0]) if budget.split("/")[0].replace(".", "", 1).isdigit() else 0.0
        return rank, _ROBUST.index(attack) if attack in _ROBUST else len(_ROBUST), attack, num
    if kind == "corr":
        return rank, {"mean": 0, "mce": 1}.get(name, 2), COMMON.index(name) if name in COMMON else 0, name
    return rank, 0, name


def _stats(values: list[float]) -> dict:
    arr = np.asarray(values, float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else None, "n": len(arr)}


def aggregate(runs: list[dict]) -> dict:
    """{"methods", "metrics": {metric: {method: {mean, std, n, seeds, values}}}, ...} over seeds."""
    mce_ref = add_mce(runs)
    methods = sorted({str(r.get("method")) for r in runs}, key=method_rank)
    metrics = sorted({k for r in runs for k in r["summary"]}, key=metric_order)
    table: dict[str, dict] = {}
    for metric in metrics:
        row = {}
        for m in methods:
            got = [(r.get("train_seed"), r["summary"][metric]) for r in runs
                   if str(r.get("method")) == m and metric in r["summary"]]
            if got:
                got.sort(key=lambda sv: (sv[0] is None, sv[0]))
                row[m] = dict(_stats([v for _, v in got]), seeds=[s for s, _ in got], values=[v for _, v in got])
        table[metric] = row
    first = runs[0]
    tables = sorted({table_of(r["corruptions"]) for r in runs if r.get("corruptions")})
    return {"methods": methods, "metrics": table, "mce_reference": mce_ref,
            "corruption_table": ", ".join(tables) or None,
            "paired": paired_table(table, LOWER_IS_BETTER),
            "fg_area": (first.get("saliency") or {}).get("fg_area"), "skipped": first.get("skipped") or {},
            "eval": {"mode": first["mode"], "config_hash": first["config_hash"], "eval_seed": first["eval_seed"]},
            "images": _images(first), "runs": [{"file": r["file"], "method": r.get("method"),
                                                "train_seed": r.get("train_seed"),
                                                "corruption_table": table_of(r["corruptions"])
                                                if r.get("corruptions") else None} for r in runs]}


def _images(run: dict) -> dict:
    out = {}
    for block in ("clean", "robustness", "corruptions", "saliency"):
        b = run.get(block) or {}
        if "images" in b:
            out[block] = b["images"]
        autoattacks = [a for k, a in b.get("attacks", {}).items() if k.startswith("autoattack")]
        if "slow_images" in b and autoattacks:  # the slow subset is chosen even when no slow attack runs
            out["autoattack"] = dict(b["slow_images"])
            ran = next((a["budgets_255_run"] for a in autoattacks if "budgets_255_run" in a), None)
            if ran is not None and ran != b.get("budgets_255"):  # robustness.slow_budgets_255
                out["autoattack"]["budgets_255"] = ran
    return out


def label(metric: str) -> str:
    kind, _, name = metric.partition("/")
    arrow = "↓" if metric in LOWER_IS_BETTER else "↑"
    text = {"clean": f"clean acc, {name.removeprefix('test-')}", "bg": "background gap (same - rand)",
            "robust": f"robust acc, {name.replace('worst-fast', 'worst w/o autoattack').replace('@', ' @ ')}",
            "saliency": f"saliency mass on fg, {name}",
            "corr": {"mean": "corruption acc, mean", "mce": "mCE vs ce"}.get(name, f"corruption acc, {name}")}
    return f"{text.get(kind, metric)} {arrow}"


def headline(metric: str) -> bool:
    """Rows of the Markdown table: all but the per-type corruption accuracies (in CSV and JSON)."""
    return not metric.startswith("corr/") or metric in ("corr/mean", "corr/mce")


def _cell(s: dict | None) -> str:
    if s is None:
        return "–"
    if s["std"] is None:
        return f"{100 * s['mean']:.1f}"
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def to_markdown(agg: dict, all_rows: bool = False) -> str:
    methods = agg["methods"]
    lines = ["| metric (%) | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for metric, row in agg["metrics"].items():
        if not (all_rows or headline(metric)):
            continue
        means = {m: row[m]["mean"] for m in methods if m in row}
        best = (min if metric in LOWER_IS_BETTER else max)(means.values()) if len(means) > 1 else None
        cells = [(f"**{_cell(row.get(m))}**" if best is not None and means.get(m) == best else _cell(row.get(m)))
                 for m in methods]
        lines.append(f"| {label(metric)} | " + " | ".join(cells) + " |")
    seeds = {m: max((len(r[m]["seeds"]) for r in agg["metrics"].values() if m in r), default=0) for m in methods}
    lines.append("| seeds | " + " | ".join(str(seeds[m]) for m in methods) + " |")
    notes = [f"Mean ± sample std over seeds, in %. Evaluation: {agg['eval']['mode']} mode, eval seed "
             f"{agg['eval']['eval_seed']}; best mean in bold."]
    imgs = agg.get("images", {})
    if imgs:
        notes.append("Images: " + "; ".join(_describe(k, v) for k, v in imgs.items()) + ".")
    if "autoattack" in imgs:
        notes.append("'worst' is the worst case over every attack on the AutoAttack images only; 'worst w/o "
                     "autoattack' is over the other attacks on all robustness images, so it can be the lower.")
    elif "robustness" in imgs:
        notes.append("'worst' is the worst case over the attacks run (no AutoAttack) on all robustness images.")
    if agg.get("fg_area") is not None:
        notes.append(f"The foreground covers {100 * agg['fg_area']:.1f} % of the saliency images: the share "
                     "that an attribution spread evenly would put on it.")
    if agg.get("corruption_table"):
        names = [f"{t} ({TABLE_NAMES[t]}'s settings)" if t in TABLE_NAMES else t
                 for t in agg["corruption_table"].split(", ")]
        notes.append(f"Corruption table: {', '.join(names)}.")
    if agg.get("mce_reference"):
        notes.append(f"mCE relative to {agg['mce_reference']}.")
    for test, why in (agg.get("skipped") or {}).items():
        notes.append(f"Not measured: {'background tests' if test == 'background' else test}, {why}.")
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n" + paired_markdown(agg, all_rows)


def paired_markdown(agg: dict, all_rows: bool = False) -> str:
    """One table per compared method: its paired difference from each baseline."""
    paired = agg.get("paired") or {}
    if not paired:
        return ""
    tables = []
    for names in by_method(paired).values():
        lines = ["| metric (points) | " + " | ".join(f"{n.replace('-vs-', ' − ')}, {int(100 * CONFIDENCE)} % CI | "
                                                      "verdict" for n in names) + " |",
                 "|---|" + "---:|---|" * len(names)]
        metrics = [m for m in agg["metrics"] if any(m in paired[n] for n in names) and (all_rows or headline(m))]
        for metric in metrics:
            cells = []
            for n in names:
                d = paired[n].get(metric)
                cells += [interval_text(d), d["verdict"]] if d else ["–", "–"]
            lines.append(f"| {label(metric)} | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return ("\n" + "\n\n".join(tables) + "\n\nPaired by training seed: the mean of the per-seed differences (same "
            "seed, same data order) with its 95 % Student-t interval; the verdict reads the interval only (better / "
            "worse when it excludes 0, in the metric's good direction).\n")


def _describe(block: str, images: dict) -> str:
    if "n" not in images:  # clean: one description per variant
        ns = {v["n"] for v in images.values()}
        ofs = {v["of"] for v in images.values()}
        return f"clean {'/'.join(map(str, sorted(ns)))} of {'/'.join(map(str, sorted(ofs)))} per variant"
    at = f", at {', '.join(f'{b:g}' for b in images['budgets_255'])}/255 only" if images.get("budgets_255") else ""
    return f"{block} {images['n']} of {images['of']} ({images['split']}{at})"


def to_csv(agg: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "method", "mean", "std", "n_seeds", "seeds", "values"])
    for metric, row in agg["metrics"].items():
        for m, s in row.items():
            w.writerow([metric, m, repr(s["mean"]), "" if s["std"] is None else repr(s["std"]), s["n"],
                        " ".join(map(str, s["seeds"])), " ".join(map(repr, s["values"]))])
    return buf.getvalue()


def write_tables(agg: dict, out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {"markdown": write_text(out_dir / "results.md", to_markdown(agg)),
            "csv": write_text(out_dir / "results.csv", to_csv(agg)),
            "json": write_json(out_dir / "results.json", agg)}
