"""``clareps distill-sweep``: choose distillation settings on the validation split, never a test variant.

Each setting of a grid (the product of ``key=v1,v2`` axes over the distill config) trains the
method's student for every seed, beside a ``ce`` reference with the same budget and data order. Each
student is scored on the validation carve-out of the training set (``val_fraction``, ``val_seed``):

- ``val``: clean accuracy;
- ``val_rand``: the same validation images with their foregrounds on random backgrounds (the
  benchmark's ``train-rand`` split at the validation indices): background reliance, measured without
  a test variant (default benchmark only);
- ``val_pgd``: PGD-L-inf robust accuracy at one small budget, on a balanced validation subset.

The pick: the highest mean of ``val_rand`` and ``val_pgd`` (``val_pgd`` alone off the benchmark) over
seeds, among settings whose mean ``val`` is within ``tolerance`` of the ``ce`` reference's.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

from clareps.config import load_config
from clareps.data.spec import load_data
from clareps.distill.methods import carve_validation
from clareps.distill.config import DistillConfig
from clareps.distill.trainer import DistillTrainer
from clareps.errors import ClarepsError
from clareps.classifiers.training import accuracy
from clareps.evaluate.robustness import RobustnessConfig, evaluate_robustness
from clareps.evaluate.suite import load_student, select
from clareps.io import hash_file, hash_obj, read_json, write_json, write_text
from clareps.tables import csv_text, markdown_table

METRICS = ("val", "val_rand", "val_pgd")


def parse_grid(axes: list[str]) -> dict[str, list[str]]:
    """``["loss.weights.align=0,1", ...]`` -> ``{"loss.weights.align": ["0", "1"], ...}``."""
    grid = {}
    for axis in axes:
        key, sep, values = axis.partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not items:
            raise ClarepsError(f"bad grid axis {axis!r}: expected key=value1,value2,...")
        if key.strip() in grid:
            raise ClarepsError(f"grid axis {key.strip()!r} is given twice")
        grid[key.strip()] = items
    return grid


def settings(grid: dict[str, list[str]], one_axis: bool = False) -> list[dict[str, str]]:
    """The product of the axes, or with ``one_axis`` the preset itself and then each value of each axis
    alone (the others left at the preset's): one-factor-at-a-time, linear in the number of values."""
    if one_axis:
        return [{}] + [{key: value} for key, values in grid.items() for value in values]
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def setting_name(setting: dict[str, str]) -> str:
    return "_".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in setting.items()) or "base"


def score_student(student: Path, cfg: DistillConfig, pgd_eps_255: float, pgd_images: int) -> dict:
    """Validation scores of a trained student (cached beside it, keyed by the student and the settings)."""
    cache = student.parent / "val_scores.json"
    key = hash_obj({"student": hash_file(student), "pgd_eps_255": pgd_eps_255, "pgd_images": pgd_images,
                    "val": [cfg.val_fraction, cfg.val_seed]})
    if cache.exists() and read_json(cache).get("key") == key:
        return read_json(cache)["scores"]
    model, _ = load_student(student)
    full = load_data(cfg.data)
    _, val_idx = carve_validation(full, cfg.val_fraction, cfg.val_seed)
    if len(val_idx) == 0:
        raise ClarepsError("the sweep scores on the validation split: set val_fraction > 0")
    val = full.subset(val_idx)
    scores = {"val": accuracy(model, val), "val_rand": None}
    if cfg.data.kind == "benchmark":
        scores["val_rand"] = accuracy(model, load_data(cfg.data, "train-rand").subset(val_idx))
    idx, _ = select(val, pgd_images, 0, "val")
    rob = evaluate_robustness(model, val.images[idx], val.labels[idx], val.num_classes,
                              RobustnessConfig(attacks=["pgd"], budgets_255=[pgd_eps_255], n_images=None))
    scores["val_pgd"] = rob["attacks"]["pgd"]["accuracy"][0]
    write_json(cache, {"key": key, "scores": scores, "n_val": len(val), "n_pgd": len(idx)})
    return scores


def objective(row: dict) -> float:
    parts = [row[m] for m in ("val_rand", "val_pgd") if row.get(m) is not None]
    return sum(parts) / len(parts)


def best_distill_setting(rows: list[dict], tolerance: float) -> dict | None:
    """The best objective among settings whose mean val accuracy is within ``tolerance`` of ce's."""
    ce = next(r for r in rows if r["method"] == "ce")
    ok = [r for r in rows if r["method"] != "ce" and r["val"] >= ce["val"] - tolerance]
    return max(ok, key=objective) if ok else None


def run_sweep(preset: Path, overrides: list[str], grid: dict[str, list[str]], seeds: list[int], out: Path,
              bank: Path | None, method: str = "cadistill", pgd_eps_255: float = 2.0, pgd_images: int = 200,
              tolerance: float = 0.02, quiet: bool = False, one_axis: bool = False) -> tuple[list[dict], dict | None]:
    if not seeds:
        raise ClarepsError("the sweep needs at least one seed")
    jobs = [("ce", {}, "ce")] + [(method, s, setting_name(s)) for s in settings(grid, one_axis)]

    def config(m: str, setting: dict, seed: int) -> DistillConfig:
        extra = [f"bank={bank}"] if m != "ce" and bank is not None else []
        cfg = load_config(DistillConfig, preset, [*overrides, *(f"{k}={v}" for k, v in setting.items()),
                                                  *extra, f"method={m}", f"seed={seed}"])
        return cfg.model_copy(update={"test_splits": [], "test_data": {}})  # a sweep never reads a test variant

    configs = {name: {seed: config(m, s, seed) for seed in seeds} for m, s, name in jobs}  # bad keys fail first
    rows = []
    for m, setting, name in jobs:
        per_seed = []
        for seed in seeds:
            cfg = configs[name][seed]
            trainer = DistillTrainer(cfg, out / "runs" / f"{name}-s{seed}", quiet=quiet)
            trainer.train()
            per_seed.append(score_student(trainer.student_path, cfg, pgd_eps_255, pgd_images))
        row = {"method": m, "setting": name, **({k: "preset" for k in grid} if m != "ce" else {}), **setting,
               "seeds": len(seeds)}
        for metric in METRICS:
            values = [s[metric] for s in per_seed if s[metric] is not None]
            row[metric] = statistics.mean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(row)
    best = best_distill_setting(rows, tolerance)
    columns = ["method", "setting", *grid, *(c for m in METRICS for c in (m, f"{m}_std")), "seeds"]
    rule = (f"pick: highest mean of val_rand and val_pgd (PGD-20 at {pgd_eps_255:g}/255 on {pgd_images} "
            f"validation images) among settings within {tolerance:g} of ce's val accuracy; seeds {seeds}")
    verdict = f"chosen: {best['setting']}" if best else "chosen: none (no setting kept val accuracy within tolerance)"
    write_json(out / "sweep.json", {"rows": rows, "chosen": best, "rule": rule, "grid": grid, "one_axis": one_axis,
                                    "bank": str(bank),
                                    "overrides": overrides, "preset": str(preset), "seeds": seeds})
    write_text(out / "sweep.csv", csv_text(rows, columns))
    write_text(out / "sweep.md", markdown_table(rows, columns) + f"\n{rule}\n\n{verdict}\n")
    return rows, best
