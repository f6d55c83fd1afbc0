"""The report's sections on what the students did: loss terms while training, robust, corruption
and background accuracy, saliency. Each takes the run's ``ReportContext`` and returns HTML, or raises
``Missing``."""

from __future__ import annotations

from pathlib import Path

import torch

from clareps.distill.methods import CADISTILL_TERMS
from clareps.report import figures
from clareps.report.context import Missing, ReportContext
from clareps.report.html_parts import esc, img, pct, table

ROBUST_ORDER = ("worst", "pgd", "cw", "apgd-ce", "autoattack", "autoattack-reduced")


def robust_section(ctx: ReportContext) -> str:
    agg = ctx.need_agg()
    budgets: dict[str, set] = {}
    for metric in agg["metrics"]:
        if metric.startswith("robust/"):
            attack, _, b = metric[len("robust/"):].partition("@")
            budgets.setdefault(attack, set()).add(float(b.split("/")[0]))
    attacks = [a for a in ROBUST_ORDER if a in budgets]
    if not attacks:
        raise Missing("the evaluation ran no attacks")
    png = figures.robust_curves(agg, attacks, {a: sorted(budgets[a]) for a in attacks})
    imgs = agg.get("images", {})
    sub = "; ".join(f"{k} on {v['n']} of {v['of']} {v['split']} images" for k, v in imgs.items()
                    if k in ("robustness", "autoattack"))
    return (img(png, "robust accuracy versus budget") +
            f"<p class='small'>Mean over seeds, whiskers ± std. The worst case counts a point as robust only if "
            f"every attack failed on it. {esc(sub)}.</p>")


def terms_section(ctx: ReportContext) -> str:
    """What each method's loss terms did while it trained: the unweighted values of the terms in its
    table (metrics.jsonl), first seed."""
    from clareps.io import read_jsonl

    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for method in ctx.cfg.get("methods") or (ctx.agg or {}).get("methods", []):
        runs = sorted(ctx.run.students.glob(f"{method}-s*/metrics.jsonl"))
        if not runs:
            continue
        rows = [r for r in read_jsonl(runs[0]) if "epoch" in r and "loss" in r]
        names = [k for k in ("ce", "kd", *CADISTILL_TERMS) if any(k in r for r in rows)]
        curves[method] = {k: [(r["epoch"], r[k]) for r in rows if k in r] for k in names}
    if not curves:
        raise Missing("no student logged its loss terms")
    return img(figures.term_curves(curves), "loss terms per epoch") + \
        "<p>Unweighted term values every <code>log_every</code> steps, first seed of each method.</p>"


def corruption_section(ctx: ReportContext) -> str:
    from clareps.evaluate.corruptions import COMMON, TABLE_NAMES

    agg = ctx.need_agg()
    types = [t for t in COMMON if f"corr/{t}" in agg["metrics"]]
    types += sorted(k[5:] for k in agg["metrics"] if k.startswith("corr/") and k[5:] not in types + ["mean", "mce"])
    if not types:
        raise Missing("the evaluation ran no corruptions")
    png = figures.grouped_bars(agg, [f"corr/{t}" for t in types], [t.replace("_", " ") for t in types],
                               "accuracy (%)", "accuracy under each corruption, mean over its severities")
    table = agg.get("corruption_table") or "imagenet"  # aggregates from before tables were named
    names = ", ".join(TABLE_NAMES.get(t, t) for t in table.split(", "))
    return img(png, "corruption accuracy per type") + f"<p>Corruption settings: {names}.</p>"


def background_section(ctx: ReportContext) -> str:
    from clareps.evaluate.background import VARIANTS

    agg = ctx.need_agg()
    variants = [v for v in VARIANTS if f"clean/{v}" in agg["metrics"]]
    if "background" in (agg.get("skipped") or {}):
        raise Missing(agg["skipped"]["background"])
    if not variants:
        raise Missing("the evaluation measured no clean accuracy")
    png = figures.grouped_bars(agg, [f"clean/{v}" for v in variants], [v.removeprefix("test-") for v in variants],
                               "accuracy (%)", "clean accuracy per test variant")
    gap = agg["metrics"].get("bg/gap", {})
    cells = [[m, "–" if m not in gap else f"{100 * gap[m]['mean']:.1f}" +
              ("" if gap[m]["std"] is None else f" ± {100 * gap[m]['std']:.1f}")] for m in agg["methods"]]
    return (img(png, "background tests") +
            "<p class='small'>only-fg: the animal alone; only-bg: the background alone (chance if the model reads "
            "the shape only); mixed-same / mixed-rand: the animal on its class's background source / a random "
            "one. The background gap is mixed-same − mixed-rand: what the model gains from the spurious "
            "background (0 for a model that ignores it).</p>" +
            table(["method", "background gap (points) ↓"], cells, num_cols=True))


def saliency_section(ctx: ReportContext, n: int) -> str:
    from clareps.evaluate.suite import maps_path
    from clareps.io import load_tensors

    agg = ctx.need_agg()
    if "saliency" in (agg.get("skipped") or {}):
        raise Missing(agg["skipped"]["saliency"])
    first: dict[str, Path] = {}
    for run in sorted(agg["runs"], key=lambda r: (r["train_seed"] is None, r["train_seed"])):
        first.setdefault(run["method"], maps_path(run["file"]))
    loaded = {m: load_tensors(f)[0] for m, f in first.items() if f.exists()}
    if not loaded:
        raise Missing("no saliency maps (the evaluation's saliency.save_maps was 0, or saliency was not run)")
    ref = next(iter(loaded.values()))
    same = [m for m, t in loaded.items() if torch.equal(t["indices"], ref["indices"])]
    kind = next((k for k in ("maps.integrated-gradients", "maps.saliency") if k in ref), None)
    if kind is None:
        raise Missing("the maps files hold no attribution maps")
    k = min(n, len(ref["indices"]))
    names = ctx.class_names
    captions = [names[int(y)] for y in ref["labels"][:k]]
    rows = [(m, loaded[m][kind][:k]) for m in agg["methods"] if m in same and kind in loaded[m]]
    png = figures.saliency_overlays(ref["images"][:k], ref["masks"][:k], captions, rows)
    share = agg["metrics"].get(f"saliency/{kind[5:]}", {})
    shares = ", ".join(f"{m} {pct(share[m]['mean'])}" for m in agg["methods"] if m in share)
    area = f" (an even spread would put {pct(agg['fg_area'])} there)" if agg.get("fg_area") is not None else ""
    left = sorted(set(loaded) - set(same))
    return (img(png, "saliency overlays") +
            f"<p class='small'>{esc(kind[5:])} maps (|attribution| summed over channels, for the true class, "
            f"each scaled to its own maximum) of the same test images for one student per method (its first "
            f"seed); the yellow line outlines the animal. Share of attribution mass on the animal, mean over "
            f"seeds and the evaluation's saliency images: {esc(shares)}{esc(area)}.</p>" +
            (f"<p class='missing'>Left out (maps of other images): {esc(', '.join(left))}</p>" if left else ""))
