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
