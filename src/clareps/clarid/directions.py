"""Which directions CLARID removes from x_te: the Jacobian's top-k, or a control that isolates it.

``clarid.directions``:
- ``jacobian`` (the method): the top-k right singular vectors of J = df/dx at x_te;
- ``random``: k orthonormal Gaussian directions, seeded per item;
- ``low-frequency``: the k lowest-frequency 2-D DCT-II basis images, one channel each, ordered
  by u + v, then max(u, v), then u, then channel (so k = 3 is the three per-channel means);
- ``shuffled``: the Jacobian top-k subspace of the item's donor, an item of another class
  (``donors``: a fixed derangement of the bank's plan);
- ``tail``: the Jacobian's singular vectors k+1 .. 2k (the engine runs with 2k);
- ``class-contrastive``, ``region-restricted``, ``mask-oracle``: families that try to select
  (``clarid/families.py``).

Removed share (recorded for every item): ||x - x~|| / ||x|| for the projection, before any
``norm_preserving`` rescale.

``clarid.match_removed_norm`` (for a non-Jacobian choice): the item's own Jacobian top-k is
computed too, and its removed share is the target. The control's directions form an ordered
pool (random: as many seeded Gaussian directions as needed, orthonormalised in order;
low-frequency: the whole DCT basis in its order; tail: singular vectors k+1 .. 2k; shuffled:
the donor's k; a family: its k in order). Whole directions are removed in pool order while the removed norm stays below
the target; the next one is removed in part (its component scaled by the beta in [0, 1] that
hits the target), so the match is exact up to rounding. Only when a fixed pool (tail, shuffled, a family)
removes less than the target with all k directions is its whole projection scaled up by
target / ||P x|| (> 1: components along those directions overshoot zero); the record's
``removal_scale`` holds that factor (1 otherwise).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from clareps.clarid.engine import Subspace, top_subspace
from clareps.clarid.families import FAMILIES, family_subspace
from clareps.clarid.linalg import orthonormal_rows
from clareps.errors import ClarepsError

DirectionKind = Literal["jacobian", "random", "low-frequency", "shuffled", "tail", "class-contrastive",
                        "region-restricted", "mask-oracle"]
RANDOM_SEED_OFFSET = 7_919 * 1_000_003  # keeps random directions apart from the item's other draws


@dataclass
class ControlInputs:
    """Per item, what a control needs beyond x_te: seeds (random), the donor's x_te, feature
    labels and engine start vectors (shuffled), the class (class-contrastive, region-restricted:
    the class evidence), the source's true mask (mask-oracle)."""

    item_seeds: torch.Tensor | None = None
    donor_latents: torch.Tensor | None = None
    donor_labels: torch.Tensor | None = None
    donor_init: torch.Tensor | None = None
    class_labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None  # (B, 1, H, W) in {0, 1}


@dataclass
class Removal:
    latents: torch.Tensor  # x~ (B, C, H, W)
    singular_values: torch.Tensor  # (B, k; 2k for tail) of the item's own Jacobian; (B, 0) when not computed
    record: dict[str, torch.Tensor]  # per item: see ``engine_record``
    input_features: torch.Tensor | None = None  # f(x_te) where an engine ran at x_te itself (not a donor's)


def engine_k(kind: str, k: int) -> int:
    return 2 * k if kind == "tail" else k


def project(x: torch.Tensor, vectors: torch.Tensor, norm_preserving: bool = False) -> torch.Tensor:
    """x~ = (I - V V^T) x per item; vectors (B, k, C, H, W) orthonormal when flattened."""
    flat, v = x.flatten(1), vectors.flatten(2)
    out = flat - torch.einsum("bk,bkd->bd", torch.einsum("bkd,bd->bk", v, flat), v)
    return (_rescale(out, flat) if norm_preserving else out).view_as(x)


