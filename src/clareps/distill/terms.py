"""A method's loss as a table of named, weighted terms with one signature: ``term(step) -> scalar``.

``terms_for`` builds a method's table from its config; the trainer fills a ``StepTensors`` per
step, sums ``weight * term`` in the table's order and logs every term's value; ``formula``
prints the sum, e.g. ``L = 1 ce + 0.5 cano + 0.3 align + 0.3 cka``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from clareps.distill import losses
from clareps.distill.methods import Method


@dataclass
class StepTensors:
    """What a training step computed; each term reads the fields it needs (float32)."""
    logits: torch.Tensor  # (b, classes): the real batch
    labels: torch.Tensor  # (b,)
    bank_logits: torch.Tensor | None = None  # (m, classes): this rank's canonical items
    bank_labels: torch.Tensor | None = None
    z_real: torch.Tensor | None = None  # projected student features of the real batch (teacher space)
    z_bank: torch.Tensor | None = None  # ... and of the canonical items
    targets: torch.Tensor | None = None  # the teacher's canonical features of those items
    prototypes: torch.Tensor | None = None  # (classes, D): mean canonical feature per class
    feats_bank_all: torch.Tensor | None = None  # student features of the whole canonical batch (all ranks)
    targets_all: torch.Tensor | None = None  # the teacher's features of the whole canonical batch
    teacher_logits: torch.Tensor | None = None  # a KD classifier's logits of the real batch


Term = Callable[[StepTensors], torch.Tensor]


@dataclass(frozen=True)
class WeightedTerm:
    name: str
    weight: float
    term: Term


def ce(s: StepTensors, on_bank: bool = False, label_smoothing: float = 0.0) -> torch.Tensor:
    logits, labels = s.logits, s.labels
    if on_bank and s.bank_logits is not None:
        logits, labels = torch.cat([logits, s.bank_logits]), torch.cat([labels, s.bank_labels])
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def cano(s: StepTensors, temperature: float) -> torch.Tensor:
    return losses.cano_loss(s.z_real, s.prototypes, s.labels, temperature)


def align(s: StepTensors, kind: str) -> torch.Tensor:
    return losses.align_loss(s.z_bank, s.targets, kind)


def cka(s: StepTensors, estimator: str) -> torch.Tensor:
    # CKA is not a mean over items: every rank scores the whole canonical batch
    return losses.cka_loss(s.feats_bank_all, s.targets_all, estimator)


def kd(s: StepTensors, temperature: float) -> torch.Tensor:
    return losses.kd_loss(s.logits, s.teacher_logits, temperature)


def terms_for(method: Method, loss, kd_cfg, label_smoothing: float = 0.0) -> list[WeightedTerm]:
    """The table of ``method``: the cross-entropy (over the bank's images too for a method that reads them
    as data; ``label_smoothing`` for every method alike), then its terms in the registry's order: logit KD
    weighted by ``kd.alpha`` (the cross-entropy by 1 - alpha), or the CaDistill terms each weighted by
    ``loss.scale * loss.weights.<term>``."""
    ce_term = partial(ce, on_bank=loss.ce_on_bank or method.bank_ce, label_smoothing=label_smoothing)
    if method.kd:
        return [WeightedTerm("ce", 1 - kd_cfg.alpha, ce_term),
                WeightedTerm("kd", kd_cfg.alpha, partial(kd, temperature=kd_cfg.temperature))]
    made = {"cano": partial(cano, temperature=loss.temperature), "align": partial(align, kind=loss.align),
            "cka": partial(cka, estimator=loss.cka)}
    weight = {name: loss.scale * getattr(loss.weights, name) for name in made}
    return [WeightedTerm("ce", 1.0, ce_term)] + [WeightedTerm(name, weight[name], made[name]) for name in method.terms]


def total(table: list[WeightedTerm], step: StepTensors) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted sum in the table's order, and every term's (unweighted) value."""
    values = {t.name: t.term(step) for t in table}
    loss = table[0].weight * values[table[0].name]
    for t in table[1:]:
        loss = loss + t.weight * values[t.name]
    return loss, values


def formula(table: list[WeightedTerm]) -> str:
    return "L = " + " + ".join(f"{t.weight:g} {t.name}" for t in table)
