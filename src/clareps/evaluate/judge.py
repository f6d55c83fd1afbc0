"""The reference shape judge: a classifier trained with no spurious background cue.

It is trained on the training foregrounds composed on random backgrounds
(``train-rand``) and scored on ``test-mixed-rand``; it judges whether a generated
image shows an animal of the intended class.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field
from torch import nn

from clareps.config import to_plain
from clareps.data.spec import DataSpec, data_fingerprint, load_data
from clareps.device import resolve_device, resolve_precision
from clareps.diffusion.checkpoint import load_state
from clareps.distill.students import make_student
from clareps.errors import ClarepsError
from clareps.evaluate.classifier import ClassifierRecipe, accuracy, train_classifier
from clareps.io import load_tensors, save_tensors

JUDGE_KIND = "clareps-classifier"


class JudgeConfig(ClassifierRecipe):
    data: DataSpec = Field(default_factory=lambda: DataSpec(split="train-rand"))
    eval_split: str = "test-mixed-rand"


def train_judge(cfg: JudgeConfig, out: str | Path, quiet: bool = False) -> tuple[Path, dict]:
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    train = load_data(cfg.data)
    test = load_data(cfg.data, cfg.eval_split)
    model = make_student(cfg.arch, train.num_classes, width=cfg.width)
    t0 = time.time()
    train_classifier(model, train, cfg.epochs, cfg.batch_size, cfg.lr, seed=cfg.seed,
                     precision=precision, device=device, quiet=quiet)
    metrics = {f"accuracy/{cfg.eval_split}": accuracy(model, test), "n_eval": len(test),
               "train_seconds": time.time() - t0, "device": str(device), "precision": precision}
    meta = {"kind": JUDGE_KIND, "arch": cfg.arch, "width": cfg.width, "num_classes": train.num_classes,
            "config": to_plain(cfg), "metrics": metrics,
            "data_fingerprint": data_fingerprint(cfg.data)}
    path = save_tensors(Path(out) / "judge.safetensors", model.cpu().state_dict(), meta)
    return path, metrics


def load_judge(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    tensors, meta = load_tensors(path)
    if meta.get("kind") != JUDGE_KIND:
        raise ClarepsError(f"{path} is not a clareps classifier checkpoint (kind={meta.get('kind')!r})")
    model = make_student(meta["arch"], meta["num_classes"], width=meta["width"])
    load_state(model, tensors, str(path))
    return model.to(device).eval(), meta
