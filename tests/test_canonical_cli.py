"""`clareps canonical`: canonical samples of one class and their control, from any teacher, in one line;
`sample` and `teacher-check` through the same loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from clareps.errors import ClarepsError
from clareps.io import load_tensors

TINY = ["--set", "clarid.steps=5", "--set", "clarid.max_iter=2"]


@pytest.fixture
def asked(monkeypatch):
    """The labels of every batch the engine (canonicalize) is asked for, with its k."""
    from clareps.clarid import canonical as engine

    seen: list = []
    real = engine.canonicalize

    def spy(model, x_te, labels, cfg, *args, **kwargs):
        seen.append((labels.tolist(), cfg.k))
        return real(model, x_te, labels, cfg, *args, **kwargs)

    monkeypatch.setattr(engine, "canonicalize", spy)
    return seen


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    pytest.importorskip("diffusers")
    from tiny_diffusers import write_dit

    return write_dit(tmp_path_factory.mktemp("models") / "my-dit")


def _check_pair(out: Path, n: int, k: int, size: int) -> dict:
    tensors, meta = load_tensors(out / "canonical.safetensors")
    assert tensors["labels"].tolist() == [3] * n
    assert tensors["canonical.images"].shape == tensors["control.images"].shape == (n, 3, size, size)
    assert tensors["canonical.singular_values"].shape == (n, k) and tensors["control.singular_values"].shape == (n, 0)
    assert tensors["canonical.features"].shape[0] == n and not torch.equal(tensors["canonical.latents"],
                                                                           tensors["control.latents"])
    side = json.loads((out / "canonical.json").read_text())
    assert side["canonical"]["settings"]["k"] == k and side["control"]["settings"]["k"] == 0
    assert side["canonical"]["settings"]["steps"] == 5 and side["canonical"]["seed"] == 0
    with Image.open(out / "canonical.png") as png:
        assert png.height < png.width  # two rows (canonical, control) of n
    return side


def test_shipped_teacher_in_one_line(tmp_path, run_cli, asked):
    code, out, err = run_cli("canonical", "--class", 3, "--set", "clarid.k=4", *TINY, "--out", tmp_path / "c3")
    assert code == 0, err
    assert asked == [([3] * 10, 4), ([3] * 10, 0)]  # those ten items only, canonical then control
    side = _check_pair(tmp_path / "c3", 10, 4, 32)
    assert side["canonical"]["teacher_kind"] == "clareps" and side["canonical"]["settings"]["tol"] == 3e-2
    assert "canonical.png" in out


def test_diffusers_dit_in_one_line_same_bytes_twice(dit, tmp_path, run_cli, asked):
    for name in ("a", "b"):
        code, _, err = run_cli("canonical", "--teacher", dit, "--class", 3, *TINY, "--out", tmp_path / name)
        assert code == 0, err
    assert asked == [([3] * 10, 16), ([3] * 10, 0)] * 2
    side = _check_pair(tmp_path / "a", 10, 16, 8)
    assert side["canonical"]["teacher_kind"] == "dit" and side["canonical"]["settings"]["tol"] == 1e-3
    for f in ("canonical.safetensors", "canonical.png"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_images_as_the_source(dit, tmp_path, run_cli, asked):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 14), (40 * i, 90, 200)).save(folder / f"{i}.png")
    code, _, err = run_cli("canonical", "--teacher", dit, "--class", 3, "--images", folder, "--n", 2, *TINY,
                           "--set", "clarid.k=3", "--out", tmp_path / "c")
    assert code == 0, err
    assert asked == [([3] * 2, 3), ([3] * 2, 0)]
    assert _check_pair(tmp_path / "c", 2, 3, 8)["canonical"]["source"] == "images"
    code, _, err = run_cli("canonical", "--teacher", dit, "--class", 3, "--n", 3, "--batch-size", 2, *TINY,
                           "--out", tmp_path / "b")
    assert code == 0, err
    assert asked[2:] == [([3] * 2, 16), ([3], 16), ([3] * 2, 0), ([3], 0)]  # three items, two at a time


@pytest.mark.parametrize("args, message", [
    (["--class", 5], "--class 5 is out of range: this teacher has classes 0..4"),
    (["--class", -1], "--class -1 is out of range"),
    (["--class", 3, "--n", 0], "--n must be at least 1"),
    (["--class", 3, "--batch-size", 0], "--batch-size must be at least 1"),
    (["--class", 3, "--set", "k=2"], "canonical takes CLARID settings only"),
    (["--class", 3, "--set", "clarid.nope=2"], "unknown config key 'clarid.nope'"),
    (["--class", 3, "--set", "clarid.k=-1"], "bad value for 'clarid.k'"),
    (["--class", 3, "--images", "missing"], "--images missing: no such file or folder"),
    (["--class", 3, "--set", "clarid.k=65"], "exceeds the teacher's latent dimension 64"),
])
def test_bad_input_is_one_line_before_any_work(dit, tmp_path, run_cli, asked, args, message):
    code, _, err = run_cli("canonical", "--teacher", dit, *args, "--out", tmp_path / "c")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert asked == [] and not (tmp_path / "c" / "canonical.safetensors").exists()


def test_bad_teacher_and_foreign_out_folder(dit, tmp_path, run_cli, asked):
    code, _, err = run_cli("canonical", "--teacher", tmp_path / "nope", "--class", 3, "--out", tmp_path / "c")
    assert code == 2 and "teacher not found" in err and err.count("\n") == 1
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, _, err = run_cli("canonical", "--teacher", dit, "--class", 3, "--out", tmp_path / "busy")
    assert code == 2 and "holds other files (notes.txt)" in err
    assert asked == []


def test_sample_and_teacher_check_take_any_teacher(dit, tmp_path, run_cli):
    code, out, err = run_cli("sample", "--teacher", dit, "--class", 3, "--class", 1, "--per-class", 3,
                             "--steps", 3, "--out", tmp_path / "s")
    assert code == 0, err
    with Image.open(tmp_path / "s" / "samples_w3_seed0.png") as png:
        assert png.size == (2 * (3 * 10 + 2), 2 * (2 * 10 + 2))  # two rows (classes 3, 1) of three 8 px images
    code, _, err = run_cli("sample", "--teacher", dit, "--class", 7, "--out", tmp_path / "s")
    assert code == 2 and "class 7 is out of range" in err
    code, _, err = run_cli("teacher-check", "--teacher", dit)
    assert code == 2 and "is a diffusers dit model" in err and err.count("\n") == 1


def test_refusals_are_clareps_errors_in_python_too(dit):
    import clareps

    with pytest.raises(ClarepsError, match="teacher not found"):
        clareps.Teacher.load("no/such/teacher")
    with pytest.raises(ClarepsError, match="holds a 'Foo'"):
        bad = Path(dit).parent / "foo"
        bad.mkdir(exist_ok=True)
        (bad / "config.json").write_text('{"_class_name": "Foo"}')
        clareps.Teacher.load(bad)
