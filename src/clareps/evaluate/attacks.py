"""The attacks of the robustness evaluation: their settings, one constructor, and one batched runner.

PGD is our own (L-inf, random start, Madry et al.'s step): its random start is drawn per point from
the point's index, and it keeps the first iterate that fools the model (torchattacks' PGD returns
the last one). CW and APGD-CE come from torchattacks; AutoAttack from the reference implementation
(pyautoattack) or from torchattacks' parts. Their random draws, and CW's early stop, are made per
point (per_point.py), so every attack meets a point the same way whichever other points share its
batch: the cascade, which attacks only the survivors, sees each point exactly as the old order does.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from clareps.config import StrictModel
from clareps.errors import ClarepsError
from clareps.classifiers.training import predict
from clareps.evaluate.per_point import per_point

ATTACKS = ("pgd", "cw", "apgd-ce", "autoattack")  # also the cascade's order: cheapest per point first
SLOW = ("autoattack",)  # attacks that run on the (smaller) slow subset
AA_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
AttackName = Literal["pgd", "cw", "apgd-ce", "autoattack"]


class RobustnessConfig(StrictModel):
    attacks: list[AttackName] = Field(default_factory=lambda: list(ATTACKS))
    budgets_255: list[Annotated[float, Field(ge=0, le=255)]] = \
        Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])  # L-inf, in units of 1/255
    # cascade: budgets ascending, each attack only on the points still robust (see cascade.py);
    # independent: every attack on every clean-correct point at every budget (the old order)
    schedule: Literal["cascade", "independent"] = "cascade"
    n_images: int | None = Field(1000, ge=1)  # None: the whole test set (balanced per class otherwise)
    slow_n_images: int | None = Field(500, ge=1)  # AutoAttack's subset, nested in the one above
    # the budgets the slow attacks (AutoAttack) run at; null: every budget. Elsewhere the worst case
    # lacks them, so it is not reported there (the fast attacks' worst case on every point still is)
    slow_budgets_255: list[float] | None = None
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
    # torchattacks: the four parts from torchattacks; reference: pyautoattack (Croce & Hein's code).
    # Which is faster and stronger here is measured by benchmarks/autoattack_compare.py (issue 17).
    aa_implementation: Literal["reference", "torchattacks"] = "torchattacks"
    batch_size: int = Field(250, ge=1)

    @model_validator(mode="after")
    def _slow_budgets_among_budgets(self):
        extra = [b for b in self.slow_budgets_255 or [] if b not in self.budgets_255]
        if extra:
            raise ValueError(f"slow_budgets_255 {extra} not among budgets_255 {self.budgets_255}")
        return self

    def runs_at(self, name: str) -> list[bool]:
        """Per budget (in the order of budgets_255), whether attack ``name`` runs there."""
        if name not in SLOW or self.slow_budgets_255 is None:
            return [True] * len(self.budgets_255)
        return [b in self.slow_budgets_255 for b in self.budgets_255]


def aa_is_standard(cfg: RobustnessConfig) -> bool:
    return tuple(cfg.aa_attacks) == AA_STANDARD and cfg.aa_steps == 100 and cfg.aa_square_queries == 5000


def attack_key(name: str, cfg: RobustnessConfig) -> str:
    """The name an attack's results go under: an AutoAttack with fewer parts, steps or queries than
    the standard version is a reduced AutoAttack and is never called "autoattack"."""
    return "autoattack-reduced" if name == "autoattack" and not aa_is_standard(cfg) else name


def _torchattacks():
    try:
        import torchattacks
    except ImportError:
        raise ClarepsError("torchattacks is not installed: pip install --no-deps torchattacks==3.5.1 "
                           "(without --no-deps it pulls torchvision and replaces torch)") from None
    return torchattacks


class ReferenceAutoAttack:
    """The reference AutoAttack (pyautoattack 0.2): "standard" as published, or the parts, steps
    and queries of the config (one restart each) as its "custom" version."""

    def __init__(self, model: nn.Module, eps: float, cfg: RobustnessConfig, n_classes: int, seed: int):
        try:
            from pyautoattack import AutoAttack
        except ImportError:
            raise ClarepsError("pyautoattack is not installed: pip install --no-deps pyautoattack==0.2 "
                               "(or set robustness.aa_implementation=torchattacks)") from None
        device = next(model.parameters()).device
        standard = aa_is_standard(cfg)
        aa = AutoAttack(model, eps=eps, norm="Linf", seed=seed, device=device,
                        version="standard" if standard else "custom",
                        attacks=None if standard else list(cfg.aa_attacks))
        aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = min(9, n_classes - 1)
        if not standard:
            aa.apgd.n_iter = aa.apgd_targeted.n_iter = aa.fab.n_iter = cfg.aa_steps
            aa.apgd.n_restarts = aa.apgd_targeted.n_restarts = aa.fab.n_restarts = 1
            aa.square.n_queries = cfg.aa_square_queries
        aa.verbose = False
        for part, salt in ((aa.apgd, "apgd-ce"), (aa.apgd_targeted, "apgd-t"), (aa.fab, "fab-t"),
                           (aa.square, "square")):
            per_point(part, seed, f"autoattack/{salt}")
        self.aa, self.batch_size = aa, cfg.batch_size

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.aa.run_standard_evaluation(x, y, batch_size=self.batch_size)[0]


def uniform_start(seed: int, point_ids: torch.Tensor, shape: tuple) -> torch.Tensor:
    """Per-point noise in [-1, 1], a function of (seed, point index) only."""
    return torch.stack([torch.rand(shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(i)))
                        for i in point_ids]) * 2 - 1 if len(point_ids) else torch.empty(0, *shape)


class LinfPGD:
    """PGD-L-inf from ``x + eps * start`` (start per point in [-1, 1]); keeps each point's first
    fooling iterate and stops attacking it there."""

    def __init__(self, model: nn.Module, eps: float, steps: int, alpha: float):
        self.model, self.eps, self.steps, self.step = model, eps, steps, alpha * eps / steps

    def __call__(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        adv = (x + self.eps * start.to(x.device)).clamp(0, 1)
        active = torch.arange(len(x), device=x.device)
        for it in range(self.steps + 1):
            a = adv[active].clone().requires_grad_(True)
            with torch.enable_grad():
                logits = self.model(a)
                robust = logits.argmax(1) == y[active]
                if not robust.any():
                    break
                grad, = torch.autograd.grad(F.cross_entropy(logits, y[active], reduction="sum"), a)
            active, a, grad = active[robust], a[robust].detach(), grad[robust]
            if it == self.steps:
                break  # the last iterate has been scored
            xs = x[active]
            adv[active] = (xs + (a + self.step * grad.sign() - xs).clamp(-self.eps, self.eps)).clamp(0, 1)
        return adv


def make_attack(name: str, model: nn.Module, eps: float, cfg: RobustnessConfig, n_classes: int, seed: int):
    """An attack at L-inf budget ``eps`` (ignored by CW): called as ``attack(x, y)``, or for PGD
    ``attack(x, y, start)``."""
    if name == "pgd":
        return LinfPGD(model, eps, cfg.pgd_steps, cfg.pgd_alpha)
    ta = _torchattacks()
    if name == "cw":
        return per_point(ta.CW(model, c=cfg.cw_c, kappa=0, steps=cfg.cw_steps, lr=cfg.cw_lr), seed, "cw")
    if name == "apgd-ce":
        return per_point(ta.APGD(model, norm="Linf", eps=eps, steps=cfg.apgd_steps, n_restarts=1, seed=seed,
                                 loss="ce"), seed, "apgd-ce")
    if name == "autoattack" and cfg.aa_implementation == "reference":
        return ReferenceAutoAttack(model, eps, cfg, n_classes, seed)
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
        chosen = [per_point(parts[p](), seed, f"autoattack/{p}") for p in cfg.aa_attacks]
        return chosen[0] if len(chosen) == 1 else ta.MultiAttack(chosen)
    raise ClarepsError(f"unknown attack {name!r} (known: {', '.join(ATTACKS)})")


def attack_params(name: str, cfg: RobustnessConfig, n_classes: int) -> dict:
    if name == "pgd":
        return {"norm": "Linf", "steps": cfg.pgd_steps, "step_size": f"{cfg.pgd_alpha} * eps / steps",
                "random_start": "uniform, drawn per point index", "returns": "first fooling iterate"}
    if name == "cw":
        return {"norm": "L2", "steps": cfg.cw_steps, "c": cfg.cw_c, "lr": cfg.cw_lr, "kappa": 0,
                "scored_at_budget": "perturbation clipped into the L-inf ball", "early_stop": "per point"}
    if name == "apgd-ce":
        return {"norm": "Linf", "steps": cfg.apgd_steps, "restarts": 1, "loss": "ce",
                "random_start": "drawn per point (seed, attack, image)"}
    return {"norm": "Linf", "version": "standard" if aa_is_standard(cfg) else "reduced",
            "attacks": list(cfg.aa_attacks), "steps": cfg.aa_steps, "square_queries": cfg.aa_square_queries,
            "n_classes": n_classes, "random_draws": "per point (seed, attack, image)",
            "implementation": "pyautoattack 0.2" if cfg.aa_implementation == "reference"
            else "torchattacks 3.5.1 parts"}


def attack_points(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, eps: float,
                  cfg: RobustnessConfig, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Attack points ``x`` (indices ``ids`` in the evaluation set) at L-inf budget ``eps``:
    the examples clipped into the ball, whether each is still classified correctly, diagnostics."""
    device = next(model.parameters()).device
    bs = cfg.batch_size
    advs, ok, non_finite, max_excess = [], [], 0, 0.0
    for start in range(0, len(x), bs):
        xb, yb = x[start:start + bs].to(device), y[start:start + bs].to(device)
        attack = make_attack(name, model, eps, cfg, n_classes, seed)  # (its draws are per point)
        if name == "pgd":
            adv = attack(xb, yb, uniform_start(seed, ids[start:start + bs], tuple(xb.shape[1:])))
        else:
            adv = attack(xb, yb)
        adv = adv.detach()
        bad = ~torch.isfinite(adv).flatten(1).all(1)
        non_finite += int(bad.sum())
        adv[bad] = xb[bad]
        # an example outside the threat model would overstate the attack: clip it back, and say so
        max_excess = max(max_excess, float((adv - xb).abs().max()) - eps)
        adv = (xb + (adv - xb).clamp(-eps, eps)).clamp(0, 1)
        advs.append(adv.cpu())
        ok.append(predict(model, adv, bs) == yb.cpu())
    empty = torch.empty(0, *x.shape[1:])
    return (torch.cat(advs) if advs else empty, torch.cat(ok) if ok else torch.empty(0, dtype=torch.bool),
            {"max_linf_excess_clipped": max(0.0, max_excess), "non_finite_replaced": non_finite})


def cw_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: RobustnessConfig, n_classes: int,
           seed: int) -> tuple[torch.Tensor, list[float]]:
    """CW-L2 perturbations of ``x`` (budget-free) and the L2 norms of those that fool the model."""
    device = next(model.parameters()).device
    deltas, l2 = [], []
    for start in range(0, len(x), cfg.batch_size):
        xb, yb = x[start:start + cfg.batch_size].to(device), y[start:start + cfg.batch_size].to(device)
        delta = (make_attack("cw", model, 0.0, cfg, n_classes, seed)(xb, yb).detach() - xb).cpu()
        fooled = predict(model, xb + delta.to(device), cfg.batch_size) != yb.cpu()
        l2 += delta.flatten(1).norm(dim=1)[fooled].tolist()
        deltas.append(delta)
    return (torch.cat(deltas) if deltas else torch.empty(0, *x.shape[1:])), sorted(l2)


def cw_at_budget(model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, eps: float,
                 batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CW's perturbations clipped into the L-inf ball of ``eps``: the examples and whether each is
    still classified correctly."""
    adv = (x + delta.clamp(-eps, eps)).clamp(0, 1)
    return adv, predict(model, adv, batch_size) == y
