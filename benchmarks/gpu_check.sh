#!/usr/bin/env bash
# One short check of the GPU path: the card's name, then seconds per teacher training step (the
# default teacher and the CIFAR-10 preset's 36 M U-Net), per engine step (CLARID's Jacobian
# subspace iteration) and per PGD attack on a student. Prints one JSON object and writes it to
# OUT (default runs/gpu_check.json). About 1-2 minutes on one H100, most of it start-up.
#   bash benchmarks/gpu_check.sh [--cpu] [OUT]
#   --cpu: a smoke test on CPU with tiny sizes (checks that the script runs, not speed).
set -euo pipefail
DEVICE=cuda
if [[ "${1:-}" == "--cpu" ]]; then DEVICE=cpu; shift; fi
OUT=${1:-runs/gpu_check.json}
PY=${PYTHON:-python3}
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)/src${PYTHONPATH:+:$PYTHONPATH}"  # works uninstalled too
if [[ "$DEVICE" == cuda ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
mkdir -p "$(dirname "$OUT")"
DEVICE=$DEVICE OUT=$OUT "$PY" - <<'EOF'
import json, os, time

import torch
import torch.nn.functional as F

from clareps.clarid.engine import top_subspace
from clareps.config import load_config
from clareps.device import autocast, hardware, resolve_precision
from clareps.diffusion.train import TeacherConfig
from clareps.diffusion.unet import UNet, UNetConfig
from clareps.distill.students import make_student
from clareps.paths import preset

device = torch.device(os.environ["DEVICE"])
if device.type == "cuda" and not torch.cuda.is_available():
    raise SystemExit("no CUDA device here; use --cpu for a smoke test")
smoke = device.type == "cpu"
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, warmup: int, repeats: int) -> float:
    """Median seconds of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def teacher_step(model_cfg: UNetConfig, batch: int, precision: str) -> float:
    """One training step as TeacherTrainer takes it: noised batch, eps loss, clip, AdamW."""
    model = UNet(model_cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size, c = model_cfg.image_size, model_cfg.in_channels
    x = torch.randn(batch, c, size, size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    y = torch.randint(0, model_cfg.num_classes + 1, (batch,), device=device)

    def step():
        with autocast(device, precision):
            loss = F.mse_loss(model(x, t, y).float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return timed(step, 2 if smoke else 5, 2 if smoke else 20)


result = {"hardware": hardware(device, "auto"), "smoke_test": smoke}
default = load_config(TeacherConfig, preset("teacher-default"))
cifar = load_config(TeacherConfig, preset("cifar10-teacher"))
if smoke:  # the same code on tiny shapes
    tiny = dict(base_channels=8, channel_mult=[1, 2], groups=4, image_size=8, attn_resolutions=[4])
    default.model, cifar.model = UNetConfig(**tiny), UNetConfig(**dict(tiny, num_res_blocks=2))
    default.batch_size = cifar.batch_size = 8
for name, cfg in (("teacher_default", default), ("teacher_cifar10", cifar)):
    sec = teacher_step(cfg.model, cfg.batch_size, resolve_precision(cfg.precision, device))
    result[f"{name}_sec_per_step"] = sec
    result[f"{name}_hours_for_preset_steps"] = sec * cfg.steps / 3600
    result[f"{name}_batch"] = cfg.batch_size

# The engine: k JVPs + k VJPs per step and latent, fp32, at the default tap.
torch.manual_seed(0)
model_cfg = default.model
teacher = UNet(model_cfg).to(device).eval()
batch, k, iters = (2, 4, 2) if smoke else (16, 16, 10)
x = torch.randn(batch, model_cfg.in_channels, model_cfg.image_size, model_cfg.image_size, device=device)
y = torch.arange(batch, device=device) % model_cfg.num_classes
sec = timed(lambda: top_subspace(teacher, x, 500, y, k, tol=1e-12, max_iter=iters), 1, 1 if smoke else 3)
result.update(engine_batch=batch, engine_k=k, engine_steps=iters,
              engine_sec_per_step_per_latent=sec / (iters * batch))

# PGD (L-inf, 10 steps, eps 8/255) on a ResNet-18 student, written inline.
student = make_student("resnet18", 10, width=8 if smoke else 64).to(device).eval()
n = 8 if smoke else 256
size = 8 if smoke else 32
images = torch.rand(n, 3, size, size, device=device)
labels = torch.randint(0, 10, (n,), device=device)
eps, alpha, steps = 8 / 255, 2 / 255, 10


def pgd():
    delta = (torch.rand_like(images) * 2 - 1) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(student((images + delta).clamp(0, 1)), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
    return (images + delta).clamp(0, 1)


sec = timed(pgd, 1, 1 if smoke else 5)
result.update(pgd_images=n, pgd_steps=steps, pgd_sec_per_image=sec / n)
text = json.dumps(result, indent=1, sort_keys=True)
print(text)
with open(os.environ["OUT"], "w") as fh:
    fh.write(text + "\n")
EOF
