"""torchrun support: the process group from the environment, and the few collectives the trainers use.

Without ``WORLD_SIZE > 1`` in the environment (a plain ``clareps`` command) every helper here is
a no-op and the trainers run their single-process path unchanged. Under ``torchrun`` the group
uses NCCL when the device is CUDA (one GPU per process, ``cuda:LOCAL_RANK``) and gloo on CPU.

Conventions the trainers keep: a configured batch size is the *global* batch; every rank draws
the global batch's randomness from the same generator and keeps its contiguous slice
(``Context.shard``), so one process and N processes see the same samples; only rank 0 writes.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from clareps.device import resolve_device
from clareps.errors import ClarepsError

# Ranks can wait long at a barrier (a bank's ranks finish their shards at different times).
TIMEOUT_ENV = "CLAREPS_DIST_TIMEOUT_MIN"


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int, what: str = "batch") -> slice:
        """This rank's contiguous slice of ``n`` items; ``n`` must split evenly."""
        if n % self.world:
            raise ClarepsError(f"{what} of {n} does not split evenly over {self.world} processes; "
                               f"use a multiple of {self.world}")
        size = n // self.world
        return slice(self.rank * size, (self.rank + 1) * size)


def context() -> Context:
    """Rank and world size of the running process group, else of the torchrun environment."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), local)
    return Context(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), local)


def setup(device_name: str = "auto") -> tuple[Context, torch.device]:
    """Join the process group when launched by torchrun; this rank's device."""
    ctx, device = context(), resolve_device(device_name)
    if ctx.world == 1:
        return ctx, device
    if device.type == "cuda" and device.index is None:
        if ctx.local_rank >= torch.cuda.device_count():
            raise ClarepsError(f"local rank {ctx.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                               "start at most one process per GPU")
        device = torch.device("cuda", ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_available():
        raise ClarepsError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        minutes = float(os.environ.get(TIMEOUT_ENV, 120))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=minutes))
        atexit.register(_destroy)
    return context(), device


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if context().world > 1:
        dist.barrier()


def mean(value: torch.Tensor) -> torch.Tensor:
    """The average of ``value`` over ranks (for logging)."""
    if context().world == 1:
        return value
    value = value.detach().clone().float()
    dist.all_reduce(value)
    return value / context().world


def average_gradients(params: list[nn.Parameter]) -> None:
    """Replace each gradient by its mean over ranks, in one collective (what DDP does, after backward)."""
    world = context().world
    grads = [p.grad for p in params if p.grad is not None]
    if world == 1 or not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


class _AllGather(torch.autograd.Function):
    """Stack of every rank's ``x``; the backward sums the ranks' gradients (one loss over all ranks)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order, differentiable."""
    if context().world == 1:
        return x
    return _AllGather.apply(x).flatten(0, 1)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on CPU and CUDA.

    ``nn.SyncBatchNorm`` is CUDA-only; this one needs a single all-gather per layer. With the
    per-rank statistics of plain BatchNorm under DDP, N processes would train another model
    than one process on the same global batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or context().world == 1:
            return super().forward(x)
        xf = x.float()
        n_local = x.numel() // x.shape[1]
        mean_local = xf.mean((0, 2, 3))
        m2_local = (xf - mean_local[None, :, None, None]).pow(2).sum((0, 2, 3))
        stats = gather(torch.stack([mean_local, m2_local])[None])  # (world, 2, C); equal n per rank
        means, m2s = stats[:, 0], stats[:, 1]
        mean = means.mean(0)
        n = n_local * stats.shape[0]
        m2 = m2s.sum(0) + n_local * (means - mean).pow(2).sum(0)
        var = m2 / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                unbiased = (m2 / max(n - 1, 1)).detach().to(self.running_var.dtype)
                self.running_var.lerp_(unbiased, factor)
        out = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out.to(x.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm2d replaced by a GlobalBatchNorm2d holding the same state."""
    if type(module) is nn.BatchNorm2d:
        state = module.state_dict()
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        new.load_state_dict(state)
        new.to(next(iter(state.values())).device if state else "cpu")
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child))
    return module


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` under DistributedDataParallel when several processes run, else itself."""
    if context().world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

