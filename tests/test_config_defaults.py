"""One source of defaults: every field a shipped ``*-default.yaml`` sets equals the default of the
pydantic model that validates it, so a config built in Python and one read from the preset agree.
Presets for other teachers, data or budgets (``cifar10-*``, ``imagenet-*``, ``demo-tiny``, the other
sections of ``evaluate-default`` and ``demo-default``) are settings over these defaults and may differ."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from clareps.bank.build import BankConfig
from clareps.classifiers.mask_judge import MaskJudgeConfig
from clareps.classifiers.shape_judge import JudgeConfig
from clareps.config import build_config, read_yaml
from clareps.data.benchmark import BenchmarkConfig
from clareps.demo.spec import DemoConfig
from clareps.diffusion.train import TeacherConfig
from clareps.distill.config import DistillConfig
from clareps.evaluate.suite import EvalConfig
from clareps.paths import preset

# preset -> (its section that is the model's default, or None for the whole file; the model)
PAIRS = {
    "bank-default": (None, BankConfig),
    "data-default": (None, BenchmarkConfig),
    "demo-default": ("full", DemoConfig),  # `full`: the stage presets as shipped; `demo` cuts them to fit
    "distill-default": (None, DistillConfig),
    "evaluate-default": ("full", EvalConfig),  # the default mode; `standard`, `fast`, `demo` are budgets
    "judge-default": (None, JudgeConfig),
    "mask-judge-default": (None, MaskJudgeConfig),
    "teacher-default": (None, TeacherConfig),
}
MISSING = object()


def disagreements(default: object, given: BaseModel, data: dict, prefix: str = "") -> list[str]:
    """'key: model D, preset P' for every key of ``data`` (as read into ``given``) where ``default``
    (the model's default instance, or the part of it under ``prefix``) says otherwise. A key the model
    requires has no default and cannot disagree."""
    out = []
    for key, value in data.items():
        have, want = getattr(default, key, MISSING), getattr(given, key)
        if isinstance(value, dict) and isinstance(want, BaseModel) and isinstance(have, BaseModel | type(MISSING)):
            out += disagreements(have, want, value, f"{prefix}{key}.")
        elif have is not MISSING and _plain(have) != _plain(want):
            out.append(f"{prefix}{key}: model {_plain(have)!r}, preset {_plain(want)!r}")
    return out


def _plain(value):
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def test_every_default_preset_is_paired_with_its_model():
    shipped = {p.stem for p in Path(preset("bank-default")).parent.glob("*-default.yaml")}
    assert shipped == set(PAIRS), "pair each *-default.yaml with the model that validates it in PAIRS"


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_model_defaults_equal_the_default_preset(name):
    section, model = PAIRS[name]
    data = read_yaml(preset(name))
    data = data[section] if section else data
    given = build_config(model, data, name)
    assert disagreements(model.model_construct(), given, data) == []


def test_the_check_sees_a_disagreement():
    data = {"loss": {"weights": {"cka": 0.7}}, "epochs": 3}
    given = build_config(DistillConfig, data)
    assert disagreements(DistillConfig.model_construct(), given, data) == [
        "loss.weights.cka: model 0.3, preset 0.7", "epochs: model 10, preset 3"]
