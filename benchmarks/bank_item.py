"""Where a canonical bank item's time goes, and what the engine's tolerance buys.

On the shipped teacher (or --teacher), for one batch of `random`-source latents (the bank
preset's t_e, k, w, steps): the time to sample noise down to t_e, the engine's time and
iterations at each tolerance in --tols, and decoding. Against the tightest tolerance it reports
the captured energy ratio and the RMSE between the decoded canonical samples (pixels in [0, 1]),
beside the RMSE between canonical and control (k = 0) samples, which is the change the
projection makes. Prints one JSON line.

    python benchmarks/bank_item.py [--batch 10] [--tols 1e-3,1e-2,3e-2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from clareps.bank.build import BankConfig
from clareps.clarid.canonical import random_latents, timestep
from clareps.clarid.directions import project
from clareps.clarid.engine import top_subspace
from clareps.config import load_config
from clareps.device import autocast, hardware
from clareps.adapters.loading import load_teacher_any as load_teacher
from clareps.diffusion.sampler import decode
from clareps.paths import default_teacher, preset


def rmse01(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt() / 2)  # decoded samples live in [-1, 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=str(default_teacher()))
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--tols", default="1e-3,1e-2,3e-2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = load_config(BankConfig, preset("bank-default")).clarid
    model, meta = load_teacher(args.teacher)
    y = torch.arange(args.batch) % model.cfg.num_classes
    shape = (args.batch, model.cfg.in_channels, model.cfg.image_size, model.cfg.image_size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed))
    t = timestep(model, cfg)

    t0 = time.perf_counter()
    x = random_latents(model, y, cfg, noise)
    out = {"teacher_step": meta.get("step"), "batch": args.batch,
           "hardware": hardware(torch.device("cpu"), cfg.sampler_precision),
           "k": cfg.k, "t_e": cfg.t_e, "w": cfg.w, "steps": cfg.steps,
           "sample_to_te_s": round(time.perf_counter() - t0, 3), "engine": {}}
    images = {}
    for tol in (float(v) for v in args.tols.split(",")):
        t0 = time.perf_counter()
        sub = top_subspace(model, x, t, y, cfg.k, cfg.tap, tol, cfg.max_iter)
        t1 = time.perf_counter()
        with torch.no_grad(), autocast(torch.device("cpu"), cfg.sampler_precision):  # as the bank decodes
            images[tol] = (decode(model, project(x, sub.vectors), y, t, cfg.steps, cfg.w), sub.energy)
        out["engine"][f"{tol:g}"] = {"engine_s": round(t1 - t0, 3), "decode_s": round(time.perf_counter() - t1, 3),
                                     "iterations": sub.iterations.tolist()}
    ref_tol = min(images)
    ref_img, ref_energy = images[ref_tol]
    for tol, (img, energy) in images.items():
        out["engine"][f"{tol:g}"].update(energy_vs_tightest=round(float((energy / ref_energy).mean()), 5),
                                         rmse_vs_tightest=round(rmse01(img, ref_img), 5))
    with torch.no_grad(), autocast(torch.device("cpu"), cfg.sampler_precision):
        control = decode(model, x, y, t, cfg.steps, cfg.w)
    out["rmse_canonical_vs_control"] = round(rmse01(ref_img, control), 5)
    for tol, e in out["engine"].items():
        e["seconds_per_item"] = round((out["sample_to_te_s"] + e["engine_s"] + e["decode_s"]) / args.batch, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
