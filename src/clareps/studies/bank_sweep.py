"""``bank sweep``: a grid over t_e, k, w, the projection variant, the direction choice, the
feature label and the tap on a small matched subset, one table of bank metrics, and the
setting the evidence picks (among Jacobian settings; the other direction choices are controls)."""

from __future__ import annotations

import itertools
from pathlib import Path

from clareps.bank.build import BankBuilder, BankConfig, build_bank
from clareps.bank.views import comparison_grid, ensure_metrics
from clareps.config import build_config, to_plain
from clareps.data.spec import load_data
from clareps.errors import ClarepsError
from clareps.io import write_json, write_text
from clareps.tables import csv_text, markdown_table

SETTING = ("t_e", "k", "w", "variant", "directions", "feature_label", "tap")
METRICS = ("class_consistency", "shape_iou", "bg_source_kept", "bg_source_kept_correlated", "bg_source_kept_other",
           "bg_correlated", "bg_change", "bg_change_correlated", "bg_change_other", "fg_change", "tint_shift",
           "texture_change", "bg_variance", "nmi_features", "ami_features", "nmi_input_features",
           "ami_input_features", "probe_features", "probe_features_shuffled", "removed_share", "engine_iterations",
           "engine_converged", "engine_max_angle_deg", "seconds_per_item")
COLUMNS = SETTING + METRICS


def setting_name(t_e: float, k: int, w: float, variant: str, directions: str = "jacobian",
                 feature_label: str = "class", tap: str | None = None) -> str:
    """Folder name; the newer axes appear only off their defaults, so older sweep folders are reused."""
    extra = ("" if directions == "jacobian" else f"_{directions}") + \
        ("" if feature_label == "class" else f"_{feature_label}") + ("" if tap is None else f"_tap-{tap}")
    return f"te{t_e:g}_k{k}_w{w:g}_{variant}{extra}"


def run_sweep(base: BankConfig, out: Path, t_es: list[float], ks: list[int], ws: list[float],
              variants: list[str], judge: Path, quiet: bool = False, directions: list[str] = ("jacobian",),
              feature_labels: list[str] = ("class",), taps: list[str] | None = None,
              mask_judge: Path | None = None) -> tuple[list[dict], dict | None]:
    """The k = 0 control runs once per (t_e, w, tap, feature label); directions only vary k > 0. Every
    setting is validated (taps and the largest k against the teacher) before the first bank is built.
    A bank already built is reused, and its metrics.json is recomputed only when stale (ensure_metrics)."""
    if not (t_es and ks and ws and variants and directions and feature_labels) or taps == []:
        raise ClarepsError("the sweep grid is empty: give at least one t_e, k, w, variant, direction and label")
    rows = []
    train, train_rate = None, None
    axes = itertools.product(t_es, ws, taps or [base.clarid.tap], feature_labels)
    configs = [setting for t_e, w, tap, label in axes
               for setting in _settings(base, t_e, w, tap, label, ks, variants, directions, taps is not None)]
    name, widest = max(configs, key=lambda item: item[1].clarid.k)
    builder = BankBuilder(widest, out / name, quiet=True)  # loads the teacher and data: refuses a k above the latent size
    for tap in taps or []:  # a tap that names no module, or one the forward never calls, is refused here
        builder.feature_shape(tap)
    for folder_name, cfg in configs:
        c = cfg.clarid
        folder = out / folder_name
        bank, _ = build_bank(cfg, folder, quiet=quiet)
        metrics, _ = ensure_metrics(folder, judge, mask_judge)
        train = train or load_data(cfg.data)
        variant = "norm" if c.norm_preserving else "plain"
        comparison_grid([bank], [f"k={c.k} {variant} {c.directions}"], train, folder / "grid.png", per_class=4)
        train_rate = metrics.get("bg_correlated_train", train_rate)
        rows.append({"t_e": c.t_e, "k": c.k, "w": c.w, "variant": variant, "directions": c.directions,
                     "feature_label": c.feature_label, "tap": c.tap, **{m: metrics.get(m) for m in METRICS}})
    best = best_bank_setting(rows)
    write_json(out / "sweep.json", {"rows": rows, "chosen": best})
    write_text(out / "sweep.csv", csv_text(rows, COLUMNS))
    write_text(out / "sweep.md", _markdown(rows, best, train_rate))
    return rows, best


def _settings(base: BankConfig, t_e: float, w: float, tap: str, label: str, ks: list[int], variants: list[str],
              directions: list[str], name_tap: bool) -> list[tuple[str, BankConfig]]:
    grid = [(0, "plain", "jacobian")] + list(itertools.product([k for k in ks if k > 0], variants, directions))
    out = []
    for k, variant, kind in grid:
        clarid = base.clarid.model_copy(update={"t_e": t_e, "k": k, "w": w, "norm_preserving": variant == "norm",
                                                "directions": kind, "feature_label": label, "tap": tap})
        cfg = base.model_copy(update={"clarid": clarid, "source": "matched", "kind": "canonical" if k else "control"})
        out.append((setting_name(t_e, k, w, variant, kind, label, tap if name_tap else None),
                    build_config(BankConfig, to_plain(cfg), "bank sweep")))
    return out


def _key(r: dict) -> tuple:
    return r["t_e"], r["w"], r.get("tap"), r.get("feature_label", "class")


def best_bank_setting(rows: list[dict]) -> dict | None:
    """Most background removal (lowest share of backgrounds whose source survives) among
    Jacobian settings whose class consistency is within 2 points of their control's."""
    control = {_key(r): r["class_consistency"] for r in rows if r["k"] == 0}
    ok = [r for r in rows if r["k"] > 0 and r.get("directions", "jacobian") == "jacobian"
          and r["class_consistency"] >= control[_key(r)] - 0.02]
    if not ok:
        return None
    return min(ok, key=lambda r: (r["bg_source_kept"] if r["bg_source_kept"] is not None else 1.0,
                                  -(r["bg_change"] or 0.0)))


def _markdown(rows: list[dict], best: dict | None, train_rate: float | None = None) -> str:
    verdict = ("chosen: " + ", ".join(f"{c}={best[c]}" for c in SETTING)) if best else \
        "no setting kept class consistency within 2 points of its control"
    rate = "" if train_rate is None else ("\nbg_correlated: share of samples whose background is the class's "
                                          f"correlated source; training set: {train_rate:.3f}\n")
    return markdown_table(rows, COLUMNS) + f"\n{verdict}\n{rate}"
