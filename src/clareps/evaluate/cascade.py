"""The attacks as a cascade: the per-point worst case over attacks and budgets, at a fraction of the cost.

An example that breaks the model at budget eps lies inside every larger L-inf ball, so a point
broken at eps is broken at every larger budget. Each attack (cheapest first) runs over the budgets
in ascending order, and at each budget only on the points still robust there: those that no attack
so far broke at this budget or at a smaller one. A point broken at a smaller budget is carried over:
its example is scored once more, clipped into the larger ball (a no-op), and only if the model
then classifies it correctly (never expected) is the point attacked as usual (`carry_failed`).

So the worst case per point is that of running every attack on every point at every budget,
or stronger: a point that an attack breaks only at a smaller budget counts as broken at the
larger ones too. Each attack's `accuracy` is the worst case over it and the attacks before it
(its `over`); only the first attack's is that attack alone (with the carry-over).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from clareps.evaluate.attacks import SLOW, RobustnessConfig, attack_key, attack_points, cw_at_budget, cw_run
from clareps.classifiers.training import predict


class Cascade:
    """Which points are still robust at each budget, and the example that first broke each other one."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, budgets: list[float],
                 clean_ok: torch.Tensor, batch_size: int):
        self.model, self.x, self.y, self.budgets, self.bs = model, x, y, budgets, batch_size
        self.robust = clean_ok.expand(len(budgets), len(x)).clone()  # budgets ascending
        self.example = x.clone()  # for a broken point: the example that broke it at its smallest budget
        self.tried_carry = torch.zeros_like(self.robust)
        self.carry_failed = 0

    def carry(self, k: int) -> int:
        """Points broken at budget k - 1 but not yet at k: score their example in ball k. Returns
        how many were carried."""
        if k == 0:
            return 0
        todo = self.robust[k] & ~self.robust[k - 1] & ~self.tried_carry[k]
        self.tried_carry[k] |= todo
        idx = todo.nonzero().flatten()
        if not len(idx):
            return 0
        eps, x = self.budgets[k], self.x[idx]
        adv = (x + (self.example[idx] - x).clamp(-eps, eps)).clamp(0, 1)
        broken = predict(self.model, adv, self.bs) != self.y[idx]
        self.robust[k, idx[broken]] = False
        self.carry_failed += int((~broken).sum())
        return int(broken.sum())

    def record(self, k: int, idx: torch.Tensor, adv: torch.Tensor, ok: torch.Tensor) -> int:
        """Attack results at budget k for points ``idx``; returns how many it broke."""
        broke = idx[~ok]
        first = self.robust[:k, broke].all(0) if k else torch.ones(len(broke), dtype=torch.bool)
        self.example[broke[first]] = adv[~ok][first]  # keep the example of the smallest budget
        self.robust[k, broke] = False
        return len(broke)


def run_cascade(model: nn.Module, x: torch.Tensor, y: torch.Tensor, budgets: list[float], cfg: RobustnessConfig,
                n_classes: int, seed: int, slow: torch.Tensor, clean_ok: torch.Tensor,
                advance: Callable[[int], None]) -> tuple[dict[str, torch.Tensor], dict[str, dict], dict]:
    """Per attack (in cost order), which points are robust after it and every attack before it,
    shape (len(budgets), N) in the order of ``budgets``; each attack's diagnostics; the cascade's."""
    order = sorted(range(len(budgets)), key=lambda i: budgets[i])
    eps = [budgets[i] for i in order]
    state = Cascade(model, x, y, eps, clean_ok, cfg.batch_size)
    ids = torch.arange(len(x))
    point_ok, info, over = {}, {}, []
    for name in sorted(cfg.attacks, key=lambda a: ("pgd", "cw", "apgd-ce", "autoattack").index(a)):
        t0, c0 = time.perf_counter(), time.process_time()
        on = slow if name in SLOW else torch.ones(len(x), dtype=torch.bool)
        over.append(attack_key(name, cfg))
        attacked, broke, carried, extra = [], [], [], {"non_finite_replaced": 0, "max_linf_excess_clipped": 0.0}
        if name == "cw":  # budget-free: one run on the points still robust at the smallest budget
            first = (state.robust[0] & on).nonzero().flatten()
            delta, l2 = cw_run(model, x[first], y[first], cfg, n_classes, seed)
            extra = {"median_l2_of_successes": l2[len(l2) // 2] if l2 else None, "successes": len(l2),
                     "ran_on": len(first)}
        runs = [cfg.runs_at(name)[i] for i in order]
        for k, e in enumerate(eps):
            carried.append(state.carry(k))
            idx = (state.robust[k] & on).nonzero().flatten()
            if not runs[k]:  # this attack does not run at this budget (robustness.slow_budgets_255)
                idx = idx[:0]
            if name == "cw":  # (a point whose carry-over failed may lie outside `first`: CW never saw it)
                idx = idx[torch.isin(idx, first)]
            attacked.append(len(idx))
            if name == "cw":
                pos = torch.searchsorted(first, idx)  # idx lies inside first: robust sets shrink with k
                adv, ok = cw_at_budget(model, x[idx], y[idx], delta[pos], e, cfg.batch_size)
            else:
                adv, ok, diag = attack_points(name, model, x[idx], y[idx], ids[idx], e, cfg, n_classes, seed)
                extra["non_finite_replaced"] += diag["non_finite_replaced"]
                extra["max_linf_excess_clipped"] = max(extra["max_linf_excess_clipped"],
                                                       diag["max_linf_excess_clipped"])
            broke.append(state.record(k, idx, adv, ok))
            advance(int((on & clean_ok).sum()))  # the clean-wrong ones were counted before the attacks
        ok_now = torch.empty_like(state.robust)
        ok_now[order] = state.robust
        point_ok[name] = ok_now
        info[name] = dict(extra, over=list(over), attacked=[attacked[order.index(i)] for i in range(len(budgets))],
                          broke=[broke[order.index(i)] for i in range(len(budgets))],
                          carried=[carried[order.index(i)] for i in range(len(budgets))],
                          seconds=round(time.perf_counter() - t0, 2), cpu_seconds=round(time.process_time() - c0, 2))
    return point_ok, info, {"schedule": "cascade", "carry_failed": state.carry_failed}
