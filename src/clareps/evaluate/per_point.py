"""Per-point randomness for APGD(-T), Square and CW (torchattacks 3.5.1 and pyautoattack 0.2).

Both libraries seed one global generator per call and draw the random numbers of a whole batch
at once, so a point's random start (APGD) or random search (Square) depends on which other points
share its batch, and the cascade (which attacks the survivors only) would meet a point with other
draws than the old order. Here every point draws from its own stream, keyed by the seed, the
attack and the point's image, so its result is the same in any batch, order or subset.

- APGD and APGD-T: the only random draw of an L-inf run is the start ``torch.rand(x.shape)`` at the
  top of ``attack_single_run``; that call is served from the points' streams and any other
  ``torch.rand`` call there fails. The rest of APGD is per point: the step size, its halving checkpoints (``k`` is a
  schedule of the iteration counter, the same for every point) and the best iterate are kept per
  point, and the loss is summed only to get per-point gradients.
- Square: the libraries draw one square (position and signs) per iteration for the whole batch, so
  no injection can make it per point. ``square_linf`` is their L-inf loop with one square per
  point, each from the point's stream: a point meets exactly what the libraries' loop gives it when
  it is the only point in the batch, at the cost of the batched loop.
- FAB-T with one restart draws nothing.
- CW-L2 draws nothing, but torchattacks stops the whole batch when the batch's summed cost rises
  at a checkpoint; here each point stops on its own cost, as it would alone (Adam's update is
  elementwise, so nothing else couples the points).

The streams are keyed by the image rather than the point's index because the attacks pass subsets
of their batch down (the points still robust, per target class) and only the rows reach the draw.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager

import torch

from clareps.errors import ClarepsError


class PointStreams:
    """One generator per point, created on the point's first draw from (seed, attack, image bytes)."""

    def __init__(self, seed: int, salt: str):
        self.tag, self.gens = f"{seed}/{salt}/".encode(), {}

    def uniform(self, x: torch.Tensor, shape: tuple) -> torch.Tensor:
        """The next ``shape`` uniform draw of each row's stream; identical rows get the same draw."""
        out, drawn = [], {}
        for row in x.detach().cpu().contiguous():
            key = hashlib.blake2b(self.tag + row.numpy().tobytes(), digest_size=8).digest()
            if key not in drawn:
                if key not in self.gens:
                    self.gens[key] = torch.Generator().manual_seed(int.from_bytes(key, "little") >> 1)
                drawn[key] = torch.rand(shape, generator=self.gens[key])
            out.append(drawn[key])
        return torch.stack(out).to(x.device) if out else torch.empty(0, *shape, device=x.device)


@contextmanager
def rand_served(values: torch.Tensor):
    """``torch.rand(values.shape)`` returns ``values`` once; any other call of it raises."""
    real, served = torch.rand, []

    def rand(*size, **kwargs):
        size = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        if served or kwargs or size != tuple(values.shape):
            raise RuntimeError(f"unexpected random draw torch.rand{size} inside a per-point attack")
        served.append(size)
        return values.clone()

    torch.rand = rand
    try:
        yield
    finally:
        torch.rand = real


class _Streams:
    def perturb(self, *args, **kwargs):
        self._streams = PointStreams(self._point_seed, self._point_salt)  # a point's draws restart per call
        return super().perturb(*args, **kwargs)


class _StartPerPoint(_Streams):
    def attack_single_run(self, x, y, *args, **kwargs):
        with rand_served(self._streams.uniform(x, tuple(x.shape[1:])).cpu()):
            return super().attack_single_run(x, y, *args, **kwargs)


class _SquarePerPoint(_Streams):
    def attack_single_run(self, x, y):
        return square_linf(self, x, y, self._streams)


