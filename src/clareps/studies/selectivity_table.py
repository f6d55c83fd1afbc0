"""The tables, slopes and plot of the selectivity study (docs/studies/selectivity.md) from its archive
(``clareps study table selectivity ARCHIVE``).

Part 1 (ARCHIVE/teachers/stepN/items.json and teacher_check.json, as many teachers as are archived):
per teacher and bank the mean of each measure; per teacher (jacobian - low-frequency) with its paired
95 % Student-t interval over items; its least-squares slope against the teacher's class consistency
(per 0.1) with a 95 % percentile bootstrap interval (2000 resamples of the items, the same items for
every teacher, seed 0). Part 2 (ARCHIVE/families/heldout_items.json, when archived): every bank's means,
each family against the low-frequency control (paired intervals), and the goal check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from clareps.errors import ClarepsError

MEASURES = {"class_correct": "class consistency", "shape_iou": "shape IoU", "bg_source_kept": "bg source kept",
            "bg_minus_fg_change": "bg − fg change", "tint_shift": "tint shift", "texture_change": "texture change"}
PRIMARY = ("bg_source_kept", "shape_iou", "bg_minus_fg_change")
BANKS = ("jacobian", "low-frequency", "control")


def load_teachers(archive: Path) -> list[dict]:
    out = []
    for d in sorted((archive / "teachers").glob("step*"), key=lambda p: int(p.name[4:])):
        if (d / "items.json").exists():
            items = json.load(open(d / "items.json"))
            q = json.load(open(d / "teacher_check.json"))["class_consistency"]
            out.append({"step": int(d.name[4:]), "quality": q, "items": items})
    return out


def values(items: dict, bank: str, measure: str) -> np.ndarray:
    return np.asarray(items["banks"][bank]["measures"][measure], dtype=float)


def paired(diff: np.ndarray) -> tuple[float, float, float]:
    m = float(diff.mean())
    half = float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else np.nan
    return m, m - half, m + half


def slope(q: np.ndarray, d: np.ndarray) -> float:
    return float(np.polyfit(q, d, 1)[0]) * 0.1  # per 0.1 of class consistency


def teacher_tables(teachers: list[dict], resamples: int = 2000) -> str:
    lines = ["| teacher (step) | class consistency of the teacher | measure | jacobian | low-frequency | control (k = 0) |",
             "|---|---|---|---|---|---|"]
    for t in teachers:
        for m, label in MEASURES.items():
            cells = [f"{values(t['items'], b, m).mean():.3f}" for b in BANKS]
            lines.append(f"| {t['step']} | {t['quality']:.3f} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "jacobian − low-frequency per teacher (mean [95 % CI over items]) and the slope against the "
              "teacher's class consistency (per 0.1 [95 % bootstrap CI])", "",
              "| measure | " + " | ".join(f"step {t['step']} ({t['quality']:.3f})" for t in teachers) + " | slope per 0.1 |",
              "|---|" + "---|" * (len(teachers) + 1)]
    sources = [t["items"]["source_index"] for t in teachers]
    if any(s != sources[0] for s in sources):
        raise ClarepsError("the teachers' banks hold different items")
    n = len(sources[0])
    q = np.array([t["quality"] for t in teachers])
    rng = np.random.default_rng(0)
    draws = rng.integers(0, n, size=(resamples, n))
    for m, label in MEASURES.items():
        diffs = [values(t["items"], "jacobian", m) - values(t["items"], "low-frequency", m) for t in teachers]
        cells = [("{:+.3f} [{:+.3f}, {:+.3f}]").format(*paired(d)) for d in diffs]
        if len(teachers) >= 2:
            boot = np.array([slope(q, np.array([d[idx].mean() for d in diffs])) for idx in draws])
            lo, hi = np.percentile(boot, [2.5, 97.5])
            cells.append(f"{slope(q, np.array([d.mean() for d in diffs])):+.3f} [{lo:+.3f}, {hi:+.3f}]")
        else:
            cells.append("– (one teacher)")
        lines.append(f"| {label}{' (primary)' if m in PRIMARY[:2] else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def teacher_plot(teachers: list[dict], out: Path, families: dict | None = None) -> Path:
    """One panel per measure; a line per bank over the teachers; the families (held out, shipped
    teacher only) as single markers at the shipped teacher's quality."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = [t["quality"] for t in teachers]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.2))
    for ax, (m, label) in zip(axes.flat, MEASURES.items()):
        for bank, style in zip(BANKS, ("o-", "s--", "^:")):
            ax.plot(q, [values(t["items"], bank, m).mean() for t in teachers], style, label=bank)
        shipped = max(teachers, key=lambda t: t["step"])
        for bank, marker in zip([b for b in (families or {}).get("banks", {}) if b not in BANKS], "D*Pxv"):
            ax.plot([shipped["quality"]], [values(families, bank, m).mean()], marker, ms=8, label=bank)
        ax.set_title(label)
        ax.set_xlabel("teacher class consistency")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Each measure against teacher quality (100 matched items; t_e 0.5, k 16, tap mid)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def family_table(path: Path) -> str:
    items = json.load(open(path))
    banks = list(items["banks"])
    lines = ["| measure | " + " | ".join(banks) + " |", "|---|" + "---|" * len(banks)]
    for m, label in MEASURES.items():
        cells = []
        for b in banks:
            v = values(items, b, m)
            if b in ("jacobian", "low-frequency", "control"):
                cells.append(f"{v.mean():.3f}")
            else:
                cells.append("{:.3f} ({:+.3f} [{:+.3f}, {:+.3f}])".format(v.mean(), *paired(v - values(items, "low-frequency", m))))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    ctl = values(items, "control", "class_correct").mean()
    goal = []
    for b in banks:
        cc, iou, kept = (values(items, b, m).mean() for m in ("class_correct", "shape_iou", "bg_source_kept"))
        ok = kept <= 0.30 and iou >= 0.85 and cc >= ctl - 0.02
        goal.append(f"{b}: background kept {kept:.3f} (≤ 0.30 {'yes' if kept <= 0.30 else 'no'}), shape IoU {iou:.3f} "
                    f"(≥ 0.85 {'yes' if iou >= 0.85 else 'no'}), class consistency {cc:.2f} vs control {ctl:.2f} "
                    f"({'within' if cc >= ctl - 0.02 else 'not within'} 2 points): goal {'reached' if ok else 'not reached'}")
    return "\n".join(lines) + "\n\n(family cells: mean (family − low-frequency [95 % CI over items]))\n\n" + \
        "\n".join(f"- {g}" for g in goal) + "\n"


def selectivity_tables(archive: Path, figure: Path | None = None) -> str:
    """Part 1 (and its plot into ``figure``), then part 2, of what ``archive`` holds."""
    teachers = load_teachers(archive)
    heldout = archive / "families" / "heldout_items.json"
    if not teachers and not heldout.exists():
        raise ClarepsError(f"nothing archived in {archive}: no teachers/step*/items.json nor "
                           "families/heldout_items.json")
    parts = []
    if teachers:
        parts.append(teacher_tables(teachers))
        if figure is not None:
            teacher_plot(teachers, figure, json.load(open(heldout)) if heldout.exists() else None)
            parts.append(f"figure: {figure}\n")
    if heldout.exists():
        parts.append(family_table(heldout))
    return "\n".join(parts)
