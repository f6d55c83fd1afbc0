"""Adversarial robustness with torchattacks: PGD-L-inf, CW-L2, APGD-CE and AutoAttack over L-inf budgets.

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
"""

from __future__ import annotations

import time
from typing import Annotated, Callable, Literal

import torch
from pydantic import Field
from torch import nn

from clareps.config import StrictModel
from clareps.errors import ClarepsError
from clareps.classifiers.training import predict

ATTACKS = ("pgd", "cw", "apgd-ce", "autoattack")
SLOW = ("autoattack",)  # attacks that run on the (smaller) slow subset
AA_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
AttackName = Literal["pgd", "cw", "apgd-ce", "autoattack"]


class RobustnessConfig(StrictModel):
    attacks: list[AttackName] = Field(default_factory=lambda: list(ATTACKS))
    budgets_255: list[Annotated[float, Field(ge=0, le=255)]] = \
        Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])  # L-inf, in units of 1/255
    n_images: int | None = Field(1000, ge=1)  # None: the whole test set (balanced per class otherwise)
    slow_n_images: int | None = Field(200, ge=1)  # AutoAttack's subset, nested in the one above
    pgd_steps: int = Field(20, ge=1)
    pgd_alpha: float = Field(2.5, gt=0)  # step size = pgd_alpha * eps / pgd_steps (Madry et al.)
    cw_steps: int = Field(100, ge=1)
    cw_c: float = Field(1.0, gt=0)
    cw_lr: float = Field(0.01, gt=0)
    apgd_steps: int = Field(100, ge=1)
    aa_attacks: list[Literal["apgd-ce", "apgd-t", "fab-t", "square"]] = \
        Field(default_factory=lambda: list(AA_STANDARD), min_length=1)  # all four: AutoAttack "standard"
    aa_steps: int = Field(100, ge=1)  # APGD-CE, APGD-T and FAB-T iterations inside AutoAttack
    aa_square_queries: int = Field(5000, ge=1)
    batch_size: int = Field(250, ge=1)


def _torchattacks():
    try:
        import torchattacks
    except ImportError:
        raise ClarepsError("torchattacks is not installed: pip install --no-deps torchattacks==3.5.1 "
                           "(without --no-deps it pulls torchvision and replaces torch)") from None
    return torchattacks


def make_attack(name: str, model: nn.Module, eps: float, cfg: RobustnessConfig, n_classes: int, seed: int):
    """A torchattacks attack at L-inf budget ``eps`` (ignored by CW)."""
    ta = _torchattacks()
    if name == "pgd":
        return ta.PGD(model, eps=eps, alpha=cfg.pgd_alpha * eps / cfg.pgd_steps, steps=cfg.pgd_steps,
                      random_start=True)
    if name == "cw":
        return ta.CW(model, c=cfg.cw_c, kappa=0, steps=cfg.cw_steps, lr=cfg.cw_lr)
    if name == "apgd-ce":
        return ta.APGD(model, norm="Linf", eps=eps, steps=cfg.apgd_steps, n_restarts=1, seed=seed, loss="ce")
    if name == "autoattack":
        # AutoAttack "standard", built from torchattacks' parts so that the iteration counts are
        # the reference's (torchattacks.AutoAttack keeps their defaults of 10); n_classes sets the
        # number of target classes of APGD-T and FAB-T. Each part attacks only the points that the
        # parts before it left robust.
        s = dict(norm="Linf", eps=eps, seed=seed)
        parts = {
            "apgd-ce": lambda: ta.APGD(model, steps=cfg.aa_steps, loss="ce", n_restarts=1, **s),
            "apgd-t": lambda: ta.APGDT(model, steps=cfg.aa_steps, n_classes=n_classes, n_restarts=1, **s),
            "fab-t": lambda: ta.FAB(model, steps=cfg.aa_steps, multi_targeted=True, n_classes=n_classes,
                                    n_restarts=1, **s),
            "square": lambda: ta.Square(model, n_queries=cfg.aa_square_queries, n_restarts=1, **s)}
        chosen = [parts[p]() for p in cfg.aa_attacks]
        return chosen[0] if len(chosen) == 1 else ta.MultiAttack(chosen)
    raise ClarepsError(f"unknown attack {name!r} (known: {', '.join(ATTACKS)})")


