"""The report's figures, each returned as PNG bytes (matplotlib with the Agg backend)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from clareps.distill.methods import METHODS  # noqa: E402
from clareps.grids import save_grid  # noqa: E402



def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def color(method: str, i: int) -> str:
    return METHODS[method].color if method in METHODS and METHODS[method].color else f"C{i % 10}"


def grid_png(images: torch.Tensor, nrow: int, row_labels: list[str] | None = None, scale: int = 2) -> bytes:
    """An image grid (clareps.grids) as PNG bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = save_grid(images, Path(tmp) / "grid.png", nrow=nrow, row_labels=row_labels, scale=scale)
        return path.read_bytes()


def _stat(row: dict, method: str) -> tuple[float, float]:
    s = row.get(method)
    if s is None:
        return np.nan, 0.0
    return 100 * s["mean"], 100 * (s["std"] or 0.0)


def grouped_bars(agg: dict, metrics: list[str], labels: list[str], ylabel: str, title: str,
                 width_per_group: float = 0.7) -> bytes:
    """One group of bars per metric, one bar per method: mean over seeds with ± std whiskers."""
    methods = agg["methods"]
    fig, ax = plt.subplots(figsize=(max(6.0, width_per_group * len(metrics) + 2), 3.4))
    x = np.arange(len(metrics))
    w = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        stats = [_stat(agg["metrics"].get(k, {}), m) for k in metrics]
        ax.bar(x + (i - (len(methods) - 1) / 2) * w, [s[0] for s in stats], w, yerr=[s[1] for s in stats],
               label=m, color=color(m, i), capsize=2, error_kw={"lw": 0.8})
    ax.set_xticks(x, labels, rotation=30 if len(metrics) > 6 else 0, ha="right" if len(metrics) > 6 else "center")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(methods), loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(metrics) > 6
                                                                                    else -0.12), frameon=False)
    return _png(fig)


def robust_curves(agg: dict, attacks: list[str], budgets: dict[str, list[float]]) -> bytes:
    """Robust accuracy vs L-inf budget: one panel per attack (the per-point worst case first)."""
    methods = agg["methods"]
    fig, axes = plt.subplots(1, len(attacks), figsize=(2.5 * len(attacks), 2.7), sharey=True, squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        bs = budgets[attack]
        for i, m in enumerate(methods):
            stats = [_stat(agg["metrics"].get(f"robust/{attack}@{b:g}/255", {}), m) for b in bs]
            ax.errorbar(bs, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", ms=3, lw=1.2,
                        capsize=2, label=m, color=color(m, i))
        titles = {"worst": "worst case over attacks", "worst-fast": "worst case w/o AutoAttack"}
        if attack == "worst" and bs != budgets.get("worst-fast", bs):  # robustness.slow_budgets_255
            titles["worst"] += "\n(the budgets AutoAttack ran at)"
        ax.set_title(titles.get(attack, attack), fontsize=10)
        ax.set_xlabel("L-inf budget (x/255)")
        ax.set_xticks(bs, [f"{b:g}" for b in bs])
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("robust accuracy (%)")
    axes[0][0].set_ylim(0, 100)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(methods), fontsize=9,
               frameon=False)
    return _png(fig)


def better_is_right(d: dict, lower_is_better: bool) -> tuple[float, float, float]:
    """A paired difference's mean and 95 % interval in points, negated for a lower-is-better metric (so a
    gain is always positive); without an interval (one seed) both ends are the mean."""
    sign = -100.0 if lower_is_better else 100.0
    lo, hi = (d["low"], d["high"]) if d["low"] is not None else (d["mean"], d["mean"])
    return sign * d["mean"], min(sign * lo, sign * hi), max(sign * lo, sign * hi)


