"""The reference shape judge: a classifier trained with no spurious background cue.

It is trained on the training foregrounds composed on random backgrounds
(``train-rand``) and scored on ``test-mixed-rand``; it judges whether a generated
image shows an animal of the intended class.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from clareps.config import to_plain
from clareps.data.spec import DataSpec, data_fingerprint, load_data
from clareps.device import resolve_device, resolve_precision
from clareps.classifiers.checkpoint import load_classifier, save_classifier
from clareps.classifiers.students import make_student
from clareps.classifiers.training import ClassifierRecipe, accuracy, train_classifier, write_timing


class JudgeConfig(ClassifierRecipe):
    data: DataSpec = Field(default_factory=lambda: DataSpec(split="train-rand"))
    eval_split: str = "test-mixed-rand"


def train_judge(cfg: JudgeConfig, out: str | Path, quiet: bool = False) -> tuple[Path, dict]:
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    train = load_data(cfg.data)
    test = load_data(cfg.data, cfg.eval_split)
    torch.manual_seed(cfg.seed)  # the initial weights too: the same config gives the same judge
    model = make_student(cfg.arch, train.num_classes, width=cfg.width)
    t0 = time.time()
    train_classifier(model, train, cfg.epochs, cfg.batch_size, cfg.lr, seed=cfg.seed,
                     precision=precision, device=device, quiet=quiet)
    seconds = time.time() - t0
    metrics = {f"accuracy/{cfg.eval_split}": accuracy(model, test), "n_eval": len(test),
               "device": str(device), "precision": precision}
    meta = {"arch": cfg.arch, "width": cfg.width, "num_classes": train.num_classes,
            "config": to_plain(cfg), "metrics": metrics,
            "data_fingerprint": data_fingerprint(cfg.data)}
    path = save_classifier(Path(out) / "judge.safetensors", model.cpu(), meta)
    write_timing(path.parent, seconds, device, cfg.precision)  # beside the file: the same config, the same bytes
    return path, dict(metrics, train_seconds=seconds)


def load_judge(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    return load_classifier(path, device)
