"""The one teacher loader (``load_teacher_any``), the teacher's kind, and fingerprints.

A teacher spec is a clareps ``.safetensors`` file (or the run folder holding it), or a directory (optionally written
``diffusers:/path``) holding a diffusers model in either layout:

- a saved pipeline: ``unet/`` or ``transformer/``, optionally ``vae/``, ``scheduler/`` (what
  ``DiTPipeline.save_pretrained`` or ``DDPMPipeline.save_pretrained`` writes);
- a bare model folder (``config.json`` + weights), optionally with ``vae/`` and a
  ``scheduler_config.json`` beside it.

Without a scheduler config the diffusers default is assumed (linear betas 1e-4..0.02 over 1000
steps, epsilon prediction), and the teacher's metadata says so. diffusers itself is optional (the
``diffusers`` extra); a diffusers folder without it is refused with the line that installs it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from clareps.diffusion.checkpoint import TEACHER_KIND, read_teacher_checkpoint
from clareps.errors import ClarepsError
from clareps.io import hash_file, hash_obj, read_meta
from clareps.paths import teacher_file

PREFIX = "diffusers:"
UNET_CLASSES = {"UNet2DModel"}
DIT_CLASSES = {"DiTTransformer2DModel", "Transformer2DModel"}
TeacherKind = Literal["clareps", "unet2d", "dit"]  # our U-Net, a diffusers UNet2DModel, a DiT (+ VAE)
_SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                  "rescale_betas_zero_snr")


def is_external(spec: str | Path) -> bool:
    return str(spec).startswith(PREFIX) or teacher_file(spec).is_dir()


def _root(spec: str | Path) -> Path:
    root = Path(str(spec).removeprefix(PREFIX))
    if not root.is_dir():
        raise ClarepsError(f"teacher directory not found: {root}")
    return root


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ClarepsError(f"cannot read {path}: {exc}".splitlines()[0]) from None


def _components(root: Path) -> tuple[Path, Path | None, Path | None]:
    """The denoiser's folder, the VAE's folder and the scheduler config, where present."""
    denoiser = next((d for d in (root / "transformer", root / "unet", root) if (d / "config.json").is_file()), None)
    if denoiser is None:
        raise ClarepsError(f"{root} holds no diffusers model (no config.json in it, unet/ or transformer/)")
    vae = root / "vae" if (root / "vae" / "config.json").is_file() else None
    sched = next((p for p in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json")
                  if p.is_file()), None)
    return denoiser, vae, sched


def _schedule(path: Path | None) -> tuple[torch.Tensor, str]:
    from diffusers import DDPMScheduler

    config = _read(path) if path is not None else {}
    kwargs = {k: config[k] for k in _SCHEDULE_KEYS if k in config}
    try:
        alpha_bar = DDPMScheduler(**kwargs).alphas_cumprod
    except (ValueError, NotImplementedError, TypeError) as exc:
        raise ClarepsError(f"unsupported noise schedule in {path}: {exc}".splitlines()[0]) from None
    return alpha_bar, config.get("prediction_type", "epsilon")


def require_diffusers() -> None:
    """diffusers is an optional dependency: a one-line refusal naming the extra when it is missing."""
    if importlib.util.find_spec("diffusers") is None:
        raise ClarepsError("loading a diffusers model needs diffusers: pip install -e '.[diffusers]'")


def teacher_kind(spec: str | Path) -> TeacherKind:
    """What a teacher spec holds, read from its files alone (no weights loaded): ``clareps`` (our U-Net
    file), ``unet2d`` (a diffusers UNet2DModel) or ``dit`` (a DiT, with or without its VAE). A missing
    path or an unsupported model is a one-line error."""
    if not is_external(spec):
        path = teacher_file(spec)
        if not path.is_file():
            raise ClarepsError(f"teacher not found: {spec} (a clareps .safetensors, its run folder, or a "
                               "diffusers folder)")
        kind = read_meta(path).get("kind")
        if kind != TEACHER_KIND:
            raise ClarepsError(f"{path} is not a clareps teacher checkpoint (kind={kind!r})")
        return "clareps"
    denoiser, _, _ = _components(_root(spec))
    name = _read(denoiser / "config.json").get("_class_name")
    if name in UNET_CLASSES:
        return "unet2d"
    if name in DIT_CLASSES:
        return "dit"
    raise ClarepsError(f"{denoiser} holds a {name!r}; supported: {', '.join(sorted(UNET_CLASSES | DIT_CLASSES))}")


def _from_pretrained(cls, folder: Path):
    # diffusers loads through accelerate when it is installed, and warns when it is not
    lean = importlib.util.find_spec("accelerate") is not None
    if not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")):
        raise ClarepsError(f"{folder} holds pickled .bin weights only; clareps loads safetensors, never pickles: "
                           "convert them (save_pretrained(..., safe_serialization=True)) and retry")
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float32,
                                   low_cpu_mem_usage=lean, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ClarepsError(f"cannot load {cls.__name__} from {folder}: {exc}".splitlines()[0]) from None


def load_external(spec: str | Path, device: str | torch.device = "cpu", classes: list[int] | None = None):
    """The adapter in eval mode (carrying its schedule) and its metadata, like a clareps teacher's."""
    require_diffusers()
    from diffusers import AutoencoderKL, DiTTransformer2DModel, UNet2DModel

    from clareps.adapters.models import DiTTeacher, UNet2DTeacher

    root = _root(spec)
    denoiser, vae_dir, sched_path = _components(root)
    name = _read(denoiser / "config.json").get("_class_name")
    alpha_bar, prediction = _schedule(sched_path)
    if name in UNET_CLASSES:
        model = UNet2DTeacher(_from_pretrained(UNet2DModel, denoiser), alpha_bar, prediction, classes)
        if vae_dir is not None:
            raise ClarepsError(f"{root} holds a VAE beside a UNet2DModel; latent UNets are not supported")
    elif name in DIT_CLASSES:
        vae = _from_pretrained(AutoencoderKL, vae_dir) if vae_dir is not None else None
        model = DiTTeacher(_from_pretrained(DiTTransformer2DModel, denoiser), vae, alpha_bar, prediction, classes)
    else:
        raise ClarepsError(f"{denoiser} holds a {name!r}; supported: {', '.join(sorted(UNET_CLASSES | DIT_CLASSES))}")
    if alpha_bar.shape[0] < 2:
        raise ClarepsError(f"{root}: the noise schedule has fewer than 2 steps")
    meta = {"kind": "diffusers", "model": name, "path": str(root), "T": int(alpha_bar.shape[0]),
            "prediction_type": prediction, "latent": vae_dir is not None, "classes": classes,
            "schedule": str(sched_path) if sched_path is not None else "diffusers default (linear, 1000)"}
    model = model.to(device).eval().requires_grad_(False)
    return model, meta


def teacher_fingerprint(spec: str | Path) -> str:
    """Content hash of a teacher: its file, or every file of its directory (with relative paths)."""
    if not is_external(spec):
        path = teacher_file(spec)
        if not path.is_file():
            raise ClarepsError(f"teacher file not found: {path}")
        return hash_file(path)
    root = _root(spec)
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    return hash_obj({str(p.relative_to(root)): hash_file(p) for p in files})


def load_teacher_any(spec: str | Path, device: str | torch.device = "cpu",
                     classes: list[int] | None = None) -> tuple[nn.Module, dict]:
    """The one teacher loader: a clareps teacher file (or its run folder), or an external diffusers teacher
    from a local directory (``clareps.adapters``); ``classes`` picks a subset of an external teacher's
    classes. Returns the model in eval mode, carrying its schedule, and its metadata."""
    if is_external(spec):
        return load_external(spec, device, classes)
    if classes is not None:
        raise ClarepsError(f"teacher_classes is for external teachers; {spec} is a clareps teacher")
    if not teacher_file(spec).is_file():
        raise ClarepsError(f"teacher not found: {spec} (a clareps .safetensors, its run folder, or a "
                           "diffusers folder)")
    return read_teacher_checkpoint(spec, device)
