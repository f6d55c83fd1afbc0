"""A demo config (``configs/demo-*.yaml``, ``configs/study-*.yaml``) has one or more sections: ``demo``
(what ``clareps demo`` runs), optionally ``full`` (``--full``) and any other (``--section NAME``). A
section names the data, the teacher and overrides of the stage presets; whatever it does not
override is the stage preset as shipped."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from clareps.config import Seed, StrictModel, build_config, override, read_yaml
from clareps.data.spec import DataSpec
from clareps.distill.methods import DEMO_METHODS, METHODS
from clareps.errors import ClarepsError

MethodLabel = Literal[tuple(METHODS)]


class VariantSpec(StrictModel):
    """A method label of its own: the method ``of`` (its bank too) with ``distill`` overrides, e.g. a loss
    variant a sweep picked, run beside the preset (``cadistill-spatial: {distill: {loss: {align_on: spatial}}}``)."""
    of: MethodLabel = "cadistill"
    distill: dict = Field(default_factory=dict)  # overrides of the run's distill config, this method only


class TeacherSpec(StrictModel):
    path: Optional[str] = None  # a teacher .safetensors; None: the shipped one (models/teacher-default)
    train: Optional[dict] = None  # or train one into RUN/teacher: overrides of configs/teacher-default.yaml


class EvalSpec(StrictModel):
    preset: str = "evaluate-default"
    mode: str = "full"  # the preset's section
    overrides: list[str] = Field(default_factory=list)  # key=value inside that section


class ReportSpec(StrictModel):
    embedding: Literal["auto", "umap", "tsne", "pca"] = "auto"  # auto: UMAP when umap-learn is installed
    per_class: int = Field(8, ge=1)  # images per class in the grids
    overlays: int = Field(6, ge=1)  # test images in the saliency overlays


class DemoConfig(StrictModel):
    out: str  # where the run goes: every section names its own (no default)
    data: DataSpec = Field(default_factory=DataSpec)
    teacher: TeacherSpec = Field(default_factory=TeacherSpec)
    judge: Optional[str] = None  # shape judge for bank metrics; None: models/judge-default
    bank: dict = Field(default_factory=dict)  # overrides of configs/bank-default.yaml (every bank; oracle: the oracle bank's)
    distill_preset: str = "distill-default"  # the students' recipe (distill-fast: a student in ~half a minute)
    distill: dict = Field(default_factory=dict)  # overrides of that preset (kd.teacher_* too)
    # cadistill-matched: the cadistill method on a canonical bank from matched sources (RUN/banks/matched);
    # cadistill-oracle and ce-oracle: CaDistill's losses on, or cross-entropy with, the oracle bank (RUN/banks/oracle)
    methods: list[str] = Field(default_factory=lambda: list(DEMO_METHODS), min_length=1)
    variants: dict[str, VariantSpec] = Field(default_factory=dict)  # more method labels (see VariantSpec)
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    evaluate: EvalSpec = Field(default_factory=EvalSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    device: str = "auto"

    @model_validator(mode="after")
    def _labels(self):
        for name, v in self.variants.items():
            if name in METHODS or not name.startswith(f"{v.of}-"):
                raise ValueError(f"variant {name!r}: name it {v.of}-SOMETHING (not a built-in method label)")
        unknown = [m for m in self.methods if m not in METHODS and m not in self.variants]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}: one of {sorted(METHODS)} or a name in variants")
        if len(set(self.methods)) < len(self.methods):
            raise ValueError("a method is listed twice")
        return self

    def base_method(self, label: str) -> str:
        """The built-in method label behind ``label`` (itself unless it is a variant)."""
        return self.variants[label].of if label in self.variants else label


def load_demo_config(path: str | Path, section: str, overrides: list[str] | None = None) -> DemoConfig:
    data = read_yaml(path)
    if section not in data:
        raise ClarepsError(f"{path} has no '{section}' section (it has: {', '.join(data) or 'none'})")
    return build_config(DemoConfig, override(data[section] or {}, overrides or []), f"{path} [{section}]",
                        overrides or [])
