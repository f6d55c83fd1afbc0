"""The distillation methods, the validation split, bank checks and the KD classifier teacher.

Every method trains the same student for the same epochs on the same real batches per
seed; they differ only in what is added to the cross-entropy (see ``METHODS``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from clareps.bank.format import Bank
from clareps.config import Seed, to_plain
from clareps.data.imageset import ImageSet
from clareps.data.spec import DataSpec, data_fingerprint, load_data
from clareps.device import resolve_device, resolve_precision
from clareps.classifiers.checkpoint import load_classifier, save_classifier
from clareps.classifiers.students import make_student
from clareps.errors import ClarepsError
from clareps.classifiers.training import ClassifierRecipe, accuracy, train_classifier, write_timing
from clareps.io import hash_file


# the terms a method may add to the cross-entropy: CaDistill's three, weighted by loss.weights.<term>, and
# logit distillation, weighted by kd.alpha
CADISTILL_TERMS = ("cano", "align", "cka")
TERMS = CADISTILL_TERMS + ("kd",)


@dataclass(frozen=True)
class Method:
    """A method label, the one place that describes it: the trainer, the demo, the tables and the report
    read this registry (``METHODS``)."""
    name: str  # --method, a student's run folder (<name>-s<seed>), a table's column
    bank_kind: str | None  # the bank kind it reads (bank meta 'bank_kind'); None: no bank
    terms: tuple[str, ...]  # what it adds to the cross-entropy (``TERMS``)
    about: str
    label: str  # its name in the report
    order: int  # its place in tables and plots (the registry's order is that of the paired comparisons)
    # in the paired comparisons (evaluate/paired.py): CaDistill on the random-source and on the matched-source
    # bank, and where a run has them on the oracle bank, against ce, control, cadistill and ce-oracle (against
    # which the oracle CaDistill is read too: distillation against the oracle bank's images alone)
    role: Literal["baseline", "compared", "both"] | None = None
    demo: bool = False  # in the demo's default set of methods
    color: str = ""  # in the report's figures
    bank_ce: bool = False  # the bank's images enter the cross-entropy as labelled data (no teacher features)
    trains_as: str | None = None  # a label that is not a method of its own: the method it trains as
    run_bank: str | None = None  # the bank it reads in a demo run, RUN/banks/<run_bank> (default: bank_kind)

    @property
    def distill(self) -> bool:
        """It reads the teacher's features of a bank (the CaDistill terms)."""
        return any(t in CADISTILL_TERMS for t in self.terms)

    @property
    def kd(self) -> bool:
        return "kd" in self.terms

    @property
    def bank(self) -> str | None:
        return self.run_bank or self.bank_kind


METHODS = {m.name: m for m in (
    Method("ce", None, (), "cross-entropy only", "ce", 0, "baseline", True, "#7f7f7f"),
    Method("feat-real", "feat-real", CADISTILL_TERMS,
           "the three losses on real images with the teacher's features of their inversion", "feat-real", 1,
           demo=True, color="#1f77b4"),
    Method("control", "control", CADISTILL_TERMS, "CaDistill with the guidance-only bank (k = 0)", "control", 2,
           "baseline", True, "#ff7f0e"),
    Method("kd", None, ("kd",), "logit distillation from a conventional classifier teacher", "kd", 3, demo=True,
           color="#9467bd"),
    Method("cadistill", "canonical", CADISTILL_TERMS, "CaDistill with the canonical bank", "CaDistill", 4, "both", True,
           "#2ca02c"),
    Method("cadistill-matched", "canonical", CADISTILL_TERMS, "CaDistill with a canonical bank from matched sources",
           "CaDistill from matched sources", 5, "compared", color="#17becf", trains_as="cadistill",
           run_bank="matched"),
    Method("cadistill-oracle", "oracle", CADISTILL_TERMS,
           "CaDistill's losses on the oracle bank (backgrounds replaced using the true masks)",
           "CaDistill on the oracle bank", 7, "compared", color="#e377c2"),
    Method("ce-oracle", "oracle", (),
           "cross-entropy on the training images and the oracle bank's images as labelled data (no teacher)",
           "Cross-entropy with the oracle bank's images", 6, "both", color="#8c564b", bank_ce=True),
)}
DEMO_METHODS = [m.name for m in METHODS.values() if m.demo]  # the demo's default set
BASELINES = tuple(m.name for m in METHODS.values() if m.role in ("baseline", "both"))
COMPARED = tuple(m.name for m in METHODS.values() if m.role in ("compared", "both"))


def method_rank(name: str) -> tuple:
    """Table and plot order: the registry's methods by ``order``, then any other label (a variant) by name."""
    return (METHODS[name].order if name in METHODS else len(METHODS), name)