def _rescale(out: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    return out * (flat.norm(dim=1, keepdim=True) / out.norm(dim=1, keepdim=True).clamp_min(1e-12))


def donors(labels: torch.Tensor) -> torch.Tensor:
    """Each item's donor: the item of the same rank (mod its count) in the next class present.

    No item is its own donor and every donor has another class (needs two classes); with equal
    class counts the map is a permutation (a derangement)."""
    classes = torch.unique(labels)
    if len(classes) < 2:
        raise ClarepsError("directions 'shuffled' needs items of at least two classes")
    members = {int(c): (labels == c).nonzero().flatten() for c in classes}
    rank = torch.empty_like(labels)
    for idx in members.values():
        rank[idx] = torch.arange(len(idx))
    nxt = {int(a): int(b) for a, b in zip(classes, classes.roll(-1))}
    return torch.stack([members[nxt[int(c)]][int(r) % len(members[nxt[int(c)]])] for c, r in zip(labels, rank)])


@functools.lru_cache(maxsize=4)
def dct_basis(shape: tuple[int, int, int]) -> torch.Tensor:
    """All C*H*W orthonormal 2-D DCT-II basis images (rows, flattened), lowest frequency first."""
    c, h, w = shape

    def dct(n: int) -> torch.Tensor:
        u, i = torch.arange(n, dtype=torch.float64)[:, None], torch.arange(n, dtype=torch.float64)[None]
        m = torch.cos(math.pi * (2 * i + 1) * u / (2 * n)) * math.sqrt(2 / n)
        m[0] /= math.sqrt(2)
        return m

    ch, cw = dct(h), dct(w)
    order = sorted(((u, v) for u in range(h) for v in range(w)), key=lambda p: (p[0] + p[1], max(p), p[0]))
    rows = torch.zeros(c * h * w, c, h, w, dtype=torch.float64)
    for j, (u, v) in enumerate(order):
        for ci in range(c):
            rows[j * c + ci, ci] = torch.outer(ch[u], cw[v])
    return rows.flatten(1).float()


def random_rows(seed: int, n: int, dim: int) -> torch.Tensor:
    """n orthonormal Gaussian directions (rows); the first m do not depend on n."""
    gen = torch.Generator().manual_seed(RANDOM_SEED_OFFSET + int(seed))
    return orthonormal_rows(torch.randn(n, dim, generator=gen))


def removed_share(x: torch.Tensor, x_tilde: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    return (flat - x_tilde.flatten(1)).norm(dim=1) / flat.norm(dim=1).clamp_min(1e-12)


def matched_removal(x: torch.Tensor, pool: torch.Tensor, target: float) -> tuple[torch.Tensor, int, float]:
    """One item: remove pool rows (n, D) in order until ||x - x~|| = target (see the module doc).

    Returns x~ (flat), the number of directions touched, and the scale of the whole projection
    (1, or > 1 when the pool ran short)."""
    c = pool @ x
    cum = c.double().pow(2).cumsum(0)
    t2 = target ** 2
    m = int((cum < t2).sum())
    if m == len(c):
        scale = math.sqrt(t2 / float(cum[-1])) if float(cum[-1]) > 0 else 0.0
        return x - scale * (c @ pool), m, scale
    weight = torch.ones_like(c)
    weight[m + 1:] = 0
    before = float(cum[m - 1]) if m else 0.0
    weight[m] = math.sqrt(max(t2 - before, 0.0) / max(float(c[m].double() ** 2), 1e-300))
    return x - (weight * c) @ pool, m + 1, 1.0


def engine_record(sub: Subspace | None, batch: int, share: torch.Tensor, used: torch.Tensor,
                  scale: torch.Tensor | None = None) -> dict:
    """Per item: the engine run whose directions were removed (the item's top-k, its 2k tail run,
    its donor's; for random and low-frequency the item's top-k when matching; zeros and nan when
    none ran), the removed share of ||x_te||, the number of directions removed and the scale of
    the projection (``matched_removal``)."""
    if sub is None:
        sub = Subspace(vectors=torch.empty(0), singular_values=torch.zeros(batch, 0),
                       iterations=torch.zeros(batch, dtype=torch.long), max_angle=torch.full((batch,), math.nan),
                       energy=torch.zeros(batch), converged=torch.zeros(batch, dtype=torch.bool))
    return {"engine_iterations": sub.iterations.cpu().long(), "engine_converged": sub.converged.cpu(),
            "engine_energy": sub.energy.cpu().float(), "engine_max_angle": sub.max_angle.cpu().float(),
            "removed_share": share.cpu().float(), "removed_directions": used.cpu().long(),
            "removal_scale": (torch.ones(batch) if scale is None else scale).cpu().float()}


def no_removal(batch: int) -> dict:
    """The record of items nothing was removed from (k = 0, feat-real)."""
    return engine_record(None, batch, torch.zeros(batch), torch.zeros(batch, dtype=torch.long))


@dataclass
class Candidates:
    top: Subspace | None  # the item's own top-k (jacobian, and the target when matching)
    source: Subspace | None  # the run whose directions are removed (top, the 2k tail run, the donor's)
    rows: torch.Tensor  # (B, n, D) the directions to remove, in order


def candidates(model: nn.Module, x: torch.Tensor, t: int, feature_labels: torch.Tensor, cfg,
               init: torch.Tensor | None = None, inputs: ControlInputs | None = None) -> Candidates:
    """The engine runs a choice needs and its directions (the first k; random's pool grows when
    matching). ``init``: start vectors (B, engine_k, ...); the top-k run starts from the first k, as a
    ``jacobian`` bank's does, so a matched target is the Jacobian bank's own removed share."""
    kind, k, b, dim = cfg.directions, cfg.k, x.shape[0], x[0].numel()
    inputs = inputs or ControlInputs()

    def engine(lat, lab, n, start):
        return top_subspace(model, lat, t, lab, n, cfg.tap, cfg.tol, cfg.max_iter, init=start)

    top = None
    if kind == "jacobian" or cfg.match_removed_norm:
        top = engine(x, feature_labels, k, None if init is None else init[:, :k])
    source = top if kind == "jacobian" else None
    if kind == "jacobian":
        rows = top.vectors.flatten(2)
    elif kind == "tail":
        source = engine(x, feature_labels, 2 * k, init)
        rows = source.vectors.flatten(2)[:, k:]
    elif kind == "shuffled":
        if inputs.donor_latents is None or inputs.donor_labels is None:
            raise ClarepsError("directions 'shuffled' needs each item's donor latent (build it in a bank)")
        source = engine(inputs.donor_latents, inputs.donor_labels, k, inputs.donor_init)
        rows = source.vectors.flatten(2)
    elif kind in FAMILIES:
        source = family_subspace(kind, model, x, t, feature_labels, cfg, k, None if init is None else init[:, :k],
                                 inputs.class_labels, inputs.masks)
        rows = source.vectors.flatten(2)
    elif kind == "low-frequency":
        rows = dct_basis(tuple(x.shape[1:])).to(x.device)[:k].expand(b, -1, -1)
    elif kind == "random":
        if inputs.item_seeds is None:
            raise ClarepsError("directions 'random' needs per-item seeds")
        rows = torch.stack([random_rows(int(s), k, dim) for s in inputs.item_seeds]).to(x.device)
    else:
        raise ClarepsError(f"unknown directions {kind!r}")
    return Candidates(top=top, source=source, rows=rows)


def remove(model: nn.Module, x: torch.Tensor, t: int, feature_labels: torch.Tensor, cfg,
           init: torch.Tensor | None = None, inputs: ControlInputs | None = None) -> Removal:
    """x~ for a batch of latents at timestep t; ``cfg`` is a ``ClaridConfig`` with k >= 1."""
    kind, b, dim = cfg.directions, x.shape[0], x[0].numel()
    inputs = inputs or ControlInputs()
    cand = candidates(model, x, t, feature_labels, cfg, init, inputs)
    if not cfg.match_removed_norm or kind == "jacobian":
        vectors = cand.rows.reshape(b, -1, *x.shape[1:])
        x_tilde = project(x, vectors, cfg.norm_preserving)
        share = removed_share(x, project(x, vectors) if cfg.norm_preserving else x_tilde)
        used, scale = torch.full((b,), cand.rows.shape[1], dtype=torch.long), None
    else:
        flat = x.flatten(1)
        target = removed_share(x, project(x, cand.top.vectors)) * flat.norm(dim=1)
        matched = [_matched_item(kind, flat[i], cand.rows[i], float(target[i]), inputs, i, dim, x.shape[1:])
                   for i in range(b)]
        out = torch.stack([m[0] for m in matched])
        used, scale = torch.tensor([m[1] for m in matched]), torch.tensor([m[2] for m in matched])
        share = (flat - out).norm(dim=1) / flat.norm(dim=1).clamp_min(1e-12)
        x_tilde = (_rescale(out, flat) if cfg.norm_preserving else out).view_as(x)
    own = cand.source if kind == "tail" else cand.top  # the item's own Jacobian, as far as computed
    svals = own.singular_values if own is not None else x.new_zeros(b, 0)
    return Removal(latents=x_tilde, singular_values=svals,
                   record=engine_record(cand.source or cand.top, b, share, used, scale),
                   input_features=own.features if own is not None else None)


def _matched_item(kind: str, x: torch.Tensor, pool: torch.Tensor, target: float, inputs: ControlInputs,
                  i: int, dim: int, shape) -> tuple[torch.Tensor, int, float]:
    if kind == "low-frequency":
        pool = dct_basis(tuple(shape)).to(x.device)
    if kind != "random":
        return matched_removal(x, pool, target)
    # Random: about D * share^2 directions remove the target; grow the pool until it does.
    n = min(dim, max(pool.shape[0], math.ceil(1.5 * dim * (target / float(x.norm().clamp_min(1e-12))) ** 2) + 8))
    while True:
        rows = random_rows(int(inputs.item_seeds[i]), n, dim).to(x.device)
        out, used, scale = matched_removal(x, rows, target)
        if scale == 1.0 or n == dim:
            return out, used, scale
        n = min(dim, 2 * n)
