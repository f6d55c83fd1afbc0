"""The Python API: the "From Python" page's example (docs/guide/python.md) runs as written, on a tiny world."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import clareps
from clareps.errors import ClarepsError

REPO = Path(__file__).resolve().parents[1]
TINY_DATA = {"kind": "benchmark", "split": "train", "benchmark": {"n_train": 200, "n_test": 50}}


def _tiny_home(home: Path, teacher: str, cache: str) -> None:
    """A CLAREPS_HOME whose presets use the tiny benchmark build and whose shipped teacher is tiny."""
    shutil.copytree(REPO / "configs", home / "configs")
    shutil.copytree(Path(teacher).parent, home / "models" / "teacher-default")
    data = dict(TINY_DATA, cache_dir=cache)
    edits = {
        "bank-default": {"data": data, "shard_size": 20,
                         "clarid": {"t_e": 0.3, "k": 2, "steps": 6, "max_iter": 3, "sampler_precision": "fp32"}},
        "distill-default": {"data": data, "student": {"width": 4}, "batch_size": 30, "bank_batch_size": 8,
                            "loss": {"proj_hidden": 16}, "precision": "fp32", "log_every": 100},
    }
    for name, over in edits.items():
        path = home / "configs" / f"{name}.yaml"
        cfg = yaml.safe_load(path.read_text())
        for key, value in over.items():
            cfg[key] = dict(cfg[key], **value) if isinstance(value, dict) and key != "data" else value
        path.write_text(yaml.safe_dump(cfg))
    ev = yaml.safe_load((home / "configs" / "evaluate-default.yaml").read_text())
    fast = ev["fast"]
    fast["robustness"].update(n_images=10, slow_n_images=5)
    fast["corruptions"].update(types=["contrast"], severities=[1], n_images=10)
    fast["saliency"].update(n_images=5)
    (home / "configs" / "evaluate-default.yaml").write_text(yaml.safe_dump(ev))


def readme_example() -> str:
    text = (REPO / "docs" / "guide" / "python.md").read_text()
    section = text.split("# From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(tmp_path, monkeypatch, tiny_teacher, tiny_data_cache, capsys):
    _tiny_home(tmp_path / "home", tiny_teacher, tiny_data_cache)
    monkeypatch.setenv("CLAREPS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_example(), "docs/guide/python.md", "exec"), scope)
    assert (tmp_path / "runs/py/canonical.png").is_file() and (tmp_path / "runs/py/control.png").is_file()
    samples, control = scope["samples"], scope["control"]
    assert samples.images.shape == (40, 3, 32, 32) and torch.equal(samples.labels, control.labels)
    assert samples.singular_values.shape == (40, 2) and control.singular_values.shape == (40, 0)
    assert not torch.allclose(samples.latents, control.latents)  # the projection changed the latents
    assert len(scope["bank"]) == 50 and scope["student"].is_file()
    assert 0 <= scope["scores"]["summary"]["clean/test-original"] <= 1
    assert "clean accuracy" in capsys.readouterr().out


def test_canonicalize_images_is_the_matched_path(tiny_teacher, tiny_data_cache, monkeypatch, tmp_path):
    from clareps.config import build_config
    from clareps.data.spec import DataSpec, load_data

    teacher = clareps.load_teacher(tiny_teacher, device="cpu")
    train = load_data(build_config(DataSpec, dict(TINY_DATA, cache_dir=tiny_data_cache)))
    out = clareps.canonicalize_images(teacher, train.images[:4], train.labels[:4], t_e=0.3, k=2, steps=6,
                                      max_iter=3, sampler_precision="fp32")
    assert out.images.shape == (4, 3, 32, 32) and out.images.min() >= 0 and out.images.max() <= 1
    assert out.features.shape[0] == 4 and out.singular_values.shape == (4, 2)
    with pytest.raises(ClarepsError, match="one label each"):
        clareps.canonicalize_images(teacher, train.images[:4], train.labels[:3])
    with pytest.raises(ClarepsError, match="unknown config key 'clarid.nope'"):
        clareps.canonical_samples(teacher, per_class=1, nope=1)


# -- the objects: ten canonical samples of class 3 and their control, from any teacher --------------------
SHIPPED = '''
import clareps
teacher = clareps.Teacher.load()
canon = teacher.canonical(labels=[3] * 10, k=4, steps=5, max_iter=2)
control = teacher.canonical(labels=[3] * 10, k=0, steps=5, max_iter=2)
canon.grid("class3.png"); control.grid("control3.png")
'''
DIFFUSERS = '''
import clareps
teacher = clareps.Teacher.load("my-dit")
canon = teacher.canonical(labels=[3] * 10, steps=5, max_iter=2)
control = teacher.canonical(labels=[3] * 10, steps=5, max_iter=2, k=0)
canon.grid("class3.png"); control.grid("control3.png")
'''


@pytest.fixture
def engine_calls(monkeypatch):
    """Every batch the CLARID engine is asked for (canonicalize) and every noise it samples down from."""
    from clareps.clarid import canonical as engine

    calls: dict[str, list] = {"canonicalize": [], "noise": []}
    real_canonicalize, real_random = engine.canonicalize, engine.random_latents

    def canonicalize(model, x_te, labels, cfg, *args, **kwargs):
        calls["canonicalize"].append((labels.cpu().clone(), cfg.k))
        return real_canonicalize(model, x_te, labels, cfg, *args, **kwargs)

    def random_latents(model, labels, cfg, noise):
        calls["noise"].append(noise.cpu().clone())
        return real_random(model, labels, cfg, noise)

    monkeypatch.setattr(engine, "canonicalize", canonicalize)
    monkeypatch.setattr(engine, "random_latents", random_latents)
    return calls


def _ten_of_class_three(snippet: str, calls: dict, size: int) -> None:
    assert len(snippet.strip().splitlines()) <= 6
    scope: dict = {}
    exec(compile(snippet, "snippet", "exec"), scope)
    canon, control = scope["canon"], scope["control"]
    # the engine was asked for the ten items of class 3 and nothing else, once with k and once without
    assert [(labels.tolist(), k) for labels, k in calls["canonicalize"]] == [([3] * 10, canon.settings["k"]),
                                                                              ([3] * 10, 0)]
    assert canon.settings["k"] > 0 and torch.equal(calls["noise"][0], calls["noise"][1])  # the same noise
    assert canon.images.shape == control.images.shape == (10, 3, size, size)
    assert 0 <= canon.images.min() and canon.images.max() <= 1 and canon.labels.tolist() == [3] * 10
    assert canon.singular_values.shape == (10, canon.settings["k"]) and control.singular_values.shape == (10, 0)
    assert not torch.allclose(canon.latents, control.latents)  # the projection moved the latents
    assert Path("class3.png").is_file() and Path("control3.png").is_file()


def test_ten_canonical_samples_of_class_three_from_the_shipped_teacher(tmp_path, monkeypatch, engine_calls):
    monkeypatch.chdir(tmp_path)
    _ten_of_class_three(SHIPPED, engine_calls, 32)


def test_ten_canonical_samples_of_class_three_from_a_diffusers_dit(tmp_path, monkeypatch, engine_calls):
    pytest.importorskip("diffusers")
    from tiny_diffusers import write_dit

    write_dit(tmp_path / "my-dit")
    monkeypatch.chdir(tmp_path)
    _ten_of_class_three(DIFFUSERS, engine_calls, 8)


def test_presets_by_teacher_kind_and_typed_overrides(tmp_path):
    pytest.importorskip("diffusers")
    from clareps.config import read_yaml
    from clareps.paths import preset
    from tiny_diffusers import write_dit, write_unet2d

    teachers = {"clareps": clareps.Teacher.load(device="cpu"),
                "unet2d": clareps.Teacher.load(write_unet2d(tmp_path / "unet"), device="cpu"),
                "dit": clareps.Teacher.load(f"diffusers:{write_dit(tmp_path / 'dit')}", device="cpu")}
    for (kind, teacher), name in zip(teachers.items(), ("bank-default", "cifar10-diffusers-bank", "imagenet-dit-bank")):
        assert teacher.kind == kind
        assert teacher.clarid.model_dump() == dict(clareps.ClaridConfig().model_dump(),
                                                   **read_yaml(preset(name))["clarid"])
    assert teachers["clareps"].clarid.steps == 25 and teachers["dit"].clarid.steps == 50
    cfg = teachers["dit"].settings(k=0, steps=7)
    assert isinstance(cfg, clareps.ClaridConfig) and (cfg.k, cfg.steps, cfg.tol) == (0, 7, 1e-3)
    assert teachers["dit"].settings(teachers["clareps"].clarid, k=2).steps == 25  # a settings object as the base
    with pytest.raises(ClarepsError, match="unknown config key 'clarid.nope'"):
        teachers["dit"].canonical(labels=[3], nope=1)
    with pytest.raises(ClarepsError, match="bad value for 'clarid.steps'"):
        teachers["dit"].canonical(labels=[3], steps="many")
    with pytest.raises(ClarepsError, match="exceeds the teacher's latent dimension 64"):
        teachers["dit"].canonical(labels=[3], k=65)
    with pytest.raises(ClarepsError, match="class 5 is out of range: this teacher has classes 0..4"):
        teachers["dit"].canonical(labels=[3, 5])
    with pytest.raises(ClarepsError, match="labels= is required"):
        teachers["dit"].canonical()
    with pytest.raises(ClarepsError, match="non-empty list of class ids"):
        teachers["dit"].sample([])


def test_canonical_from_images_save_load_and_sample(tmp_path):
    pytest.importorskip("diffusers")
    from tiny_diffusers import write_unet2d

    teacher = clareps.Teacher.load(write_unet2d(tmp_path / "unet"), device="cpu")
    images = torch.rand(3, 3, 8, 8)
    out = teacher.canonical(labels=[1, 2, 3], images=images, k=2, steps=5, max_iter=2)
    assert out.meta["source"] == "images" and out.images.shape == (3, 3, 8, 8)
    path = out.save(tmp_path / "c.safetensors")
    back = clareps.Canonical.load(path)
    assert torch.equal(back.images, out.images) and torch.equal(back.singular_values, out.singular_values)
    assert back.settings == out.settings and back.settings["k"] == 2
    with pytest.raises(ClarepsError, match=r"images must be \(N, 3, 8, 8\)"):
        teacher.canonical(labels=[1], images=torch.rand(1, 3, 16, 16))
    a, b = teacher.sample([0, 4], steps=3, seed=1), teacher.sample([0, 4], steps=3, seed=1)
    assert a.shape == (2, 3, 8, 8) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ClarepsError, match=r"more than the teacher's T = 1000"):  # refused before sampling
        teacher.sample([0], steps=1001)


def test_a_diffusers_folder_without_diffusers_names_the_extra(tmp_path, monkeypatch):
    import sys

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"_class_name": "DiTTransformer2DModel"}')
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if it were not installed
    with pytest.raises(ClarepsError, match=r"needs diffusers: pip install -e '\.\[diffusers\]'"):
        clareps.Teacher.load(tmp_path / "m")


def test_evaluation_fields_from_results():
    results = {"mode": "fast", "summary": {"clean/test-original": 0.9, "clean/test-only-fg": 0.8, "bg/gap": 0.05,
                                           "robust/pgd@2/255": 0.4, "robust/worst@2/255": 0.3, "corr/mean": 0.7,
                                           "saliency/gradcam": 0.6}}
    ev = clareps.Evaluation.from_results(results)
    assert (ev.clean_accuracy, ev.background_gap, ev.corruption_accuracy, ev.mce) == (0.9, 0.05, 0.7, None)
    assert ev.accuracy == {"test-original": 0.9, "test-only-fg": 0.8} and ev.robust_accuracy == {"2/255": 0.3}
    assert ev.saliency_fg_share == {"gradcam": 0.6}
    assert "| clean/test-original | 0.9" in ev.to_markdown()


def test_bank_objects_build_load_compare(tmp_path, monkeypatch, tiny_teacher, tiny_data_cache, tiny_judge,
                                         tiny_mask_judge):
    _tiny_home(tmp_path / "home", tiny_teacher, tiny_data_cache)
    monkeypatch.setenv("CLAREPS_HOME", str(tmp_path / "home"))
    with pytest.raises(ClarepsError, match="unknown config key 'clarid.nope'"):
        clareps.Bank.build(tmp_path / "bad", per_class=1, clarid={"nope": 1})
    assert not (tmp_path / "bad").exists()
    canon = clareps.Bank.build(tmp_path / "canonical", per_class=1, source="matched", clarid={"k": 2})
    control = clareps.Bank.build(tmp_path / "control", per_class=1, source="matched", kind="control")
    assert len(canon) == 10 and canon.meta["k"] == 2 and control.meta["k"] == 0
    again = clareps.Bank.load(tmp_path / "canonical")
    assert torch.equal(again.features, canon.features) and again.path == tmp_path / "canonical"
    same = clareps.Bank.build(tmp_path / "canonical", per_class=1, source="matched", **{"clarid.k": 2})
    assert torch.equal(same.images, canon.images)  # dotted and nested keys are the same setting: reused
    cmp = canon.compare(control, judge=tiny_judge, mask_judge=tiny_mask_judge)
    assert {r["measure"] for r in cmp.rows} >= {"class_correct", "bg_change"} and cmp.banks[1] == tmp_path / "control"
    assert cmp.to_markdown().startswith("reference:")
