"""Sections about the inputs: the data, the teacher's samples, the banks and their features."""

from __future__ import annotations

import torch

from clareps.report import figures
from clareps.report.context import Missing, ReportContext
from clareps.report.embed import NAMES, embed_2d, embedding_method
from clareps.report.html_parts import esc, img, pct, table


def data_section(ctx: ReportContext, per_class: int) -> str:
    from clareps.data.benchmark import SPLITS

    train = ctx.split()
    k = min(per_class, int(torch.bincount(train.labels, minlength=train.num_classes).min()))
    if k == 0:
        raise Missing("the training split lacks images of some class")
    sub = train.per_class(k, seed=0)
    left = (f"<h3>Training split ({len(train):,} images): {k} per class</h3>" +
            img(figures.grid_png(sub.images, k, sub.class_names), "training images per class", "pixelated"))
    if ctx.data_spec.kind != "benchmark":
        return left
    variants = [s for s in SPLITS if s.startswith("test-")]
    first = ctx.split(variants[0])
    # the test variants share their silhouettes index by index: one image per class, the same in every row
    idx = [int((first.labels == c).nonzero()[0]) for c in range(first.num_classes) if (first.labels == c).any()]
    rows = torch.cat([ctx.split(v).images[idx] for v in variants])
    spec = ctx.data_spec.benchmark
    right = (f"<h3>Test variants: the same {len(idx)} silhouettes in every row</h3>" +
             img(figures.grid_png(rows, len(idx), [v.removeprefix("test-") for v in variants]),
                 "test variants", "pixelated") +
             f"<p class='small'>Columns: {esc(', '.join(first.class_names[i] for i in first.labels[idx].tolist()))}. "
             f"{len(first):,} test images per variant. In training a class sits on its own background source "
             f"with probability rho = {spec.rho}, else on a random other one: the background is a spurious cue "
             "of known strength; the test variants take it away (only-fg), keep only it (only-bg), or make it "
             "always agree (mixed-same) or be random (mixed-rand).</p>")
    return f"<div class='row'><div class='figure'>{left}</div><div class='figure'>{right}</div></div>"


def teacher_samples_section(ctx: ReportContext, per_class: int) -> str:
    bank = ctx.bank("control")
    meta = bank.meta
    names = ctx.class_names
    counts = torch.bincount(bank.labels, minlength=len(names))
    k = min(per_class, int(counts.min()))
    if k == 0:
        raise Missing("the control bank lacks samples of some class")
    idx = torch.cat([(bank.labels == c).nonzero().flatten()[:k] for c in range(len(names))])
    metrics = ctx.bank_metrics("control") or {}
    judged = "" if "class_consistency" not in metrics else \
        f" The shape judge assigns {pct(metrics['class_consistency'])} of all {metrics['items']} to their class."
    steps = meta.get("config", {}).get("clarid", {}).get("steps")
    return (f"<div class='row'><div>{img(figures.grid_png(bank.images[idx], k, names), 'teacher samples', 'pixelated')}"
            f"</div><div class='text'><p class='small'>Guided DDIM samples (w = {meta.get('w')}, "
            f"{steps} steps over the whole schedule), one row per class: the control bank's items, drawn from "
            f"noise with no projection.{judged} A trained teacher draws a recognisable member of the row's class "
            "(an animal on some background, on the default benchmark); colour blobs or noise mean it is not there "
            "yet.</p></div></div>")


def banks_section(ctx: ReportContext, per_class: int) -> str:
    canon, ctrl = ctx.bank("canonical"), ctx.bank("control")
    names = ctx.class_names
    paired = canon.labels.shape == ctrl.labels.shape and torch.equal(canon.labels, ctrl.labels) \
        and torch.equal(canon.source_index, ctrl.source_index)
    if not paired:
        raise Missing("the canonical and control banks hold different items (build both with the same seed, "
                      "source and size)")
    k = min(4, per_class, int(torch.bincount(canon.labels, minlength=len(names)).min()))
    matched = bool((canon.source_index >= 0).all())
    train = ctx.split()
    columns = {"real": [], "control": [], "canonical": []}
    for c in range(len(names)):
        idx = (canon.labels == c).nonzero().flatten()[:k]
        src = canon.source_index[idx] if matched else (train.labels == c).nonzero().flatten()[:k]
        columns["real"].append(train.images[src])
        columns["control"].append(ctrl.images[idx])
        columns["canonical"].append(canon.images[idx])
    meta = canon.meta
    heads = {"real": "real training images", "control": f"control (w = {meta.get('w')}, k = 0)",
             "canonical": f"canonical (k = {meta.get('k')})"}
    grids = "".join(f"<div><h3>{esc(heads[name])}</h3>" +
                    img(figures.grid_png(torch.cat(parts), k, names if name == "real" else None), name, "pixelated")
                    + "</div>" for name, parts in columns.items())
    how = ("each control and canonical item starts from the real image beside it (DDIM inversion)" if matched else
           "the real images are training images of the class, not the items' sources: these banks are drawn from "
           "noise (random per class); a control item and the canonical item beside it share their latent at t_e, "
           "so they differ only by the projection")
    out = (f"<div class='row'>{grids}</div><p class='small'>One row per class; {how}.</p><div class='row'><div>")
    if canon.singular_values.shape[1]:
        out += img(figures.spectra(canon.singular_values, f"canonical, k = {meta.get('k')}"), "singular value spectra")
    else:
        out += "<p class='missing'>The canonical bank has k = 0: no spectrum.</p>"
    out += (f"</div><div class='text'><p class='small'>Left: the top-{meta.get('k')} "
            f"singular values of the Jacobian of the teacher's {esc(meta.get('tap'))} features with respect to "
            f"the latent at t_e = {meta.get('t_e')} T, the directions that CLARID projects out. Below: the banks.</p>")
    out += bank_table(ctx) + "</div></div>"
    return out


