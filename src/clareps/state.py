"""Module and optimizer state as named tensors, with one-line errors for a checkpoint that does not fit."""

from __future__ import annotations

import torch
from torch import nn

from clareps.errors import ClarepsError


def load_state(module: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with a one-line error naming the first mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        what = f"missing '{missing[0]}'" if missing else f"unexpected '{extra[0]}'"
        raise ClarepsError(f"checkpoint {source} does not fit this model: {what}")
    for name, value in tensors.items():
        if own[name].shape != value.shape:
            raise ClarepsError(f"checkpoint {source} does not fit this model: '{name}' has shape "
                               f"{tuple(value.shape)}, the model expects {tuple(own[name].shape)}")
    module.load_state_dict(tensors)


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Flatten an optimizer's state into named tensors plus JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"opt.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, sd["param_groups"]


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def training_tensors(modules: dict[str, nn.Module], opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor],
                                                                                          list[dict]]:
    """A training checkpoint's tensors (each module's state under ``NAME.``, then the optimizer's) and
    the optimizer's param groups."""
    tensors = {f"{name}.{k}": v for name, module in modules.items() for k, v in module.state_dict().items()}
    opt_tensors, groups = optimizer_tensors(opt)
    tensors.update(opt_tensors)
    return tensors, groups


def restore_training(tensors: dict[str, torch.Tensor], groups: list[dict], modules: dict[str, nn.Module],
                     opt: torch.optim.Optimizer, device: torch.device, source: str) -> None:
    """Load what ``training_tensors`` saved; the optimizer's state goes to ``device`` (its step counts stay)."""
    for name, module in modules.items():
        load_state(module, {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}, source)
    restore_optimizer(opt, {k: v if k.endswith(".step") else v.to(device) for k, v in tensors.items()
                            if k.startswith("opt.")}, groups)
