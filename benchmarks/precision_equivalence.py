"""Does the precision change what a bank means? The same bank config (the preset, the shipped
teacher, the same seed, so the same noise per item) built with sampler_precision fp32 and bf16:
class consistency of each (shape judge), the paired agreement of the judge's verdicts, and the
pixel RMSE between the paired samples beside the RMSE the projection itself causes (canonical vs
the k = 0 control, fp32). One JSON line.

    python benchmarks/precision_equivalence.py [--per-class 5] [--out runs/precision-eq]

On a CPU without native bf16 the bf16 bank is emulated (~20-70x slower): keep --per-class small.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from clareps.bank.build import BankBuilder, BankConfig, build_bank
from clareps.bank.format import Bank
from clareps.config import load_config
from clareps.device import hardware
from clareps.classifiers.training import predict
from clareps.classifiers.shape_judge import load_judge
from clareps.paths import default_judge, preset


def finished_part(cfg: BankConfig, folder: Path) -> Bank:
    """The items of a partly built bank's finished shards (images, features, labels; meta['items'])."""
    builder = BankBuilder(cfg, folder, quiet=True)
    done = builder.finished_shards()
    if not done:
        raise SystemExit(f"no finished shard in {folder}")
    parts = [tensors for _, tensors in done]
    cat = {k: torch.cat([p[k] for p in parts]) for k in ("images", "features", "labels", "source_index")}
    n = len(cat["labels"])
    return Bank(**cat, latents=cat["images"], singular_values=cat["images"].new_zeros(n, 0), seconds=torch.zeros(n),
                meta={"items": [j for r, _ in done for j in r]})


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/precision-eq")
    ap.add_argument("--finished-shards", action="store_true",
                    help="compare only the bf16 bank's finished shards (a build stopped early), paired by item")
    args = ap.parse_args()
    judge, _ = load_judge(default_judge())
    overrides = [f"per_class={args.per_class}", f"seed={args.seed}", "device=cpu"]
    banks, seconds = {}, {}
    for name, extra in (("fp32", ["clarid.sampler_precision=fp32"]), ("bf16", ["clarid.sampler_precision=bf16"]),
                        ("control_fp32", ["clarid.sampler_precision=fp32", "kind=control"])):
        cfg = load_config(BankConfig, preset("bank-default"), overrides + extra)
        t0 = time.perf_counter()
        if name == "bf16" and args.finished_shards:
            banks[name] = finished_part(cfg, Path(args.out) / name)
        else:
            banks[name], _ = build_bank(cfg, Path(args.out) / name, quiet=True)
        seconds[name] = round(time.perf_counter() - t0, 1)
    items = banks["bf16"].source_index.new_tensor(banks["bf16"].meta["items"]) if args.finished_shards else None
    if items is not None:
        banks = {k: dataclasses.replace(b, **{f: getattr(b, f)[items] for f in ("images", "features", "labels")})
                 for k, b in banks.items()}
    labels = banks["fp32"].labels
    right = {name: predict(judge, b.images) == labels for name, b in banks.items()}
    n = len(labels)
    consistency = {name: float(r.float().mean()) for name, r in right.items()}
    # paired: items the judge scores differently in the two precisions, and the interval of the difference
    only_fp32 = int((right["fp32"] & ~right["bf16"]).sum())
    only_bf16 = int((right["bf16"] & ~right["fp32"]).sum())
    diff = (right["bf16"].float() - right["fp32"].float())
    half = 1.96 * float(diff.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    print(json.dumps({
        "items": n, "per_class": args.per_class, "seed": args.seed,
        "class_consistency": {k: round(v, 4) for k, v in consistency.items()},
        "paired": {"judge_agrees": round(float((right["fp32"] == right["bf16"]).float().mean()), 4),
                   "right_only_in_fp32": only_fp32, "right_only_in_bf16": only_bf16,
                   "bf16_minus_fp32": round(float(diff.mean()), 4),
                   "ci95": [round(float(diff.mean()) - half, 4), round(float(diff.mean()) + half, 4)]},
        "pixel_rmse": {"fp32_vs_bf16": round(rmse(banks["fp32"].images, banks["bf16"].images), 4),
                       "canonical_vs_control_fp32": round(rmse(banks["fp32"].images,
                                                               banks["control_fp32"].images), 4)},
        "feature_rel_diff_fp32_vs_bf16": round(float((banks["fp32"].features - banks["bf16"].features).norm()
                                                     / banks["fp32"].features.norm()), 4),
        "build_seconds": seconds, "hardware": hardware(torch.device("cpu"), "bf16"),
    }))


if __name__ == "__main__":
    main()
