"""Backend workarounds that make a model differentiable in forward mode (JVPs under vmap).

While the engine runs, ``jacobian_mode`` puts the model in eval mode and arranges:
PyTorch's math attention backend (``sdpa_kernel(SDPBackend.MATH)``; the fused kernels lack
forward-mode rules on CPU), contiguous inputs for ``F.group_norm`` (its fused forward-mode rule
fails under vmap on non-contiguous tangents) and, for diffusers models, ``AttnProcessor()`` on
every attention module (the previous processors are restored afterwards); and IEEE fp32 on CUDA
(``full_fp32``: TF32 off). A decomposed GroupNorm is deliberately not used: with torch 2.13 the
fused kernel is as fast in forward mode and faster in reverse mode (benchmarks/clarid_engine.py
measures both, ``norm_step_ratio``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode


class _ContiguousGroupNorm(TorchFunctionMode):
    """Hands ``F.group_norm`` (every ``nn.GroupNorm``) a contiguous input.

    PyTorch's fused group_norm fails under vmap + jvp when the tangent is not contiguous
    ("view size is not compatible"), as it is after diffusers' attention blocks.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.group_norm:
            args = (args[0].contiguous(), *args[1:])
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """IEEE fp32 on CUDA: cuDNN convolutions otherwise default to TF32 (10-bit mantissa)."""
    if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision"):
        knobs = [(torch.backends.cudnn.conv, "fp32_precision", "ieee"),
                 (torch.backends.cuda.matmul, "fp32_precision", "ieee")]
    else:  # torch < 2.9
        knobs = [(torch.backends.cudnn, "allow_tf32", False), (torch.backends.cuda.matmul, "allow_tf32", False)]
    saved = [getattr(obj, name) for obj, name, _ in knobs]
    for obj, name, value in knobs:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for (obj, name, _), value in zip(knobs, saved):
            setattr(obj, name, value)


@contextlib.contextmanager
def jacobian_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode, IEEE fp32 and forward-mode-capable norm/attention for ``model``, restored on exit."""
    was_training = model.training
    # diffusers' Attention modules carry a swappable processor; the default one calls fused SDPA.
    attention = [m for m in model.modules() if hasattr(m, "set_processor") and hasattr(m, "processor")]
    saved = [m.processor for m in attention]
    if attention:
        from diffusers.models.attention_processor import AttnProcessor

        for m in attention:
            m.set_processor(AttnProcessor())
    model.eval()
    try:
        with _ContiguousGroupNorm(), sdpa_kernel(SDPBackend.MATH), full_fp32():
            yield
    finally:
        model.train(was_training)
        for m, processor in zip(attention, saved):
            m.set_processor(processor)
