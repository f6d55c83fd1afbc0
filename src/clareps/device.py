"""Where work runs: the device (``auto``: CUDA when present), the precision (``auto``: bf16 only
where the hardware runs it natively), and a record of the machine for every timing."""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time
from typing import Literal

import torch

from clareps.errors import ClarepsError
from clareps.paths import default_cache_dir

Precision = Literal["auto", "bf16", "fp32"]


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ClarepsError(f"device {name!r} asked for, but CUDA is not available here")
    if name != "cpu" and not name.startswith("cuda"):
        raise ClarepsError(f"unknown device {name!r}: use auto, cpu or cuda[:N]")
    return torch.device(name)


# -- the CPU ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """PyTorch's vector ISA for this CPU: AVX2, AVX512, DEFAULT, SVE256, ..."""
    return torch.backends.cpu.get_cpu_capability()


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which its bf16 kernels are emulated even on a bf16 CPU
_ONEDNN_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def cpu_isa_capped() -> bool:
    """Whether the environment caps the kernels below native bf16 (``ONEDNN_MAX_CPU_ISA=AVX2``,
    ``ATEN_CPU_CAPABILITY=avx2``): such a process runs as a CPU without bf16 would, so ``auto`` must too."""
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    return onednn in _ONEDNN_ISAS_WITHOUT_BF16 or aten in ("default", "avx2")


def cpu_bf16_native() -> bool | None:
    """Whether the CPU has bf16 instructions that torch will use: True/False where the flags tell, None where
    they cannot. False under an ISA cap (:func:`cpu_isa_capped`), where bf16 is emulated."""
    if cpu_isa_capped():
        return False
    if torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported():
        return True
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return False  # x86 without AVX-512 BF16 or AMX emulates bf16 (an AVX2 conv ~70x slower)
    return None  # e.g. aarch64: some cores have bf16 dot products; measure


def _bench_conv(dtype_autocast: bool, repeats: int = 3) -> float:
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(8, 64, 16, 16)
    best = float("inf")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype_autocast):
        for _ in range(repeats + 1):  # the first call warms up
            t0 = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t0)
    return best


@functools.lru_cache(maxsize=None)
def cpu_bf16_speedup() -> float:
    """fp32 time / bf16-autocast time of a 3x3 convolution on this CPU (>1: bf16 is faster).

    Measured once per machine (CPU model, capability, torch, threads) and cached on disk."""
    key = f"{cpu_model()}|{cpu_capability()}|{torch.__version__}|{torch.get_num_threads()}"
    path = default_cache_dir() / "bf16-speedup.json"
    try:
        cache = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = round(_bench_conv(False) / _bench_conv(True), 4)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(cache, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass  # a cache we cannot write is measured again next time
    return float(cache[key])


# -- precision ----------------------------------------------------------------------------------------
def _bf16_runs_well(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    native = cpu_bf16_native()
    return native if native is not None else cpu_bf16_speedup() > 1.2


@functools.lru_cache(maxsize=None)
def _warn_emulated(device_type: str) -> None:
    if device_type == "cuda":
        text = "this GPU has no native bf16"
    else:
        text = (f"bf16 is emulated on this CPU ({cpu_model()}, {cpu_capability()}): measured "
                f"{1 / cpu_bf16_speedup():.0f}x slower than fp32 here")
    print(f"warning: precision bf16: {text}; use precision auto or fp32", file=sys.stderr)


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` -> bf16 where the device runs it natively and faster, else fp32. An explicit bf16
    where it is emulated runs, after a one-line warning saying how much slower it is."""
    if requested == "auto":
        return "bf16" if _bf16_runs_well(device) else "fp32"
    if requested == "bf16" and not _bf16_runs_well(device):
        _warn_emulated(device.type)
    if requested not in ("bf16", "fp32"):
        raise ClarepsError(f"unknown precision {requested!r}: use auto, bf16 or fp32")
    return requested


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU or CUDA when ``precision`` is or resolves to bf16; a no-op for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=resolve_precision(precision, device) == "bf16")


# -- the record of where something ran ----------------------------------------------------------------
def hardware(device: torch.device | None = None, precision: str | None = None) -> dict:
    """The machine, for every timing: CPU model and vector capability, threads, GPU, torch; with a
    device and a requested precision, the precision it resolved to."""
    cuda = torch.cuda.is_available()
    out = {"cpu": cpu_model(), "capability": cpu_capability(), "bf16_native": cpu_bf16_native(),
           "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
           "python": platform.python_version(), "gpu": torch.cuda.get_device_name(0) if cuda else None}
    if device is not None:
        out["device"] = str(device)
    if precision is not None:
        out["precision_requested"] = precision
        out["precision"] = resolve_precision(precision, device or resolve_device("auto"))
    return out


def describe_hardware(hw: dict) -> str:
    """One line from a ``hardware()`` record: where, which vector ISA, threads, torch, precision."""
    cpu = f"CPU {hw.get('cpu')}" + (f" [{hw['capability']}]" if hw.get("capability") else "")
    where = hw.get("gpu") or f"{cpu} ({hw.get('cores')} cores, {hw.get('torch_threads')} torch threads)"
    if hw.get("device"):
        where += f", device {hw['device']}"
    precision = hw.get("precision")
    if isinstance(precision, dict):
        precision = ", ".join(f"{stage} {p}" for stage, p in precision.items())
    return f"{where}, torch {hw.get('torch')}" + (f"; precision {precision}" if precision else "")
