"""One override path: ``key=value`` strings (CLI ``--set``, sweeps) and dicts of typed values (the API's
keywords, the demo's sections) go through ``config.override`` and give the same config."""

from __future__ import annotations

import pytest

from clareps.clarid.canonical import ClaridConfig
from clareps.config import build_config, override
from clareps.distill.config import DistillConfig
from clareps.errors import ClarepsError


def test_strings_and_typed_values_give_the_same_config():
    base = {"epochs": 10, "loss": {"weights": {"cano": 0.5, "align": 0.3}, "temperature": 0.1}, "kd": None}
    given = override(base, ["loss.weights.align=1", "loss={temperature: 0.3}", "kd.alpha=0.5", "test_splits=[]"])
    typed = override(base, {"loss.weights.align": 1, "loss": {"temperature": 0.3}, "kd": {"alpha": 0.5},
                            "test_splits": []})
    assert given == typed == {"epochs": 10, "kd": {"alpha": 0.5}, "test_splits": [],
                              "loss": {"weights": {"cano": 0.5, "align": 1}, "temperature": 0.3}}
    assert base["loss"]["weights"]["align"] == 0.3  # the base is left as it was
    assert override({}, {"clarid": ClaridConfig(k=2)})["clarid"]["k"] == 2  # a settings model, as its dump
    assert override({"a": "x"}, ["a=not: [yaml"]) == {"a": "not: [yaml"}  # not YAML: the string itself


@pytest.mark.parametrize("settings, match", [
    (["epochs"], "override 'epochs' must look like key=value"),
    (["loss..cka=1"], "names no key"),
    ({"epochs.x": 1}, "setting 'epochs.x': 'epochs' is not a section"),
    (["epochs.x=1"], "setting 'epochs.x': 'epochs' is not a section"),
])
def test_a_bad_setting_is_a_one_line_error(settings, match):
    with pytest.raises(ClarepsError, match=match):
        override({"epochs": 10}, settings)


def test_an_unknown_key_names_the_closest_known_one():
    with pytest.raises(ClarepsError, match=r"^command line: unknown config key 'loss.weights.alig' "
                                           r"\(did you mean 'loss.weights.align'\?\)$"):
        build_config(DistillConfig, override({}, ["loss.weights.alig=1"]), "x.yaml", ["loss.weights.alig=1"])
    with pytest.raises(ClarepsError, match=r"^x.yaml: unknown config key 'zzz'$"):  # nothing close: no guess
        build_config(DistillConfig, {"zzz": 1}, "x.yaml")
