"""Wall time of one training epoch of ``cadistill`` vs ``ce``, same student, data and process.

The two trainers take their steps in alternation so machine noise hits both; the ratio
(goal <= 1.3) is the figure that counts. Without --bank a synthetic canonical bank is made
(10 % of the training images by default, feature size of the default teacher's bottleneck);
with --synthetic-data random images stand in for the data set. Prints one JSON line.

    python benchmarks/distill_step.py                        # default benchmark, synthetic bank
    python benchmarks/distill_step.py --bank runs/bank/canonical
    python benchmarks/distill_step.py --synthetic-data --images 256 --size 16 --set student.width=8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from clareps.bank.format import Bank, save_bank
from clareps.config import load_config
from clareps.data.spec import data_fingerprint, load_data
from clareps.distill.config import DistillConfig
from clareps.distill.trainer import DistillTrainer
from clareps.device import hardware
from clareps.paths import preset


def synthetic_data(folder: Path, n: int, size: int, classes: int) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "data.npz"
    np.savez(path, images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), labels=np.arange(n) % classes)
    return path


def synthetic_bank(folder: Path, cfg: DistillConfig, fraction: float, dim: int) -> Path:
    data = load_data(cfg.data)
    n = max(cfg.bank_batch_size, int(round(fraction * len(data))))
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % data.num_classes
    meta = dict(data_fingerprint=data_fingerprint(cfg.data), teacher_sha256="synthetic", feature_dim=dim,
                tap="mid", k=8, t_e=500, w=2.0, source="random", class_names=list(data.class_names),
                bank_kind="canonical")
    save_bank(folder, Bank(images=torch.rand(n, *data.images.shape[1:], generator=g),
                           features=torch.randn(n, dim, generator=g), labels=labels,
                           source_index=torch.full((n,), -1), latents=torch.zeros(n, 1, 1, 1),
                           singular_values=torch.zeros(n, 8), seconds=torch.zeros(n), meta=meta))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(preset("distill-default")))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="key=value")
    ap.add_argument("--bank", default=None, help="a canonical bank folder (default: a synthetic one)")
    ap.add_argument("--bank-fraction", type=float, default=0.1, help="synthetic bank size / training images")
    ap.add_argument("--feature-dim", type=int, default=4096, help="synthetic bank feature size")
    ap.add_argument("--synthetic-data", action="store_true", help="random images instead of the config's data")
    ap.add_argument("--images", type=int, default=512, help="with --synthetic-data: number of images")
    ap.add_argument("--size", type=int, default=32, help="with --synthetic-data: image side")
    ap.add_argument("--classes", type=int, default=10, help="with --synthetic-data: number of classes")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        overrides = list(args.overrides)
        if args.synthetic_data:
            path = synthetic_data(tmp, args.images, args.size, args.classes)
            overrides += ["data.kind=npz", f"data.path={path}", "test_splits=[]"]
        cfg = load_config(DistillConfig, args.config, overrides + ["method=cadistill", "stop_at=null"])
        bank = args.bank or str(synthetic_bank(tmp / "bank", cfg, args.bank_fraction, args.feature_dim))
        cfg.bank = bank
        cad = DistillTrainer(cfg, tmp / "cadistill", quiet=True)
        ce = DistillTrainer(cfg.model_copy(update={"method": "ce", "bank": None}), tmp / "ce", quiet=True)
        trainers = {"ce": ce, "cadistill": cad}
        for t in trainers.values():  # warm-up: allocator, autocast caches
            t.train_step()
        seconds = {name: 0.0 for name in trainers}
        for _ in range(cad.steps_per_epoch):
            for name, t in trainers.items():
                t0 = time.perf_counter()
                t.train_step()
                if t.device.type == "cuda":
                    torch.cuda.synchronize()
                seconds[name] += time.perf_counter() - t0
        print(json.dumps({
            "cadistill_epoch_s": round(seconds["cadistill"], 3), "ce_epoch_s": round(seconds["ce"], 3),
            "ratio": round(seconds["cadistill"] / seconds["ce"], 3), "goal": 1.3,
            "data": f"synthetic {args.images}x3x{args.size}x{args.size}" if args.synthetic_data
            else f"{cfg.data.kind}:{cfg.data.split}",
            "bank": args.bank or f"synthetic ({len(cad.bank)} items, {args.feature_dim}-dim features)",
            "train_images": len(cad.train_set), "bank_items": len(cad.bank), "steps_per_epoch": cad.steps_per_epoch,
            "batch_size": cfg.batch_size, "bank_batch_size": cfg.bank_batch_size,
            "student": cfg.student.name, "width": cfg.student.width,
            "hardware": hardware(cad.device, cfg.precision)}))


if __name__ == "__main__":
    main()
