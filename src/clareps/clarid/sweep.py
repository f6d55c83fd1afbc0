"""``bank sweep``: a grid over t_e, k, w and the projection variant on a small matched
subset, one table of bank metrics, and the setting the evidence picks."""

from __future__ import annotations

import itertools
from pathlib import Path

from clareps.clarid.bank import BankBuilder, BankConfig, build_bank, resolved
from clareps.clarid.report import comparison_grid, measure_bank
from clareps.config import build_config, to_plain
from clareps.data.spec import load_data
from clareps.errors import ClarepsError
from clareps.io import write_json, write_text
from clareps.tables import csv_text, markdown_table

COLUMNS = ("t_e", "k", "w", "variant", "class_consistency", "bg_source_kept", "bg_change", "fg_change",
           "bg_variance", "nmi_features", "nmi_input_features", "seconds_per_item")


def setting_name(t_e: float, k: int, w: float, variant: str) -> str:
    return f"te{t_e:g}_k{k}_w{w:g}_{variant}"


def run_sweep(base: BankConfig, out: Path, t_es: list[float], ks: list[int], ws: list[float],
              variants: list[str], judge: Path, quiet: bool = False) -> tuple[list[dict], dict | None]:
    grid = plan_grid(base, out, t_es, ks, ws, variants)
    rows = []
    train = None
    for (t_e, k, w, variant), (cfg, folder) in grid.items():
        bank, _ = build_bank(cfg, folder, quiet=quiet)
        metrics = measure_bank(folder, resolved(cfg), judge)
        train = train or load_data(cfg.data)
        comparison_grid([bank], [f"k={k} {variant}"], train, folder / "grid.png", per_class=4)
        rows.append({"t_e": t_e, "k": k, "w": w, "variant": variant, **{c: metrics.get(c) for c in COLUMNS[4:]}})
    best = choose(rows)
    write_json(out / "sweep.json", {"rows": rows, "chosen": best})
    write_text(out / "sweep.csv", csv_text(rows, COLUMNS))
    write_text(out / "sweep.md", _markdown(rows, best))
    return rows, best


def plan_grid(base: BankConfig, out: Path, t_es: list[float], ks: list[int], ws: list[float],
              variants: list[str]) -> dict[tuple, tuple[BankConfig, Path]]:
    """Every setting's bank config, each validated (and the largest k checked against the teacher)
    before the first bank is built; the k = 0 control of each (t_e, w) comes first."""
    if not (t_es and ks and ws and variants):
        raise ClarepsError("the sweep grid is empty: give at least one t_e, k, w and variant")
    grid = {}
    for t_e, w in itertools.product(t_es, ws):
        settings = [(0, "plain")] + [(k, v) for k, v in itertools.product([k for k in ks if k != 0], variants)]
        for k, variant in settings:
            clarid = dict(to_plain(base.clarid), t_e=t_e, k=k, w=w, norm_preserving=variant == "norm")
            plain = dict(to_plain(base), clarid=clarid, source="matched", kind="canonical" if k else "control")
            cfg = build_config(BankConfig, plain, "bank sweep")
            grid[(t_e, k, w, variant)] = cfg, out / setting_name(t_e, k, w, variant)
    widest = max(grid.values(), key=lambda item: item[0].clarid.k)
    BankBuilder(*widest, quiet=True)  # loads the teacher and data: refuses a k above the latent dimension
    return grid


def choose(rows: list[dict]) -> dict | None:
    """Most background removal (lowest share of backgrounds whose source survives) among
    settings whose class consistency is within 2 points of their control's."""
    control = {(r["t_e"], r["w"]): r["class_consistency"] for r in rows if r["k"] == 0}
    ok = [r for r in rows if r["k"] > 0 and r["class_consistency"] >= control[(r["t_e"], r["w"])] - 0.02]
    if not ok:
        return None
    return min(ok, key=lambda r: (r["bg_source_kept"] if r["bg_source_kept"] is not None else 1.0,
                                  -(r["bg_change"] or 0.0)))


def _markdown(rows: list[dict], best: dict | None) -> str:
    verdict = ("chosen: " + ", ".join(f"{c}={best[c]}" for c in COLUMNS[:4])) if best else \
        "no setting kept class consistency within 2 points of its control"
    return markdown_table(rows, COLUMNS) + f"\n{verdict}\n"
