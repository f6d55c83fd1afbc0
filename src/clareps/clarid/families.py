"""Direction families that try to select: class-contrastive, region-restricted, mask oracle.

Each gives, per item, an ordered set of k orthonormal directions in x_te's space (an engine run
recorded like the Jacobian's), removed like any other choice (``clarid/directions.py``; with
``match_removed_norm`` they remove the share of ||x_te|| the Jacobian top-k removes):

- ``class-contrastive``: the top-k of J_f^T J_f v = lam (J_g^T J_g + eps tau I) v, with f the tap's
  features and g the class evidence at t_e, the guidance direction eps(x, y) - eps(x, null):
  directions that change the features most while changing the class evidence least
  (``clarid/contrast.py``). eps (``clarid.contrast_eps``, default 3) is in units of tau, the mean
  eigenvalue of J_g^T J_g (estimated from the start block); eps -> infinity gives the Jacobian's top-k.
- ``region-restricted``: the Jacobian top-k of the features at the tap's spatial positions outside
  a foreground estimate the teacher gives itself: |eps(x_te, y) - eps(x_te, null)| (mean over
  channels), pooled to the tap's grid; its largest ``clarid.foreground_share`` (default 0.5) of the
  positions are the foreground. No masks needed.
- ``mask-oracle`` (an upper bound, not a method: it reads the true masks): the same with the
  source image's true mask pooled to the tap's grid; a position is foreground when more than
  ``clarid.mask_threshold`` (default 0: any pixel) of its cell is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from clareps.clarid.contrast import generalized_top_fn
from clareps.clarid.engine import Subspace, top_subspace_fn
from clareps.clarid.forward_mode import jacobian_mode
from clareps.errors import ClarepsError
from clareps.taps import run_to_tap

FAMILIES = ("class-contrastive", "region-restricted", "mask-oracle")
# the selectivity study's choices on its validation items (docs/studies/selectivity.md); at eps 1 the
# iteration had not settled in 40 steps
DEFAULTS = {"contrast_eps": 3.0, "foreground_share": 0.5, "mask_threshold": 0.0}


def setting(cfg, name: str) -> float:
    value = getattr(cfg, name, None)
    return DEFAULTS[name] if value is None else float(value)


def guidance(model: nn.Module, x: torch.Tensor, tt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """eps(x, t, y) - eps(x, t, null) per item, one forward of the doubled batch: (B, C, H, W)."""
    null = torch.full_like(y, model.null_class)
    eps = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null]))
    return eps[: x.shape[0]] - eps[x.shape[0]:]


def _tap_grid(model: nn.Module, tap: str, x: torch.Tensor, tt: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    with torch.no_grad():
        out = run_to_tap(model, tap, x[:1], tt[:1], y[:1])
    if out.dim() != 4:
        raise ClarepsError(f"directions {FAMILIES[1]!r} and {FAMILIES[2]!r} need a tap with a spatial grid "
                           f"(B, C, h, w); {tap!r} gives {tuple(out.shape)}")
    return out.shape[2], out.shape[3]


def estimated_background(strength: torch.Tensor, grid: tuple[int, int], share: float) -> torch.Tensor:
    """(B, h, w) 1 outside the foreground: all but the ``share`` of grid positions where ``strength``
    (B, H, W) pooled to the grid is largest (at least one position on either side)."""
    pooled = F.adaptive_avg_pool2d(strength[:, None].float(), grid).flatten(1)
    n = pooled.shape[1]
    fg = min(max(1, round(share * n)), n - 1)
    top = pooled.topk(fg, dim=1).indices
    bg = torch.ones_like(pooled).scatter_(1, top, 0.0)
    return bg.view(-1, *grid)


def oracle_background(masks: torch.Tensor, grid: tuple[int, int], threshold: float) -> torch.Tensor:
    """(B, h, w) 1 where at most ``threshold`` of the cell is true foreground (masks (B, 1, H, W));
    an item whose every cell is foreground keeps its least-covered one."""
    pooled = F.adaptive_avg_pool2d(masks.float(), grid)[:, 0].flatten(1)
    bg = (pooled <= threshold).float()
    empty = bg.sum(1) == 0
    if empty.any():
        bg[empty] = F.one_hot(pooled[empty].argmin(1), pooled.shape[1]).float()
    return bg.view(-1, *grid)


def _masked_top(model, x, tt, yy, bg, cfg, k, init) -> Subspace:
    tap = cfg.tap

    def f(xx, tt_, yy_, bg_):
        return (run_to_tap(model, tap, xx, tt_, yy_) * bg_[:, None]).flatten(1)

    with jacobian_mode(model):
        return top_subspace_fn(f, x, k, (tt, yy, bg), tol=cfg.tol, max_iter=cfg.max_iter, init=init)


def family_subspace(kind: str, model: nn.Module, x: torch.Tensor, t: int, feature_labels: torch.Tensor, cfg,
                    k: int, init: torch.Tensor | None, class_labels: torch.Tensor | None,
                    masks: torch.Tensor | None) -> Subspace:
    """The ordered k directions of a family (``FAMILIES``) for a batch x (B, C, H, W) at timestep t."""
    b = x.shape[0]
    tt = torch.full((b,), t, dtype=torch.long, device=x.device)
    yy = feature_labels.to(x.device)
    if kind == "mask-oracle":
        if masks is None:
            raise ClarepsError("directions 'mask-oracle' needs the sources' true masks: matched sources "
                               "from data with masks")
        bg = oracle_background(masks.to(x.device), _tap_grid(model, cfg.tap, x, tt, yy), setting(cfg, "mask_threshold"))
        return _masked_top(model, x, tt, yy, bg, cfg, k, init)
    if class_labels is None:
        raise ClarepsError(f"directions {kind!r} needs the items' classes")
    cy = class_labels.to(x.device)
    if kind == "region-restricted":
        with torch.no_grad():
            strength = guidance(model, x, tt, cy).abs().mean(1)
        bg = estimated_background(strength, _tap_grid(model, cfg.tap, x, tt, yy), setting(cfg, "foreground_share"))
        return _masked_top(model, x, tt, yy, bg, cfg, k, init)
    if kind != "class-contrastive":
        raise ClarepsError(f"unknown direction family {kind!r}")
    tap = cfg.tap

    def f(xx, tt_, yy_):
        return run_to_tap(model, tap, xx, tt_, yy_).flatten(1)

    def g(xx, tt_, cy_):
        return guidance(model, xx, tt_, cy_).flatten(1)

    with jacobian_mode(model):
        out = generalized_top_fn(f, g, x, k, setting(cfg, "contrast_eps"), (tt, yy), (tt, cy), tol=cfg.tol,
                                 max_iter=cfg.max_iter, init=init, relative_ridge=True)
    s = out.values.clamp_min(0).sqrt()
    return Subspace(vectors=out.vectors, singular_values=s, iterations=out.iterations,
                    max_angle=torch.full((b,), math.nan), energy=s.pow(2).sum(-1), converged=out.converged,
                    features=out.features)
