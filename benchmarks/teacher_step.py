"""Time one teacher training step: our U-Net vs diffusers' UNet2DModel of about the same size.

Same batch, resolution, precision, optimiser and process; the two are timed in
alternation so machine noise hits both. Prints one JSON line.

    python benchmarks/teacher_step.py [--batch 128] [--precision bf16] [--repeats 5] [--compile]

--compile puts both forwards through torch.compile (inductor) and adds `ours_eager_s`, ours
without it, timed in the same alternation. On this workplace's 2-core CPU it bought nothing
(ours 1.016 s compiled vs 1.038 s eager, 2 threads, 2026-11-28), so training does not compile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from clareps.device import autocast, hardware, resolve_precision
from clareps.diffusion.unet import UNet, UNetConfig


def diffusers_unet(cfg: UNetConfig):
    from diffusers import UNet2DModel

    chans = tuple(cfg.base_channels * m for m in cfg.channel_mult)
    res = [cfg.image_size // 2 ** i for i in range(len(chans))]
    down = tuple("AttnDownBlock2D" if r in cfg.attn_resolutions else "DownBlock2D" for r in res)
    up = tuple("AttnUpBlock2D" if r in cfg.attn_resolutions else "UpBlock2D" for r in reversed(res))
    return UNet2DModel(sample_size=cfg.image_size, in_channels=3, out_channels=3, block_out_channels=chans,
                       layers_per_block=cfg.num_res_blocks, down_block_types=down, up_block_types=up,
                       norm_num_groups=cfg.groups, num_class_embeds=cfg.num_classes + 1,
                       attention_head_dim=chans[-1])


def make_step(forward, params, batch: int, size: int, precision: str, device):
    opt = torch.optim.AdamW(params, lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    y = torch.randint(0, 11, (batch,), device=device)

    def step():
        with autocast(device, precision):
            loss = F.mse_loss(forward(x, t, y).float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile both forwards")
    args = ap.parse_args()
    device = torch.device(args.device)
    args.precision = resolve_precision(args.precision, device)
    cfg = UNetConfig()
    torch.manual_seed(0)
    ours = UNet(cfg).to(device).train()
    theirs = diffusers_unet(cfg).to(device).train()
    wrap = torch.compile if args.compile else (lambda m: m)
    ours_fwd, theirs_fwd = wrap(ours), wrap(theirs)
    steps = {
        "ours": make_step(ours_fwd, ours.parameters(), args.batch, cfg.image_size, args.precision, device),
        "diffusers": make_step(lambda x, t, y: theirs_fwd(x, t, class_labels=y).sample, theirs.parameters(),
                               args.batch, cfg.image_size, args.precision, device),
    }
    if args.compile:
        steps["ours_eager"] = make_step(ours, ours.parameters(), args.batch, cfg.image_size, args.precision, device)
    for step in steps.values():  # warm-up
        step(); step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    ours_s, theirs_s = statistics.median(times["ours"]), statistics.median(times["diffusers"])
    print(json.dumps({
        "ours_s": round(ours_s, 4), "diffusers_s": round(theirs_s, 4), "ratio": round(theirs_s / ours_s, 3),
        "ours_params": sum(p.numel() for p in ours.parameters()),
        "diffusers_params": sum(p.numel() for p in theirs.parameters()), "compile": args.compile,
        **({"ours_eager_s": round(statistics.median(times["ours_eager"]), 4)} if args.compile else {}),
        "batch": args.batch, "repeats": args.repeats, "statistic": "median",
        "hardware": hardware(device, args.precision)}))


if __name__ == "__main__":
    main()