def paired_forest(paired: dict, keys: list[str], labels: list[str], lower_is_better: tuple[str, ...]) -> bytes:
    """Each comparison's paired difference per metric (points) with its 95 % interval, signed so that right
    is better for every metric; an interval that crosses the zero line is no detectable difference."""
    names = list(paired)
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.32 * len(keys) * max(1, len(names)) ** 0.6))
    step = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        ys, xs, lows, highs = [], [], [], []
        for j, k in enumerate(keys):
            d = paired[name].get(k)
            if d is None:
                continue
            mean, lo, hi = better_is_right(d, k in lower_is_better)
            ys.append(j + (i - (len(names) - 1) / 2) * step)
            xs.append(mean)
            lows.append(mean - lo)
            highs.append(hi - mean)
        ax.errorbar(xs, ys, xerr=[lows, highs], fmt="o", ms=4, capsize=2, lw=1.2, color=f"C{i % 10}",
                    label=name.replace("-vs-", " − "))
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(keys)), labels, fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlabel("paired difference, points (right: better; bars: 95 % interval over seeds)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1 - 0.4 / max(1, len(keys))),
              ncol=len(names), frameon=False)
    return _png(fig)


def spectra(singular_values: torch.Tensor, label: str) -> bytes:
    """Mean ± std over items of the k singular values of J at each item's latent."""
    s = singular_values.float()
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    ranks = np.arange(1, s.shape[1] + 1)
    mean = s.mean(0).numpy()
    std = s.std(0).numpy() if len(s) > 1 else np.zeros_like(mean)
    ax.plot(ranks, mean, marker="o", ms=3, label=label)
    ax.fill_between(ranks, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("rank i")
    ax.set_ylabel("singular value σ_i of J")
    ax.set_title(f"spectra over {len(s)} items (mean ± std)", fontsize=10)
    ax.set_xticks(ranks if len(ranks) <= 16 else ranks[::2])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def embeddings(panels: list[tuple[str, np.ndarray, np.ndarray]], class_names: list[str], method: str) -> bytes:
    """Scatter plots of 2-D embeddings, one panel per feature set, coloured by class."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (title, xy, labels) in zip(axes[0], panels):
        for c, name in enumerate(class_names):
            sel = labels == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=cmap(c % 10), label=name, alpha=0.85, lw=0)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{method} 1", fontsize=8)
        ax.set_ylabel(f"{method} 2", fontsize=8)
    axes[0][-1].legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return _png(fig)


def saliency_overlays(images: torch.Tensor, masks: torch.Tensor, captions: list[str],
                      rows: list[tuple[str, torch.Tensor]]) -> bytes:
    """Top row: the test images with their foreground outline; then one row of attribution maps
    per method (each map scaled to its own maximum), over a faded copy of the image."""
    n = images.shape[0]
    fig, axes = plt.subplots(1 + len(rows), n, figsize=(1.45 * n + 1.3, 1.5 * (1 + len(rows))), squeeze=False)
    pics = images.permute(0, 2, 3, 1).clamp(0, 1).numpy()
    for j in range(n):
        ax = axes[0][j]
        ax.imshow(pics[j], interpolation="nearest")
        ax.contour(masks[j, 0].numpy(), levels=[0.5], colors="yellow", linewidths=0.6)
        ax.set_title(captions[j], fontsize=7)
        for i, (_, maps) in enumerate(rows, start=1):
            m = maps[j].float().numpy()
            axes[i][j].imshow(pics[j].mean(-1), cmap="gray", vmin=0, vmax=1, alpha=0.45, interpolation="nearest")
            axes[i][j].imshow(m / max(float(m.max()), 1e-12), cmap="inferno", alpha=0.65, vmin=0, vmax=1,
                              interpolation="nearest")
    for i, ax_row in enumerate(axes):
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_ylabel("image" if i == 0 else rows[i - 1][0], fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.3)
    return _png(fig)


def term_curves(curves: dict[str, dict[str, list[tuple[float, float]]]]) -> bytes:
    """Each loss term's logged value vs epoch, one panel per term, a line per method (its first seed)."""
    terms = sorted({t for per_method in curves.values() for t in per_method})
    fig, axes = plt.subplots(1, len(terms), figsize=(2.6 * len(terms), 2.5), squeeze=False)
    for ax, term in zip(axes[0], terms):
        for i, (method, per_term) in enumerate(curves.items()):
            if term in per_term:
                epochs, values = zip(*per_term[term])
                ax.plot(epochs, values, lw=1.2, label=method, color=color(method, i))
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(curves), fontsize=9,
               frameon=False)
    return _png(fig)
