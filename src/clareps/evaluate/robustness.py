"""Adversarial robustness: PGD-L-inf, CW-L2, APGD-CE and AutoAttack over L-inf budgets (attacks.py).

Hygiene as in RobustBench: the model is in eval mode, inputs lie in [0, 1] (students normalise
inside), attacks run in fp32, a point counts as robust only when it is classified correctly
both clean and under the attack, and the worst case is taken per point across attacks.

CW-L2 minimises an L2 distance and has no budget of its own: it runs once per point, and at each
L-inf budget its perturbation is clipped into that budget's ball and scored again (an adversarial
example already inside the ball is unchanged by the clip). Its median L2 distance is reported too.

A larger budget should never raise robust accuracy; violations (a sign of a weak or unlucky
attack) are measured and flagged, never smoothed away. An adversarial example outside the ball or
the image range is clipped back before scoring, and a non-finite one replaced by the clean image;
both are counted in the results.

Two schedules give the same per-point worst case: `cascade` (the default, cascade.py) runs each
attack only on the points still robust, and `independent` runs every attack on every point at
every budget, so each attack's accuracy is its own.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from clareps.evaluate.attacks import (ATTACKS, SLOW, RobustnessConfig, attack_key, attack_params, attack_points,
                                      cw_at_budget, cw_run, make_attack)
from clareps.evaluate.cascade import run_cascade
from clareps.classifiers.training import predict

__all__ = ["ATTACKS", "RobustnessConfig", "evaluate_robustness", "make_attack", "attack_params", "per_class",
           "monotone_violations"]


def per_class(correct: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Accuracy of each class (None for a class with no image)."""
    out = []
    for c in range(num_classes):
        sel = labels == c
        out.append(float(correct[sel].float().mean()) if sel.any() else None)
    return out


def monotone_violations(budgets: list[float], accuracy: list[float | None]) -> list[dict]:
    """Consecutive budget pairs where the larger budget has the higher robust accuracy (budgets
    without an accuracy, None, are left out)."""
    order = sorted((i for i in range(len(budgets)) if accuracy[i] is not None), key=lambda i: budgets[i])
    return [{"from_eps": budgets[i], "to_eps": budgets[j], "increase": accuracy[j] - accuracy[i]}
            for i, j in zip(order, order[1:]) if accuracy[j] > accuracy[i]]