def get_method(name: str) -> Method:
    """The method the trainer runs (a label that trains as another, e.g. cadistill-matched, is refused)."""
    trainable = [m for m in METHODS if METHODS[m].trains_as is None]
    if name not in trainable:
        why = f"'{name}' trains as {METHODS[name].trains_as}" if name in METHODS else f"unknown method '{name}'"
        raise ClarepsError(f"{why} (known: {', '.join(trainable)})")
    return METHODS[name]


def carve_validation(data: ImageSet, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation indices: ``fraction`` of each class, drawn with ``seed``."""
    if not 0 <= fraction < 1:
        raise ClarepsError(f"val_fraction must lie in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    labels = data.labels.numpy()
    val = []
    for c in range(data.num_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        val.append(members[:int(round(fraction * len(members)))])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(data)), val_idx)
    return torch.from_numpy(train_idx).long(), torch.from_numpy(val_idx).long()


# -- the bank ---------------------------------------------------------------------------------

def _same_hash(a: str, b: str) -> bool:
    """Hashes may be stored full or truncated (io.hash_file keeps 16 hex digits)."""
    a, b = str(a).lower(), str(b).lower()
    return len(a) >= 8 and len(b) >= 8 and (a.startswith(b) or b.startswith(a))


def check_bank(method: Method, bank: Bank | None, where: str, data: ImageSet, data_fp: str,
               expect_teacher: str | None = None, source: str | None = None) -> None:
    """Refuse, on one line, a bank that does not belong to this method, data or teacher."""
    if method.bank_kind is None:
        if bank is not None:
            raise ClarepsError(f"method {method.name} uses no bank; drop --bank")
        return
    if bank is None:
        raise ClarepsError(f"method {method.name} needs a {method.bank_kind} bank: pass --bank DIR")
    meta = bank.meta
    kind = meta.get("bank_kind")
    if kind != method.bank_kind:
        raise ClarepsError(f"method {method.name} needs a {method.bank_kind} bank; {where} is a "
                           f"{kind or 'unlabelled'} bank (meta 'bank_kind')")
    if method.bank_kind in ("canonical", "control", "oracle"):
        k = meta.get("k")
        if not isinstance(k, int) or (k > 0) != (method.bank_kind == "canonical"):
            want = "k > 0" if method.bank_kind == "canonical" else "k = 0"
            raise ClarepsError(f"method {method.name} needs a bank with {want}; {where} has k={k!r}")
    if "data_fingerprint" not in meta:
        raise ClarepsError(f"bank {where} records no data_fingerprint; cannot tell which data it was built on")
    if meta["data_fingerprint"] != data_fp:
        raise ClarepsError(f"bank {where} was built on other data (fingerprint {meta['data_fingerprint']}, "
                           f"this training set is {data_fp})")
    if expect_teacher is not None and not _same_hash(meta.get("teacher_sha256", ""), expect_teacher):
        raise ClarepsError(f"bank {where} was built with teacher {meta.get('teacher_sha256')!r}, "
                           f"expected {expect_teacher}")
    if source is not None and meta.get("source") != source:
        raise ClarepsError(f"bank {where} has source {meta.get('source')!r}, the config asks for {source!r}")
    if "feature_dim" in meta and int(meta["feature_dim"]) != bank.feature_dim:
        raise ClarepsError(f"bank {where} is inconsistent: meta feature_dim {meta['feature_dim']}, "
                           f"features have {bank.feature_dim} columns")
    if tuple(bank.images.shape[1:]) != tuple(data.images.shape[1:]):
        raise ClarepsError(f"bank {where} holds images of shape {tuple(bank.images.shape[1:])}, the "
                           f"training images are {tuple(data.images.shape[1:])}")
    if len(bank) and (bank.labels.min() < 0 or bank.labels.max() >= data.num_classes):
        raise ClarepsError(f"bank {where} has labels outside [0, {data.num_classes})")
    if meta.get("class_names") not in (None, list(data.class_names)):
        raise ClarepsError(f"bank {where} names other classes than the training data")
    if not torch.isfinite(bank.features).all():
        raise ClarepsError(f"bank {where} has non-finite features")
    if method.bank_kind == "feat-real":
        src = bank.source_index
        if len(src) and (src.min() < 0 or src.max() >= len(data)):
            raise ClarepsError(f"feat-real bank {where} has source_index outside the training set")
        if not torch.allclose(bank.images.float(), data.images[src], atol=1e-3):
            raise ClarepsError(f"feat-real bank {where}: its images are not the training images at source_index")


def select_bank(bank: Bank, val_idx: torch.Tensor, fraction: float | None, n_train: int, seed: int) -> Bank:
    """Drop items made from validation images, then keep ``fraction * n_train`` items if asked."""
    keep = ~torch.isin(bank.source_index, val_idx)
    if fraction is not None:
        want = int(round(fraction * n_train))
        have = int(keep.sum())
        if have < want:
            raise ClarepsError(f"bank_fraction {fraction} asks for {want} bank items; the bank has {have} "
                               "usable ones (items made from validation images are left out)")
        pick = keep.nonzero().flatten()
        pick = pick[torch.randperm(len(pick), generator=torch.Generator().manual_seed(seed))[:want]]
        keep = torch.zeros_like(keep).index_fill_(0, pick, True)
    names = ("images", "features", "labels", "source_index", "latents", "singular_values", "seconds")
    return Bank(**{n: getattr(bank, n)[keep] for n in names}, meta=dict(bank.meta))


def teacher_targets(bank: Bank, num_classes: int, pool: str, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The bank's features and class prototypes as distillation targets: pooled, then normalised.

    ``pool="mean"`` averages a (C, H, W) tap over space (meta 'feature_shape'). ``norm="center"``
    subtracts the bank mean and divides by one overall RMS, so cosine scores see the
    class-specific part rather than a shared offset, while the geometry (what CKA sees) stays.
    """
    feats, protos = bank.features.float(), bank.prototypes(num_classes)
    if pool == "mean":
        shape = bank.meta.get("feature_shape")
        if not shape or len(shape) != 3 or int(np.prod(shape)) != bank.feature_dim:
            raise ClarepsError(f"teacher_pool=mean needs bank meta 'feature_shape' (C, H, W) with C*H*W = "
                               f"{bank.feature_dim}, got {shape!r}")
        feats, protos = (t.view(len(t), shape[0], -1).mean(-1) for t in (feats, protos))
    if norm == "center":
        mean = feats.mean(0, keepdim=True)
        scale = (feats - mean).pow(2).sum(1).mean().sqrt().clamp_min(1e-8)
        feats, protos = (feats - mean) / scale, (protos - mean) / scale
    return feats, protos


# -- the KD teacher: a conventional classifier trained on the same training split --------------

class KDTeacherConfig(ClassifierRecipe):
    data: DataSpec = Field(default_factory=DataSpec)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    val_seed: Seed = 0
    width: int = Field(64, ge=1)
    epochs: int = Field(15, ge=1)

    @classmethod
    def from_distill(cls, cfg) -> KDTeacherConfig:
        """The KD teacher a distillation config asks for: same data, carve-out, batch and precision."""
        kd = cfg.kd
        return cls(data=cfg.data, val_fraction=cfg.val_fraction, val_seed=cfg.val_seed, arch=kd.teacher_arch,
                   width=kd.teacher_width, epochs=kd.teacher_epochs, batch_size=cfg.batch_size, lr=kd.teacher_lr,
                   precision=cfg.precision, device=cfg.device)


def train_kd_teacher(cfg: KDTeacherConfig, out: str | Path, quiet: bool = False) -> tuple[Path, dict]:
    """Train the classifier teacher on the training split minus the validation carve-out."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    full = load_data(cfg.data)
    train_idx, val_idx = carve_validation(full, cfg.val_fraction, cfg.val_seed)
    train, val = full.subset(train_idx), full.subset(val_idx)
    torch.manual_seed(cfg.seed)
    model = make_student(cfg.arch, full.num_classes, width=cfg.width, in_channels=full.images.shape[1])
    t0 = time.time()
    train_classifier(model, train, cfg.epochs, cfg.batch_size, cfg.lr, seed=cfg.seed,
                     precision=precision, device=device, quiet=quiet)
    seconds = time.time() - t0
    metrics = {"val_acc": accuracy(model, val) if len(val) else None, "precision": precision}
    meta = {"role": "kd-teacher", "arch": cfg.arch, "width": cfg.width,
            "in_channels": full.images.shape[1], "num_classes": full.num_classes, "config": to_plain(cfg),
            "metrics": metrics, "data_fingerprint": data_fingerprint(cfg.data),
            "val_fraction": cfg.val_fraction, "val_seed": cfg.val_seed}
    path = save_classifier(Path(out) / "kd_teacher.safetensors", model.cpu(), meta)
    write_timing(path.parent, seconds, device, cfg.precision)
    return path, dict(metrics, train_seconds=seconds)


def load_kd_teacher(path: str | Path, data_fp: str, val_fraction: float, val_seed: int,
                    device: torch.device) -> tuple[nn.Module, str]:
    """The classifier teacher in eval mode and its file hash; refuses one trained on other data."""
    model, meta = load_classifier(path, device)
    if meta.get("data_fingerprint") != data_fp:
        raise ClarepsError(f"kd teacher {path} was trained on other data (fingerprint "
                           f"{meta.get('data_fingerprint')}, this training set is {data_fp})")
    if (meta.get("val_fraction"), meta.get("val_seed")) != (val_fraction, val_seed):
        raise ClarepsError(f"kd teacher {path} was trained with another validation carve-out "
                           f"(val_fraction/val_seed {meta.get('val_fraction')}/{meta.get('val_seed')})")
    return model, hash_file(path)
