"""A `ce` student's clean accuracy and wall time: the fast recipe beside the study recipe, in one run.

Trains ``--method`` (default ce) on the default benchmark for each seed with the fast recipe
(configs/distill-fast.yaml) and with the study recipe (configs/distill-default.yaml), the two
recipes taking turns seed by seed so machine noise hits both, and prints one JSON line: the
hardware record, each recipe's accuracy on test-original (mean and sample std over seeds) and its
seconds per student (median, min, max: the trainer built and run to the end, data from the cache,
the per-epoch validation and the final test scoring included), and the median speed-up. Goal of the
fast recipe: >= 90 % mean in <= 30 s median on a 2-core CPU without native bf16, fp32 (emulate one
with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2).

    python benchmarks/student_speed.py                                  # seeds 0-4, both recipes, fp32
    python benchmarks/student_speed.py --reference-seeds 0              # the study recipe once (~2.5 min)
    python benchmarks/student_speed.py --seeds 0 --reference-seeds "" --set epochs=4
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from clareps.config import load_config
from clareps.device import hardware
from clareps.distill.config import DistillConfig
from clareps.distill.trainer import DistillTrainer
from clareps.paths import preset

FAST, STUDY = "distill-fast", "distill-default"


def seeds(text: str) -> list[int]:
    return [int(s) for s in text.replace(" ", "").split(",") if s]


def one_student(recipe: str, seed: int, args, folder: Path) -> dict:
    overrides = [f"method={args.method}", f"seed={seed}", f"precision={args.precision}",
                 "test_splits=[test-original]", *(args.set if recipe == FAST else [])]
    cfg = load_config(DistillConfig, preset(recipe), overrides)
    start = time.perf_counter()
    trainer = DistillTrainer(cfg, folder / f"{recipe}-s{seed}", quiet=True)
    result = trainer.train()
    seconds = time.perf_counter() - start
    return {"seed": seed, "seconds": round(seconds, 2), "accuracy": result["test_acc/test-original"],
            "val_acc": result["val_acc"], "precision": trainer.precision}


def summary(rows: list[dict], recipe: str) -> dict | None:
    if not rows:
        return None
    acc, secs = [r["accuracy"] for r in rows], [r["seconds"] for r in rows]
    return {"recipe": recipe, "students": len(rows),
            "accuracy_mean": round(statistics.mean(acc), 4),
            "accuracy_std": round(statistics.stdev(acc), 4) if len(acc) > 1 else None,
            "seconds_median": round(statistics.median(secs), 2), "seconds_min": min(secs), "seconds_max": max(secs),
            "per_seed": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="ce", choices=["ce"], help="a method that needs no bank")
    p.add_argument("--seeds", default="0,1,2,3,4", help="seeds of the fast recipe")
    p.add_argument("--reference-seeds", default="0,1,2,3,4", help="seeds of the study recipe ('' for none)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    p.add_argument("--set", action="append", default=[], help="an override of the fast recipe (KEY=VALUE)")
    args = p.parse_args()
    fast_seeds, ref_seeds = seeds(args.seeds), seeds(args.reference_seeds)
    fast, ref = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(max(len(fast_seeds), len(ref_seeds))):
            if i < len(fast_seeds):
                fast.append(one_student(FAST, fast_seeds[i], args, Path(tmp)))
            if i < len(ref_seeds):
                ref.append(one_student(STUDY, ref_seeds[i], args, Path(tmp)))
    out = {"benchmark": "student_speed", "method": args.method, "fast": summary(fast, FAST),
           "study": summary(ref, STUDY), "fast_overrides": args.set,
           "hardware": hardware(precision=args.precision)}
    if fast and ref:
        out["speedup_median"] = round(out["study"]["seconds_median"] / out["fast"]["seconds_median"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
