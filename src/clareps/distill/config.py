"""The distillation config: the student, the loss terms' variants and weights, the KD teacher, the
optimiser, augmentation and the run's budget (``configs/distill-default.yaml`` documents each key)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from clareps.config import NULL_IS_A_NAME, Seed, StrictModel, renamed
from clareps.data.spec import DataSpec
from clareps.device import Precision


# How long or where a run goes, and file paths (their content is hashed instead): not in the hash.
RUN_CONTROL_KEYS = ("stop_at", "ckpt_every", "log_every", "device", "bank", "expect_teacher", "test_splits",
                    "test_data")


class StudentConfig(StrictModel):
    name: str = "small-cnn"
    width: int | None = Field(32, ge=1)  # None: the family's default
    feature_path: str | None = None  # None: the student's own ``feature_path``


class LossWeights(StrictModel):
    """The weight of each CaDistill term, named as the terms print (``L = 1 ce + 0.5 cano + 0.3 align + 0.3 cka``)."""
    cano: float = Field(0.5, ge=0)  # prototype cross-entropy of the real batch's projected features
    align: float = Field(0.3, ge=0)  # the canonical items' projected features against the teacher's
    cka: float = Field(0.3, ge=0)  # CKA between the student's and the teacher's features of the canonical batch


# the keys the weights had before they were named as the terms print
RENAMED_LOSS_KEYS = {"lambda_cano": "weights.cano", "lambda_align": "weights.align", "lambda_dist": "weights.cka"}


def recorded_before(plain: dict) -> dict:
    """A plain distill config as run folders made before the rename record it (``loss.lambda_*``): the
    hash of that form finds those runs, so a finished one is reused and a partial one resumed."""
    loss = dict(plain["loss"])
    weights = loss.pop("weights")
    return dict(plain, loss={**{old: weights[new.split(".")[1]] for old, new in RENAMED_LOSS_KEYS.items()}, **loss})


def recorded_now(record: dict) -> dict:
    """A run folder's record with ``loss.lambda_*`` read as ``loss.weights.*`` (to say what differs)."""
    loss = dict(record.get("loss") or {})
    old = {key: loss.pop(key) for key in RENAMED_LOSS_KEYS if key in loss}
    if not old:
        return record
    weights = {RENAMED_LOSS_KEYS[key].split(".")[1]: value for key, value in old.items()}
    return dict(record, loss={"weights": weights, **loss})


class LossConfig(StrictModel):
    weights: LossWeights = Field(default_factory=LossWeights)
    temperature: float = Field(0.1, gt=0)
    align: Literal["cosine", "mse"] = "cosine"
    cka: Literal["biased", "unbiased"] = "biased"
    proj_hidden: int = Field(256, ge=0)  # 0: a single linear map
    teacher_pool: Literal["none", "mean"] = "none"
    teacher_norm: Literal["center", "none"] = "center"
    head: Literal["mlp", "linear"] = "mlp"  # the projection into the teacher's space (mlp: proj_hidden units)
    align_on: Literal["pooled", "spatial"] = "pooled"  # spatial: the student's last map, resized, vs the tap's map
    ce_on_bank: bool = False  # canonical images also enter the cross-entropy, with their classes
    scale: float = Field(1.0, ge=0)  # a common factor on the three weights
    # the canonical features the terms aim at: as the bank's `clarid.feature_label` read them (bank), or
    # read with the items' class or the null class (a bank keeps both)
    target_label: Annotated[Literal["bank", "class", "null"], NULL_IS_A_NAME] = "bank"

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        return renamed(data, RENAMED_LOSS_KEYS, "loss")


class KDConfig(StrictModel):
    teacher: str | None = None  # a classifier from `clareps train-kd-teacher`
    alpha: float = Field(0.9, ge=0, le=1)
    temperature: float = Field(4.0, gt=0)
    # how `clareps train-kd-teacher` trains it (same data and validation carve-out as the students)
    teacher_arch: str = "small-cnn"
    teacher_width: int = Field(64, ge=1)
    teacher_epochs: int = Field(15, ge=1)
    teacher_lr: float = Field(2.0e-3, gt=0)


class OptimConfig(StrictModel):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)


class AugmentConfig(StrictModel):
    crop_pad: int = Field(2, ge=0)  # random crop after reflect padding by this many pixels; 0: none
    flip: bool = True
    bank: bool = False  # augment the bank's images too (their target features stay as they are)


class DistillConfig(StrictModel):
    method: str = "cadistill"
    seed: Seed = 0
    data: DataSpec = Field(default_factory=DataSpec)
    # splits of ``data`` scored once, at the end (data without splits, e.g. npz: [] and test_data instead)
    test_splits: list[str] = Field(default_factory=lambda: ["test-original"])
    test_data: dict[str, str] = Field(default_factory=dict)  # name -> npz test file, scored once, at the end
    val_fraction: float = Field(0.1, ge=0, lt=1)
    val_seed: Seed = 0
    student: StudentConfig = Field(default_factory=StudentConfig)
    bank: str | None = None
    bank_fraction: float | None = Field(None, gt=0, le=1)  # None: the whole bank
    bank_source: Literal["random", "matched"] | None = None  # None: whichever the bank holds
    expect_teacher: str | None = None  # the teacher hash the bank must record
    bank_batch_size: int = Field(16, ge=1)
    loss: LossConfig = Field(default_factory=LossConfig)
    kd: KDConfig = Field(default_factory=KDConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # of the cross-entropy, every method alike
    precision: Precision = "auto"
    ckpt_every: int = Field(0, ge=0)  # steps between checkpoints besides each epoch's end; 0: epoch ends only
    log_every: int = Field(20, ge=1)
    stop_at: int | None = Field(None, ge=0)  # stop (resumably) after this many steps
    device: str = "auto"