def _run(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, budgets: list[float],
         cfg: RobustnessConfig, n_classes: int, seed: int, advance: Callable[[int], None]) -> tuple[torch.Tensor, dict]:
    """Per-point correctness under attack ``name`` on every point, shape (len(budgets), N), and diagnostics."""
    ok = torch.zeros(len(budgets), len(x), dtype=torch.bool)
    if name == "cw":  # budget-free: one run, then clipped into each ball
        delta, l2 = cw_run(model, x, y, cfg, n_classes, seed)
        for k, eps in enumerate(budgets):
            ok[k] = cw_at_budget(model, x, y, delta, eps, cfg.batch_size)[1]
        advance(len(x) * len(budgets))
        return ok, {"median_l2_of_successes": l2[len(l2) // 2] if l2 else None, "successes": len(l2)}
    extra = {"max_linf_excess_clipped": 0.0, "non_finite_replaced": 0}
    for k, (eps, runs) in enumerate(zip(budgets, cfg.runs_at(name))):
        if not runs:  # not at this budget (robustness.slow_budgets_255): left out of the worst case there
            ok[k] = True
            advance(len(x))
            continue
        _, ok[k], diag = attack_points(name, model, x, y, ids, eps, cfg, n_classes, seed)
        extra["non_finite_replaced"] += diag["non_finite_replaced"]
        extra["max_linf_excess_clipped"] = max(extra["max_linf_excess_clipped"], diag["max_linf_excess_clipped"])
        advance(len(x))
    return ok, extra


def _independent(model, images, labels, budgets, cfg, num_classes, seed, slow, clean_ok, advance):
    point_ok, info = {}, {}
    for name in cfg.attacks:
        t0, c0 = time.perf_counter(), time.process_time()
        on = slow if name in SLOW else torch.ones(len(images), dtype=torch.bool)
        target = on & clean_ok
        ok = torch.zeros(len(budgets), len(images), dtype=torch.bool)
        extra = {}
        if target.any():
            ids = target.nonzero().flatten()
            ok[:, target], extra = _run(name, model, images[target], labels[target], ids, budgets, cfg,
                                        num_classes, seed, advance)
        point_ok[name] = ok
        info[name] = dict(extra, over=[attack_key(name, cfg)], seconds=round(time.perf_counter() - t0, 2),
                          cpu_seconds=round(time.process_time() - c0, 2))
    return point_ok, info, {"schedule": "independent"}


def evaluate_robustness(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        cfg: RobustnessConfig, seed: int = 0, slow: torch.Tensor | None = None,
                        advance: Callable[[int], None] = lambda n: None, points: dict | None = None) -> dict:
    """Robust accuracy per attack and budget, and the worst case per point across attacks.

    ``points``, when given, receives the per-point results: "worst" (budgets x N, robust against
    every attack; meaningful where "common") and "after/<attack>" (that attack's own, or in the
    cascade the worst case up to it).

    ``slow`` marks the points that the slow attacks (AutoAttack) run on; the worst case is taken
    over the points every attack ran on. Only clean-correct points are attacked.
    """
    model.eval()
    budgets = [b / 255 for b in cfg.budgets_255]
    n = len(images)
    slow = torch.ones(n, dtype=torch.bool) if slow is None else slow.bool()
    clean_ok = predict(model, images, cfg.batch_size) == labels
    for name in cfg.attacks:  # already wrong: nothing to attack
        advance(int(((slow if name in SLOW else torch.ones(n, dtype=torch.bool)) & ~clean_ok).sum()) * len(budgets))
    run = run_cascade if cfg.schedule == "cascade" else _independent
    t0 = time.perf_counter()
    point_ok, info, schedule = run(model, images, labels, budgets, cfg, num_classes, seed, slow, clean_ok, advance)
    common = torch.ones(n, dtype=torch.bool)
    worst = clean_ok.clone().expand(len(budgets), n).clone()
    attacks, flags = {}, []
    complete = [True] * len(budgets)  # budgets at which every attack ran: the worst case is reported there
    for name, ok in point_ok.items():
        on = slow if name in SLOW else torch.ones(n, dtype=torch.bool)
        common &= on
        key = attack_key(name, cfg)
        runs = cfg.runs_at(name)
        complete = [c and r for c, r in zip(complete, runs)]
        acc = [float(ok[k, on].float().mean()) if runs[k] else None for k in range(len(budgets))]
        attacks[key] = dict(info[name], accuracy=acc, n=int(on.sum()), clean_accuracy=float(clean_ok[on].float().mean()),
                            budgets_255_run=[b for b, r in zip(cfg.budgets_255, runs) if r],
                            per_class=[per_class(ok[k, on], labels[on], num_classes) if runs[k] else None
                                       for k in range(len(budgets))],
                            params=attack_params(name, cfg, num_classes),
                            point_violations=_point_violations(ok, on, budgets, runs))
        flags += [dict(v, attack=key) for v in monotone_violations(budgets, acc)]
        worst &= ok | ~on  # a point an attack did not run on is judged by the others (then dropped below)
    worst_acc = [float(worst[k, common].float().mean()) if complete[k] else None for k in range(len(budgets))]
    flags += [dict(v, attack="worst-case") for v in monotone_violations(budgets, worst_acc)]
    over = [attack_key(a, cfg) for a in point_ok]
    out = {
        "budgets": budgets, "budgets_255": list(cfg.budgets_255), "num_classes": num_classes,
        "clean_accuracy": float(clean_ok.float().mean()), "n": n, **schedule,
        "attack_seconds": round(time.perf_counter() - t0, 2),
        "attacks": attacks,
        "worst_case": {"accuracy": worst_acc, "n": int(common.sum()), "over": over,
                       "per_class": [per_class(worst[k, common], labels[common], num_classes) if complete[k]
                                     else None for k in range(len(budgets))]},
        "monotone_violations": flags,
    }
    if points is not None:
        points.update(worst=worst, common=common, **{f"after/{k}": v for k, v in point_ok.items()})
    fast = [a for a in point_ok if a not in SLOW]  # (names of the attack kinds, not their result keys)
    if fast and len(fast) < len(point_ok) and not (common.all() and all(complete)):
        # the slow attacks ran on a subset of the points or of the budgets: the others' worst case, too
        ok_fast = clean_ok.clone().expand(len(budgets), n).clone()
        for name in fast:
            ok_fast &= point_ok[name]
        out["worst_case_fast"] = {"accuracy": [float(ok_fast[k].float().mean()) for k in range(len(budgets))],
                                  "n": n, "over": [attack_key(a, cfg) for a in fast],
                                  "per_class": [per_class(ok_fast[k], labels, num_classes)
                                                for k in range(len(budgets))]}
    return out


def _point_violations(ok: torch.Tensor, on: torch.Tensor, budgets: list[float], runs: list[bool]) -> int:
    """Points robust at a larger budget but broken at a smaller one (each such pair counted once), over
    the budgets the attack ran at."""
    order = sorted((i for i in range(len(budgets)) if runs[i]), key=lambda i: budgets[i])
    return int(sum(((~ok[i]) & ok[j] & on).sum() for i, j in zip(order, order[1:])))
