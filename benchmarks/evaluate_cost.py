"""Cost of the robustness evaluation: the old order (every attack on every point at every budget)
against the cascade (each attack only on the points still robust), same student, images and process.

Prints one JSON line: the seconds of each schedule (wall and this process's CPU time: with one
thread and other processes beside it, CPU time is the closer to an idle machine's wall time) and
their ratio, the seconds per attack, the
worst-case accuracies, and the per-point check: `weaker` counts (point, budget) pairs robust in the
cascade that the old order broke (must be 0), `stronger` the reverse. Every attack draws its
randomness per point (attacks.py, per_point.py), so a point attacked at a budget in both runs meets
the same attack in both: `weaker` must be 0 (only a floating-point difference between batch
sizes could flip a point), and `stronger` counts the points the cascade's carry-over broke at a
budget where the old order's attack missed.

    python benchmarks/evaluate_cost.py --student runs/distill/ce-s0                    # full mode's sizes
    python benchmarks/evaluate_cost.py --student runs/s --images 100 --slow-images 20  # a sample of them
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from clareps.data.spec import load_data
from clareps.evaluate.robustness import ATTACKS, evaluate_robustness
from clareps.evaluate.suite import evaluation_data, load_eval_config, load_student, resolve_student, select
from clareps.device import hardware
from clareps.paths import preset



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", required=True)
    ap.add_argument("--mode", default="full", help="section of the evaluate preset whose attacks are measured")
    ap.add_argument("--images", type=int, default=None, help="attack images (default: the mode's n_images)")
    ap.add_argument("--slow-images", type=int, default=None, help="AutoAttack images (default: the mode's)")
    ap.add_argument("--set", action="append", default=[], help="override of the mode, key=value")
    ap.add_argument("--only", choices=["independent", "cascade"], default=None, help="run one schedule only")
    args = ap.parse_args()
    overrides = list(args.set)
    if args.images:
        overrides.append(f"robustness.n_images={args.images}")
    if args.slow_images:
        overrides.append(f"robustness.slow_n_images={args.slow_images}")
    cfg = load_eval_config(preset("evaluate-default"), args.mode, overrides)
    path = resolve_student(args.student)
    model, _ = load_student(path)
    spec, _ = evaluation_data(path, cfg)
    main_set = load_data(spec, cfg.split)
    rc = cfg.robustness
    idx, images = select(main_set, rc.n_images, cfg.seed, cfg.split)
    data = main_set.subset(idx)
    slow_idx, slow_images = select(main_set, rc.slow_n_images, cfg.seed, cfg.split)
    slow = torch.from_numpy(np.isin(idx, slow_idx))
    load_before = os.getloadavg()
    runs, points = {}, {}
    for schedule in [args.only] if args.only else ["independent", "cascade"]:
        points[schedule] = {}
        t0, c0 = time.perf_counter(), time.process_time()
        out = evaluate_robustness(model, data.images, data.labels, data.num_classes,
                                  rc.model_copy(update={"schedule": schedule}), cfg.seed, slow,
                                  points=points[schedule])
        runs[schedule] = {"seconds": round(time.perf_counter() - t0, 1),
                          "cpu_seconds": round(time.process_time() - c0, 1),
                          "attack_seconds": {k: a["seconds"] for k, a in out["attacks"].items()},
                          "attack_cpu_seconds": {k: a["cpu_seconds"] for k, a in out["attacks"].items()},
                          "attacked": {k: a["attacked"] for k, a in out["attacks"].items() if "attacked" in a},
                          "worst_case": out["worst_case"]["accuracy"],
                          "worst_case_fast": out.get("worst_case_fast", {}).get("accuracy"),
                          "carry_failed": out.get("carry_failed")}
    result = {"bench": "evaluate_cost", "student": str(path), "mode": args.mode, "overrides": overrides,
              "budgets_255": rc.budgets_255, "attacks": rc.attacks, "images": images["n"],
              "slow_images": slow_images["n"], "clean_accuracy": out["clean_accuracy"], **runs,
              "hardware": hardware(torch.device("cpu"), "fp32"), "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}
    if len(runs) == 2:
        old, new = points["independent"], points["cascade"]
        common = old["common"]
        result["ratio_old_over_new"] = round(runs["independent"]["seconds"] / runs["cascade"]["seconds"], 2)
        result["cpu_ratio_old_over_new"] = round(runs["independent"]["cpu_seconds"] / runs["cascade"]["cpu_seconds"], 2)
        result["weaker_points"] = int((new["worst"] & ~old["worst"])[:, common].sum())
        result["stronger_points"] = int((~new["worst"] & old["worst"])[:, common].sum())
        old_fast = [v for k, v in old.items() if k.startswith("after/") and k != "after/autoattack"]
        if old_fast and "after/autoattack" in new:
            fast_old = torch.stack(old_fast).all(0)
            fast_new = new[f"after/{[a for a in ATTACKS if a in rc.attacks and a != 'autoattack'][-1]}"]
            result["weaker_points_fast"] = int((fast_new & ~fast_old).sum())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