def bank_table(ctx: ReportContext) -> str:
    rows = []
    for kind in ("canonical", "control", "feat-real"):
        try:
            bank = ctx.bank(kind)
        except Missing:
            continue
        m = ctx.bank_metrics(kind) or {}
        rows.append([kind, str(len(bank)), str(bank.meta.get("k")), bank.meta.get("source", "?"),
                     pct(m.get("class_consistency")), f"{float(bank.seconds.mean()):.2f}"])
    return table(["bank", "items", "k", "source", "judge class consistency", "s / item"], rows, num_cols=True) \
        + bank_measures(ctx)


def bank_measures(ctx: ReportContext) -> str:
    """Each bank's metrics.json as `bank show` prints it: the engine record and the selectivity measures."""
    from clareps.bank.metrics import summary_rows

    columns = {kind: dict(summary_rows(m)) for kind in ("canonical", "control", "feat-real")
               if (m := ctx.bank_metrics(kind))}
    labels = list(dict.fromkeys(label for rows in columns.values() for label in rows))
    if not labels:
        return ""
    rows = [[esc(label)] + [esc(col.get(label, "–")) for col in columns.values()] for label in labels]
    return (table(["measure"] + list(columns), rows, num_cols=True) +
            "<p class='small'>Engine record: means over the items the engine ran on (the angle: the largest). "
            "Shape IoU: the mask judge's mask of a sample against its source image's mask; tint shift: change "
            "of the mean foreground colour; texture change: the rest of the foreground change. Background "
            "source kept: the background-source judge still names the source image's background, split by "
            "whether that was the class's correlated source. Correlated: the judge names the class's "
            "correlated source on the region outside the predicted mask (a random-source bank's rate beside the "
            "training set's).</p>")


def features_section(ctx: ReportContext, method: str) -> str:
    from clareps.measures import kmeans_nmi, linear_probe

    sets = []
    for kind, title in (("canonical", "canonical f(x~)"), ("control", "control f(x_te), k = 0"),
                        ("feat-real", "input: real images' f(x_te)")):
        try:
            bank = ctx.bank(kind)
        except Missing:
            continue
        sets.append((kind, title, bank))
    if len(sets) < 2:
        raise Missing("fewer than two banks: nothing to compare")
    method = embedding_method(method)
    panels, rows = [], []
    for kind, title, bank in sets:
        c = len(ctx.class_names)
        known = ctx.bank_metrics(kind, current=True) or {}  # what the bank-metrics stage measured, if it did
        nmi = known["nmi_features"] if "nmi_features" in known else \
            kmeans_nmi(bank.features, bank.labels, c) if len(bank) >= c else None
        xy = embed_2d(bank.features, method, ctx.run.cache)
        panels.append((f"{title}\nNMI {nmi:.3f}" if nmi is not None else title, xy, bank.labels.numpy()))
        probe = known["probe_features"] if "probe_features" in known else linear_probe(bank.features, bank.labels)
        rows.append([kind, str(len(bank)), "–" if nmi is None else f"{nmi:.3f}", pct(probe)])
    png = figures.embeddings(panels, ctx.class_names, NAMES[method])
    note = "" if method == "umap" else (
        " UMAP was not used: umap-learn is not installed here." if method == "tsne" else
        " (PCA was asked for in the run's config.)")
    tap = sets[0][2].meta.get("tap")
    return (img(png, "2-D embeddings of features") +
            f"<p class='small'>{NAMES[method]} of the teacher's {esc(tap)} features (L2-normalised), coloured by "
            f"class.{esc(note)} NMI: normalised mutual information between k-means clusters (k = number of "
            "classes) and the classes; higher means the classes separate better. The input features are those of "
            "real training images inverted to t_e (the feat-real bank). Linear probe: 5-fold cross-validated "
            "accuracy of a logistic regression on the same features. The teacher reads the class as an input, "
            "so both measure how much the features carry it, not what a classifier could learn from images."
            "</p>" +
            table(["features", "items", "k-means NMI ↑", "linear probe ↑"], rows, num_cols=True))
