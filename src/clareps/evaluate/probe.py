"""Did distillation move the student toward the teacher's canonical features? Linear CKA between a
student's penultimate features and a bank's canonical features, on the bank's images.

Use a bank the student never trained on (another seed: ``bank build --set seed=1``), and the control
bank beside it: a method that learned the canonical geometry scores higher on the canonical bank
than ``ce`` does, and than on the control bank.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clareps.bank.format import load_bank
from clareps.taps import tap
from clareps.measures import linear_cka
from clareps.errors import ClarepsError
from clareps.evaluate.suite import load_student, resolve_student


@torch.no_grad()
def student_features(model: torch.nn.Module, feature_path: str, images: torch.Tensor,
                     batch_size: int = 250) -> torch.Tensor:
    out = []
    for i in range(0, len(images), batch_size):
        with tap(model, feature_path) as store:
            model(images[i:i + batch_size])
        f = store["out"].float()
        out.append(f.mean((2, 3)) if f.dim() == 4 else f.flatten(1))
    return torch.cat(out)


def probe(student: str | Path, banks: dict[str, str | Path]) -> dict:
    """CKA (unbiased; and with the teacher's map mean-pooled over space) per named bank, and whether
    each bank is the one the student trained on (then the number is not held out)."""
    path = resolve_student(student)
    model, meta = load_student(path)
    trained_on = (meta.get("inputs") or {}).get("bank")
    out = {"student": str(path), "method": meta.get("method"), "banks": {}}
    for name, folder in banks.items():
        bank = load_bank(folder)
        if bank.meta.get("data_fingerprint") != meta.get("data_fingerprint"):
            raise ClarepsError(f"bank {folder} was built on other data than student {path} was trained on")
        if len(bank) < 4:
            raise ClarepsError(f"bank {folder} has {len(bank)} items; the unbiased CKA needs at least 4")
        s = student_features(model, meta["feature_path"], bank.images.float())
        t = bank.features.float()
        shape = bank.meta.get("feature_shape")
        row = {"items": len(bank), "cka": float(linear_cka(s, t, "unbiased")),
               "held_out": trained_on is None or bank.meta.get("tensors_sha256") != trained_on,
               "bank_kind": bank.meta.get("bank_kind"), "seed": bank.meta.get("config", {}).get("seed")}
        if shape and len(shape) == 3:
            row["cka_pooled"] = float(linear_cka(s, t.view(len(t), shape[0], -1).mean(-1), "unbiased"))
        out["banks"][name] = row
    return out
