"""Feature taps: read any submodule's output by its module path, via forward hooks."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from clareps.errors import ClarepsError

DEFAULT_TAP = "mid"


class _TapReached(Exception):
    """Raised inside a hook to skip the rest of the forward once the tap has fired."""


def get_module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:12]
        raise ClarepsError(f"no module at tap path '{path}' (some valid paths: {', '.join(names)}, ...)") from None


@contextlib.contextmanager
def tap(model: nn.Module, path: str, stop: bool = False) -> Iterator[dict]:
    """Record ``model.<path>``'s output in ``store["out"]`` during forwards in this context.

    With ``stop=True`` the forward is cut short after the tap; call it through
    :func:`run_to_tap`, which swallows the early exit.
    """
    store: dict = {}

    def hook(_module, _inputs, output):
        store["out"] = output
        if stop:
            raise _TapReached

    handle = get_module(model, path).register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def run_to_tap(model: nn.Module, path: str, *args, **kwargs) -> torch.Tensor:
    """The output of ``model.<path>`` for one forward, skipping the layers after it."""
    with tap(model, path, stop=True) as store:
        try:
            model(*args, **kwargs)
        except _TapReached:
            pass
    if "out" not in store:
        raise ClarepsError(f"tap '{path}' did not fire during the forward pass{_inner_hint(model, path)}")
    return store["out"]


def _inner_hint(model: nn.Module, path: str) -> str:
    """A container (e.g. a level whose blocks the forward calls one by one) never fires: name its parts."""
    parts = [n for n, m in get_module(model, path).named_modules()
             if n and not isinstance(m, (nn.ModuleList, nn.ModuleDict))]
    if not parts:
        return ""
    depth = min(n.count(".") for n in parts)
    names = [f"{path}.{n}" for n in parts if n.count(".") == depth]
    return f": the forward never calls it as a whole; try one of its parts ({', '.join(names[:6])})"