class _CWStopPerPoint:
    def forward(self, images, labels):
        if self.targeted:
            raise ClarepsError("the per-point CW is untargeted")
        x, y = images.clone().detach().to(self.device), labels.clone().detach().to(self.device)
        w = self.inverse_tanh_space(x).detach().requires_grad_(True)
        best, best_l2, prev = x.clone(), torch.full((len(x),), 1e10, device=x.device), torch.full((len(x),), 1e10,
                                                                                               device=x.device)
        running = torch.ones(len(x), dtype=torch.bool, device=x.device)
        optimizer = torch.optim.Adam([w], lr=self.lr)
        for step in range(self.steps):
            adv = self.tanh_space(w)
            l2 = ((adv - x) ** 2).flatten(1).sum(1)
            logits = self.get_logits(adv)
            cost = l2 + self.c * self.f(logits, y)
            optimizer.zero_grad()
            cost.sum().backward()
            optimizer.step()
            better = running & (logits.detach().argmax(1) != y) & (best_l2 > l2.detach())
            best_l2 = torch.where(better, l2.detach(), best_l2)
            best[better] = adv.detach()[better]
            if step % max(self.steps // 10, 1) == 0:  # torchattacks' early stop, per point
                running &= ~(cost.detach() > prev)
                prev = torch.where(running, cost.detach(), prev)
                if not running.any():
                    break
        return best


_MIXIN = {"CW": _CWStopPerPoint, "APGD": _StartPerPoint, "APGDT": _StartPerPoint, "APGDAttack": _StartPerPoint,
          "APGDAttack_targeted": _StartPerPoint, "Square": _SquarePerPoint, "SquareAttack": _SquarePerPoint}
_CLASSES: dict[type, type] = {}


def per_point(attack, seed: int, salt: str):
    """Make ``attack`` (one of the classes above, built and configured as usual) draw per point;
    ``salt`` names the attack so that two attacks never share their draws. Returns the attack."""
    base = type(attack)
    if base.__name__ in ("FAB", "FABAttack_PT"):
        if attack.n_restarts != 1:
            raise ClarepsError("FAB draws a random start from its second restart on: use one restart")
        return attack
    if base.__name__ not in _MIXIN or getattr(attack, "norm", "Linf") != "Linf":
        raise ClarepsError(f"no per-point randomness for {base.__name__} (norm {getattr(attack, 'norm', '?')})")
    if base not in _CLASSES:  # the configured instance is kept: only its class gains the mixin
        _CLASSES[base] = type(f"PerPoint{base.__name__}", (_MIXIN[base.__name__], base), {})
    attack.__class__ = _CLASSES[base]
    attack._point_seed, attack._point_salt = seed, salt
    return attack


def square_linf(atk, x: torch.Tensor, y: torch.Tensor, streams: PointStreams) -> tuple[torch.Tensor, torch.Tensor]:
    """The L-inf Square Attack loop of torchattacks / pyautoattack (``atk`` supplies eps, n_queries,
    p_init, p_selection and margin_and_loss) with one random square per point and iteration:
    the initial vertical stripes, then per iteration the square's corner (``floor(u * (h - s))``,
    as their ``random_int``) and one sign per channel, all from the point's stream."""
    with torch.no_grad():
        n, (c, h, w) = len(x), x.shape[1:]
        stripes = torch.sign(2 * streams.uniform(x, (c, 1, w)) - 1)
        draws = streams.uniform(x, (atk.n_queries, 2 + c))  # per query: corner row, corner column, signs
        x_best = (x + atk.eps * stripes).clamp(0, 1)
        margin_min, loss_min = atk.margin_and_loss(x_best, y)
        n_queries = torch.ones(n, device=x.device)
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        for i in range(atk.n_queries):
            idx = (margin_min > 0).nonzero().flatten()
            if not len(idx):
                break
            x_curr, best_curr = x[idx], x_best[idx]
            s = min(max(round(math.sqrt(atk.p_selection(i) * h * w)), 1), h, w)
            u = draws[idx, i]
            vh, vw = (u[:, 0] * (h - s)).long(), (u[:, 1] * (w - s)).long()
            inside = (((rows >= vh[:, None]) & (rows < vh[:, None] + s))[:, :, None]
                      & ((cols >= vw[:, None]) & (cols < vw[:, None] + s))[:, None, :])
            square = inside[:, None].float() * (2 * atk.eps * torch.sign(2 * u[:, 2:] - 1))[:, :, None, None]
            x_new = torch.min(torch.max(best_curr + square, x_curr - atk.eps), x_curr + atk.eps).clamp(0, 1)
            margin, loss = atk.margin_and_loss(x_new, y[idx])
            better = loss < loss_min[idx]
            loss_min[idx] = torch.where(better, loss, loss_min[idx])
            better |= margin <= 0
            margin_min[idx] = torch.where(better, margin, margin_min[idx])
            x_best[idx] = torch.where(better[:, None, None, None], x_new, best_curr)
            n_queries[idx] += 1
    return n_queries, x_best
