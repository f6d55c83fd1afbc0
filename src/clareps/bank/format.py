"""The canonical bank on disk: what CLARID hands to distillation.

A bank folder holds ``bank.safetensors`` (tensors below), ``bank.json`` (metadata:
kind, config and its hash, teacher and data fingerprints, feature tap and shape, class
names) and ``timing.json`` (per-item wall-clock seconds: kept out of the tensors so that the
same config gives the same bank bytes, whatever the machine's speed or a resumption). The same
format carries the guidance-only control bank (k = 0) and the ``feat-real`` bank (real images
with the teacher's features of their inversion).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from clareps.errors import ClarepsError
from clareps.io import load_tensors, read_json, save_tensors, write_json

BANK_KIND = "clareps-bank"
BANK_FILE = "bank.safetensors"
TIMING_FILE = "timing.json"
RECORD = ("engine_iterations", "engine_converged", "engine_energy", "engine_max_angle", "removed_share",
          "removed_directions", "removal_scale")


@dataclass
class Bank:
    images: torch.Tensor  # (N, C, H, W) float in [0, 1]: canonical samples (or real images)
    features: torch.Tensor  # (N, D) float32: canonical features f(x~) at the tap
    labels: torch.Tensor  # (N,) int64
    source_index: torch.Tensor  # (N,) int64: training-set index, or -1 for random-per-class items
    latents: torch.Tensor  # (N, C, H, W) float32: projected latents x~ at t_e
    singular_values: torch.Tensor  # (N, k) float32 (k may be 0)
    seconds: torch.Tensor  # (N,) float32: compute time per item (in timing.json; NaN when unknown)
    meta: dict = field(default_factory=dict)
    # Per item, deterministic (clarid/directions.py ``engine_record``): engine iterations, converged,
    # energy ||J V||_F^2, largest principal angle between its last two iterates, removed share of
    # ||x_te||, directions removed and the projection's scale. Empty for banks built before it existed.
    record: dict[str, torch.Tensor] = field(default_factory=dict)
    # (N, D): the same items' features read with the other label (the null class when `features` read
    # the class, and the reverse), for the students' `loss.target_label`. None in older banks.
    other_features: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        for name in ("images", "features", "source_index", "latents", "singular_values", "seconds"):
            value = getattr(self, name)
            if value.shape[0] != n:
                raise ClarepsError(f"bank tensor '{name}' has {value.shape[0]} rows, labels have {n}")
        for name, value in self.record.items():
            if name not in RECORD or value.shape != (n,):
                raise ClarepsError(f"bank record '{name}' is not one of {RECORD} with shape ({n},)")
        if self.features.dim() != 2:
            raise ClarepsError(f"bank features must be (N, D), got shape {tuple(self.features.shape)}")
        if self.other_features is not None and self.other_features.shape != self.features.shape:
            raise ClarepsError(f"bank other_features have shape {tuple(self.other_features.shape)}, "
                               f"features {tuple(self.features.shape)}")

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]

    @property
    def feature_label(self) -> str:
        """The label `features` were read with: the items' class, or the null class."""
        return self.meta.get("config", {}).get("clarid", {}).get("feature_label", "class")

    def read_with(self, label: str) -> Bank:
        """This bank with its features read with ``label`` ("class" or "null")."""
        if label == self.feature_label:
            return self
        if self.other_features is None:
            raise ClarepsError(f"this bank holds features read with the {self.feature_label} label only (built "
                               f"before banks kept both): rebuild it to read them with the {label} label")
        return replace(self, features=self.other_features, other_features=self.features,
                       meta=dict(self.meta, features_read_with=label))

    def prototypes(self, num_classes: int) -> torch.Tensor:
        """Mean canonical feature per class, (num_classes, D); a class with no item is an error."""
        counts = torch.bincount(self.labels, minlength=num_classes)
        if (counts == 0).any():
            raise ClarepsError(f"bank has no item of class {int((counts == 0).nonzero()[0])}")
        sums = torch.zeros(num_classes, self.feature_dim).index_add_(0, self.labels, self.features.float())
        return sums / counts[:, None]


_TENSORS = ("images", "features", "labels", "source_index", "latents", "singular_values")


def save_bank(folder: str | Path, bank: Bank, timing: dict | None = None) -> Path:
    """timing.json first (with ``timing``'s extra entries), then the tensors: bank.json, written
    last, marks a complete bank."""
    seconds = [float(s) for s in bank.seconds]
    write_json(Path(folder) / TIMING_FILE, dict(timing or {}, item_seconds=seconds, items=len(seconds),
                                                total_item_seconds=sum(seconds)))
    tensors = {name: getattr(bank, name) for name in _TENSORS} | bank.record
    if bank.other_features is not None:
        tensors["other_features"] = bank.other_features
    return save_tensors(Path(folder) / BANK_FILE, tensors, dict(bank.meta, kind=BANK_KIND))


def _item_seconds(folder: Path, tensors: dict, n: int) -> torch.Tensor:
    if "seconds" in tensors:  # banks written before timing.json kept them among the tensors
        return tensors["seconds"]
    side = folder / TIMING_FILE
    seconds = read_json(side).get("item_seconds") if side.exists() else None
    if not seconds or len(seconds) != n:
        return torch.full((n,), float("nan"))
    return torch.tensor(seconds, dtype=torch.float32)


def load_bank(folder: str | Path) -> Bank:
    path = Path(folder) / BANK_FILE
    if not path.exists():
        raise ClarepsError(f"no bank at {folder} (missing {BANK_FILE}; build it with `clareps bank build`)")
    tensors, meta = load_tensors(path)
    if meta.get("kind") != BANK_KIND:
        raise ClarepsError(f"{path} is not a clareps bank (kind={meta.get('kind')!r})")
    missing = [name for name in _TENSORS if name not in tensors]
    if missing:
        raise ClarepsError(f"bank {path} lacks tensor '{missing[0]}'")
    seconds = _item_seconds(Path(folder), tensors, tensors["labels"].shape[0])
    return Bank(**{name: tensors[name] for name in _TENSORS}, seconds=seconds, meta=meta,
                record={name: tensors[name] for name in RECORD if name in tensors},
                other_features=tensors.get("other_features"))
