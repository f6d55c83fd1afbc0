"""Property tests over every stage's config schema (issue 18): each bounded number accepts its
documented range and refuses the outside (NaN and infinities too) with a ClarepsError that names the
key; through the CLI, a refused value leaves nothing behind."""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path

import annotated_types as at
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from clareps.bank.build import BankConfig  # noqa: E402
from clareps.config import StrictModel, build_config, override  # noqa: E402
from clareps.demo import DemoConfig  # noqa: E402
from clareps.diffusion.cli import SamplingOptions  # noqa: E402
from clareps.diffusion.train import TeacherConfig  # noqa: E402
from clareps.distill.methods import KDTeacherConfig  # noqa: E402
from clareps.distill.config import DistillConfig  # noqa: E402
from clareps.errors import ClarepsError  # noqa: E402
from clareps.classifiers.mask_judge import MaskJudgeConfig  # noqa: E402
from clareps.classifiers.shape_judge import JudgeConfig  # noqa: E402
from clareps.evaluate.suite import EvalConfig  # noqa: E402

ROOTS = (TeacherConfig, BankConfig, DistillConfig, EvalConfig, JudgeConfig, MaskJudgeConfig, KDTeacherConfig,
         DemoConfig, SamplingOptions)
# Fields whose valid values also depend on another field (their joint rules are checked by validators
# with tests of their own): only the refusal of their own range is tested here.
JOINT = {"base_channels", "groups", "image_size", "n_train", "n_test", "bg_scale_min", "bg_scale_max",
         "size", "fg_margin"}
BIG = 10**6


def _scalar(annotation) -> type | None:
    """int or float for `int`, `float` and their Optional forms; None for anything else."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or \
        typing.get_origin(annotation) is typing.Union else (annotation,)
    kinds = [a for a in args if a is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float) else None


def _model(annotation) -> type | None:
    for a in (annotation, *typing.get_args(annotation)):
        if isinstance(a, type) and issubclass(a, StrictModel):
            return a
    return None


def bounded_fields(cls: type, prefix: tuple = (), seen: set | None = None) -> list[tuple[tuple, type, dict]]:
    """(path, int | float, {"ge": .., "gt": .., "le": .., "lt": ..}) of every bounded number below cls,
    each schema's fields once (``seen``: the schemas already walked, e.g. DataSpec under another root)."""
    seen = set() if seen is None else seen
    if cls in seen:
        return []
    seen.add(cls)
    found = []
    for name, info in cls.model_fields.items():
        key = info.alias or name
        sub = _model(info.annotation)
        if sub is not None:
            found += bounded_fields(sub, prefix + (key,), seen)
            continue
        kind = _scalar(info.annotation)
        bounds = {}
        for m in info.metadata:
            for attr in ("ge", "gt", "le", "lt"):
                if isinstance(m, getattr(at, attr.capitalize())):
                    bounds[attr] = getattr(m, attr)
        if kind is not None and bounds:
            found.append((prefix + (key,), kind, bounds))
    return found


_SEEN: set = set()
FIELDS = [(root, *f) for root in ROOTS for f in bounded_fields(root, seen=_SEEN)]


def nested(path: tuple, value) -> dict:
    out: dict = {}
    node = out
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return out


def base(root: type) -> dict:
    """The fields a root needs besides the one under test (SamplingOptions has no defaults, a demo
    section names its run folder)."""
    if root is DemoConfig:
        return {"out": "runs/x"}
    return {"--per-class": 1, "--w": 1.0, "--steps": 1, "--seed": 0} if root is SamplingOptions else {}


def inside(kind: type, b: dict) -> st.SearchStrategy:
    lo = b.get("ge", b.get("gt", -BIG if kind is int else -1e6))
    hi = b.get("le", b.get("lt", BIG if kind is int else 1e6))
    if kind is int:
        return st.integers(int(lo) + ("gt" in b), int(hi) - ("lt" in b))
    return st.floats(lo, hi, exclude_min="gt" in b, exclude_max="lt" in b, allow_nan=False)


def outside(kind: type, b: dict) -> st.SearchStrategy:
    sides = []
    if "ge" in b or "gt" in b:
        lo = b.get("ge", b.get("gt"))
        sides.append(st.integers(-BIG, int(lo) - ("ge" in b)) if kind is int else
                     st.floats(-1e6, lo, exclude_max="ge" in b) | st.just(-math.inf))
    if "le" in b or "lt" in b:
        hi = b.get("le", b.get("lt"))
        sides.append(st.integers(int(hi) + ("le" in b), max(BIG, int(hi) + BIG)) if kind is int else
                     st.floats(hi, 1e6, exclude_min="le" in b) | st.just(math.inf))
    if kind is float:
        sides.append(st.just(math.nan))
    return st.one_of(sides)


def unbounded(cls: type, prefix: tuple = ()) -> list[str]:
    """Numbers of a schema (and the schemas inside it) with no range at all."""
    out = []
    for name, info in cls.model_fields.items():
        sub = _model(info.annotation)
        if sub is not None:
            out += unbounded(sub, prefix + (name,))
        elif _scalar(info.annotation) and not any(isinstance(m, (at.Ge, at.Gt, at.Le, at.Lt)) for m in info.metadata):
            out.append(".".join(prefix + (name,)))
    return out


def test_every_number_of_every_schema_has_a_range():
    assert [f"{root.__name__}.{key}" for root in ROOTS for key in unbounded(root)] == []


def test_the_walk_finds_the_fields_of_issue_18():
    names = {(root.__name__, ".".join(path)) for root, path, _, _ in FIELDS}
    for want in [("TeacherConfig", "batch_size"), ("TeacherConfig", "model.base_channels"), ("TeacherConfig", "T"),
                 ("BankConfig", "clarid.k"), ("BankConfig", "clarid.t_e"), ("DistillConfig", "epochs"),
                 ("DistillConfig", "student.width"), ("SamplingOptions", "--per-class")]:
        assert want in names


@pytest.mark.parametrize("root, path, kind, bounds", FIELDS,
                         ids=[f"{r.__name__}:{'.'.join(p)}" for r, p, _, _ in FIELDS])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_every_bounded_number_accepts_its_range_and_refuses_the_rest(root, path, kind, bounds, data):
    key = ".".join(path)
    if path[-1] not in JOINT:
        good = data.draw(inside(kind, bounds), label="inside")
        build_config(root, override(base(root), nested(path, good)))
    bad = data.draw(outside(kind, bounds), label="outside")
    with pytest.raises(ClarepsError, match=f"bad value for '{key}'"):
        build_config(root, override(base(root), nested(path, bad)))


CLI_FIELDS = [(verb, path, kind, bounds)
              for verb, root in (("train-teacher", TeacherConfig), ("bank build", BankConfig), ("distill", DistillConfig))
              for path, kind, bounds in bounded_fields(root) if path[0] != "data"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_refused_value_leaves_nothing_behind(data, tmp_path, run_cli):
    verb, path, kind, bounds = data.draw(st.sampled_from(CLI_FIELDS), label="field")
    bad = data.draw(outside(kind, bounds), label="value")
    out = Path(tmp_path) / "out"
    code, _, err = run_cli(*verb.split(), "--set", f"{'.'.join(path)}={bad!r}".replace("inf", ".inf")
                           .replace("nan", ".nan"), "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"'{'.'.join(path)}'" in err, err
    assert not out.exists()
