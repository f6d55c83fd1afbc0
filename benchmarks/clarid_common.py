"""What the CLARID engine benchmarks share (``clarid_engine.py``, ``clarid_oracle.py``): a clock that leaves
out the time of checks, the feature map at a tap and its full Jacobian, our U-Net's GroupNorm decomposed
into plain ops, and the latents they run on (DDIM-inverted test images when the benchmark data is there,
else Gaussian latents)."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import jacrev

from clareps.errors import ClarepsError
from clareps.taps import run_to_tap


class Clock:
    """Elapsed time minus the time spent in checks (``paused``).

    Wall time (CUDA synchronised), except for a single-threaded CPU run, which reads the
    process's CPU time: on a shared machine that is the work done, not the waiting.
    """

    def __init__(self, device: torch.device):
        self.device, self.excluded, self.start = device, 0.0, 0.0
        self.cpu_time = device.type == "cpu" and torch.get_num_threads() == 1
        self.kind = "process CPU time" if self.cpu_time else "wall"

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.process_time() if self.cpu_time else time.perf_counter()

    def reset(self) -> None:
        self.excluded, self.start = 0.0, self.now()

    def elapsed(self) -> float:
        return self.now() - self.start - self.excluded

    def paused(self, fn):
        t0 = self.now()
        out = fn()
        self.excluded += self.now() - t0
        return out


def energy(jac: torch.Tensor, rows: torch.Tensor) -> float:
    return float((jac @ rows.reshape(rows.shape[0], -1).T).pow(2).sum())


def features(model, tap, t, y):
    return lambda x: run_to_tap(model, tap, x, t.expand(x.shape[0]), y.expand(x.shape[0])).flatten(1)


def full_jacobian(model, tap, x1, t, y1, chunk: int) -> torch.Tensor:
    f = features(model, tap, t, y1)
    return jacrev(lambda xi: f(xi[None])[0], chunk_size=chunk)(x1[0]).reshape(-1, x1[0].numel())


def latents(model, args, device):
    """DDIM-inverted images when data is there, else Gaussian latents with the x_t std."""
    from clareps.diffusion.sampler import invert

    n, cfg, sched = args.n_latents, model.cfg, model.schedule
    t_e = sched.index(args.te)
    gen = torch.Generator().manual_seed(args.seed)
    try:
        images = None if args.latents == "gaussian" else _images(args.images, n)
    except (ClarepsError, ImportError, OSError) as exc:
        print(f"no images to invert ({exc}); using Gaussian latents", file=sys.stderr)
        images = None
    if images is not None and tuple(images[0].shape[1:]) == (cfg.in_channels, cfg.image_size, cfg.image_size):
        x0, y = images[0].to(device) * 2 - 1, images[1].to(device)
        steps = getattr(args, "invert_steps", 50)
        return invert(model, x0, y, t_e, steps=steps), y, f"ddim-inverted images ({images[2]})"
    ab = float(sched.alpha_bar[t_e])
    std = math.sqrt(ab * args.data_std**2 + 1 - ab)
    x = std * torch.randn(n, cfg.in_channels, cfg.image_size, cfg.image_size, generator=gen)
    y = torch.arange(n) % cfg.num_classes
    return x.to(device), y.to(device), f"gaussian, std {std:.3f}"


def _images(spec: str, n: int):
    from clareps.data.benchmark import BenchmarkConfig, default_cache_dir, fingerprint, load_split
    from clareps.data.loaders import load_npz

    if spec.endswith(".npz"):
        data, name = load_npz(spec), spec
    else:
        folder = Path(spec) if spec != "default" else default_cache_dir() / f"animals-{fingerprint(BenchmarkConfig())}"
        if not (folder / "meta.json").exists():
            return None
        data, name = load_split(folder, "test-original"), f"{folder.name}/test-original"
    return data.images[:n], data.labels[:n], name


def _decomposed(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    shape = x.shape
    h = x.reshape(shape[0], norm.num_groups, -1)
    mean = h.mean(-1, keepdim=True)
    var = (h - mean).pow(2).mean(-1, keepdim=True)
    h = ((h - mean) * torch.rsqrt(var + norm.eps)).reshape(shape)
    return h * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


@contextlib.contextmanager
def decomposed_group_norm(model: nn.Module):
    """Every GroupNorm of ``model`` as explicit mean/var ops (the same function) while inside."""
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    for m in norms:
        m.forward = lambda x, m=m: _decomposed(m, x)
    try:
        yield
    finally:
        for m in norms:
            del m.forward