def attack_params(name: str, cfg: RobustnessConfig, n_classes: int) -> dict:
    if name == "pgd":
        return {"norm": "Linf", "steps": cfg.pgd_steps, "step_size": f"{cfg.pgd_alpha} * eps / steps",
                "random_start": True}
    if name == "cw":
        return {"norm": "L2", "steps": cfg.cw_steps, "c": cfg.cw_c, "lr": cfg.cw_lr, "kappa": 0,
                "scored_at_budget": "perturbation clipped into the L-inf ball"}
    if name == "apgd-ce":
        return {"norm": "Linf", "steps": cfg.apgd_steps, "restarts": 1, "loss": "ce"}
    standard = tuple(cfg.aa_attacks) == AA_STANDARD and cfg.aa_steps == 100 and cfg.aa_square_queries == 5000
    return {"norm": "Linf", "version": "standard" if standard else "custom", "attacks": list(cfg.aa_attacks),
            "steps": cfg.aa_steps, "square_queries": cfg.aa_square_queries, "n_classes": n_classes}


def per_class(correct: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Accuracy of each class (None for a class with no image)."""
    out = []
    for c in range(num_classes):
        sel = labels == c
        out.append(float(correct[sel].float().mean()) if sel.any() else None)
    return out


def monotone_violations(budgets: list[float], accuracy: list[float]) -> list[dict]:
    """Consecutive budget pairs where the larger budget has the higher robust accuracy."""
    order = sorted(range(len(budgets)), key=lambda i: budgets[i])
    return [{"from_eps": budgets[i], "to_eps": budgets[j], "increase": accuracy[j] - accuracy[i]}
            for i, j in zip(order, order[1:]) if accuracy[j] > accuracy[i]]


def _run(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, budgets: list[float],
         cfg: RobustnessConfig, n_classes: int, seed: int, advance: Callable[[int], None]) -> tuple[torch.Tensor, dict]:
    """Per-point correctness under attack ``name``, shape (len(budgets), N), and diagnostics."""
    device = next(model.parameters()).device
    ok = torch.zeros(len(budgets), len(x), dtype=torch.bool)
    max_excess, l2 = 0.0, []
    bs = cfg.batch_size
    if name == "cw":  # budget-free: one run, then clipped into each ball
        for start in range(0, len(x), bs):
            xb, yb = x[start:start + bs].to(device), y[start:start + bs].to(device)
            adv = make_attack(name, model, 0.0, cfg, n_classes, seed)(xb, yb).detach()
            delta = adv - xb
            fooled = predict(model, adv, bs) != yb.cpu()
            l2 += delta.flatten(1).norm(dim=1).cpu()[fooled].tolist()
            for k, eps in enumerate(budgets):
                clipped = (xb + delta.clamp(-eps, eps)).clamp(0, 1)
                ok[k, start:start + bs] = predict(model, clipped, bs) == yb.cpu()
            advance(len(xb) * len(budgets))
        l2.sort()
        return ok, {"median_l2_of_successes": l2[len(l2) // 2] if l2 else None, "successes": len(l2)}
    non_finite = 0
    for k, eps in enumerate(budgets):
        for start in range(0, len(x), bs):
            xb, yb = x[start:start + bs].to(device), y[start:start + bs].to(device)
            torch.manual_seed(seed + start)  # PGD's random start draws from the global generator
            adv = make_attack(name, model, eps, cfg, n_classes, seed + start)(xb, yb).detach()
            bad = ~torch.isfinite(adv).flatten(1).all(1)
            non_finite += int(bad.sum())
            adv[bad] = xb[bad]
            # an example outside the threat model would overstate the attack: clip it back, and say so
            max_excess = max(max_excess, float((adv - xb).abs().max()) - eps)
            adv = (xb + (adv - xb).clamp(-eps, eps)).clamp(0, 1)
            ok[k, start:start + bs] = predict(model, adv, bs) == yb.cpu()
            advance(len(xb))
    return ok, {"max_linf_excess_clipped": max(0.0, max_excess), "non_finite_replaced": non_finite}


def evaluate_robustness(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        cfg: RobustnessConfig, seed: int = 0, slow: torch.Tensor | None = None,
                        advance: Callable[[int], None] = lambda n: None) -> dict:
    """Robust accuracy per attack and budget, and the worst case per point across attacks.

    ``slow`` marks the points that the slow attacks (AutoAttack) run on; the worst case is taken
    over the points every attack ran on. Only clean-correct points are attacked.
    """
    model.eval()
    budgets = [b / 255 for b in cfg.budgets_255]
    n = len(images)
    slow = torch.ones(n, dtype=torch.bool) if slow is None else slow.bool()
    clean_ok = predict(model, images, cfg.batch_size) == labels
    common = torch.ones(n, dtype=torch.bool)
    worst = clean_ok.clone().expand(len(budgets), n).clone()
    attacks, flags, point_ok = {}, [], {}
    for name in cfg.attacks:
        on = slow if name in SLOW else torch.ones(n, dtype=torch.bool)
        common &= on
        target = on & clean_ok
        advance(int((on & ~clean_ok).sum()) * len(budgets))  # already wrong: nothing to attack
        t0 = time.perf_counter()
        ok = torch.zeros(len(budgets), n, dtype=torch.bool)
        extra = {}
        if target.any():
            ok_t, extra = _run(name, model, images[target], labels[target], budgets, cfg, num_classes, seed, advance)
            ok[:, target] = ok_t
        acc = [float(ok[k, on].float().mean()) for k in range(len(budgets))]
        attacks[name] = dict(extra, accuracy=acc, n=int(on.sum()), clean_accuracy=float(clean_ok[on].float().mean()),
                             per_class=[per_class(ok[k, on], labels[on], num_classes) for k in range(len(budgets))],
                             params=attack_params(name, cfg, num_classes),
                             seconds=round(time.perf_counter() - t0, 2),
                             point_violations=_point_violations(ok, on, budgets))
        flags += [dict(v, attack=name) for v in monotone_violations(budgets, acc)]
        point_ok[name] = ok
        worst &= ok | ~on  # a point an attack did not run on is judged by the others (then dropped below)
    worst_acc = [float(worst[k, common].float().mean()) for k in range(len(budgets))]
    flags += [dict(v, attack="worst-case") for v in monotone_violations(budgets, worst_acc)]
    out = {
        "budgets": budgets, "budgets_255": list(cfg.budgets_255), "num_classes": num_classes,
        "clean_accuracy": float(clean_ok.float().mean()), "n": n,
        "attacks": attacks,
        "worst_case": {"accuracy": worst_acc, "n": int(common.sum()), "over": list(cfg.attacks),
                       "per_class": [per_class(worst[k, common], labels[common], num_classes)
                                     for k in range(len(budgets))]},
        "monotone_violations": flags,
    }
    fast = [a for a in cfg.attacks if a not in SLOW]
    if fast and len(fast) < len(cfg.attacks) and not common.all():
        # the slow attacks ran on a subset: the worst case of the others on every point, too
        ok_fast = clean_ok.clone().expand(len(budgets), n).clone()
        for name in fast:
            ok_fast &= point_ok[name]
        out["worst_case_fast"] = {"accuracy": [float(ok_fast[k].float().mean()) for k in range(len(budgets))],
                                  "n": n, "over": fast,
                                  "per_class": [per_class(ok_fast[k], labels, num_classes)
                                                for k in range(len(budgets))]}
    return out


def _point_violations(ok: torch.Tensor, on: torch.Tensor, budgets: list[float]) -> int:
    """Points robust at a larger budget but broken at a smaller one (each such pair counted once)."""
    order = sorted(range(len(budgets)), key=lambda i: budgets[i])
    return int(sum(((~ok[i]) & ok[j] & on).sum() for i, j in zip(order, order[1:])))
