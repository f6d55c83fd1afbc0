"""Does the precision change what a student learns? The same `ce` student (the distill preset: small
CNN width 32, same seed, so the same initialisation and data order) trained in fp32 and in bf16,
then clean accuracy on every test variant (1,000 images each), paired by seed: bf16 - fp32 with
its 95 % t-interval, beside the seed-to-seed spread of fp32 itself. One JSON line.

    python benchmarks/student_precision.py [--seeds 0 1 2] [--epochs 10] [--out runs/precision-students]

Meant for a machine that runs bf16 natively (AVX-512 BF16 / AMX, or CUDA): where bf16 is emulated
each bf16 student takes hours. Runs resume (each student's folder is reused when finished).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import clareps
from clareps.device import hardware, resolve_device
from clareps.evaluate.paired import paired_difference

VARIANTS = ["test-original", "test-only-fg", "test-only-bg", "test-mixed-same", "test-mixed-rand"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--out", default="runs/precision-students")
    args = ap.parse_args()
    cells: dict[str, dict[str, dict]] = {p: {v: {"seeds": [], "values": []} for v in VARIANTS}
                                         for p in ("fp32", "bf16")}
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in args.seeds:
        for precision in ("fp32", "bf16"):
            out = Path(args.out) / f"ce-{precision}-s{seed}"
            t0 = time.perf_counter()
            run = clareps.distill_student("ce", out, seed=seed, precision=precision, epochs=args.epochs,
                                          **{"student.width": args.width})
            seconds[precision].append(time.perf_counter() - t0)
            scores = clareps.evaluate_student(run, mode="full", components=["clean"])
            for v in VARIANTS:
                cells[precision][v]["seeds"].append(seed)
                cells[precision][v]["values"].append(scores["summary"][f"clean/{v}"])
    result = {"benchmark": "student_precision", "seeds": args.seeds, "epochs": args.epochs, "width": args.width,
              "hardware": hardware(resolve_device("auto"), "bf16"),
              "train_seconds": {p: [round(s, 1) for s in v] for p, v in seconds.items()},
              "accuracy": {p: {v: c["values"] for v, c in cells[p].items()} for p in cells}}
    paired = {}
    for v in VARIANTS:
        d = paired_difference(cells["bf16"][v], cells["fp32"][v])
        spread = statistics.stdev(cells["fp32"][v]["values"]) if len(args.seeds) > 1 else None
        paired[v] = {"bf16_minus_fp32": round(d["mean"], 4),
                     "interval": [round(d["low"], 4), round(d["high"], 4)] if d["low"] is not None else None,
                     "verdict": d["verdict"], "fp32_seed_std": round(spread, 4) if spread is not None else None}
    result["paired"] = paired
    print(json.dumps(result))


if __name__ == "__main__":
    main()
