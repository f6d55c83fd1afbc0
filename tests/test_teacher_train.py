"""Teacher training: exact resume, artifacts, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from clareps.config import load_config
from clareps.data.spec import data_fingerprint, load_data
from clareps.adapters.loading import load_teacher_any as load_teacher
from clareps.diffusion.train import TeacherConfig, TeacherTrainer
from clareps.errors import ClarepsError
from clareps.io import hash_file, load_tensors, save_tensors, sidecar_path
from conftest import TINY_UNET


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, images=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(40) % 10)
    return path


@pytest.fixture
def tiny_config(tmp_path, tiny_npz):
    cfg = {"data": {"kind": "npz", "path": str(tiny_npz)}, "model": TINY_UNET, "steps": 6,
           "batch_size": 8, "ckpt_every": 3, "log_every": 3, "warmup": 2, "precision": "fp32"}
    path = tmp_path / "teacher.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _trainer(config_path, run_dir, *overrides):
    cfg = load_config(TeacherConfig, config_path, list(overrides))
    return TeacherTrainer(cfg, load_data(cfg.data), run_dir, data_fingerprint(cfg.data), quiet=True)


def test_resume_equals_uninterrupted(tiny_config, tmp_path):
    straight = _trainer(tiny_config, tmp_path / "a")
    straight.train()
    half = _trainer(tiny_config, tmp_path / "b", "steps=3")
    half.train()
    resumed = _trainer(tiny_config, tmp_path / "b")
    resumed.train(resume=True)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in straight.ema.state_dict().items():
        assert torch.equal(value, resumed.ema.state_dict()[name]), name
    steps = [row["step"] for row in map(json.loads, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines())]
    assert steps == [3, 6]  # no duplicated rows after the resume


def test_teacher_artifact_loads_back(tiny_config, tmp_path):
    trainer = _trainer(tiny_config, tmp_path / "run")
    path = trainer.train()
    model, meta = load_teacher(path)
    assert meta["step"] == 6 and model.schedule.T == 1000 and not model.training
    info = json.loads((tmp_path / "run" / "train_info.json").read_text())
    assert info["steps"] == 6 and info["wall_seconds"] > 0 and info["command"].startswith("clareps")
    for name, value in trainer.ema.state_dict().items():
        assert torch.equal(value, model.state_dict()[name])


def test_train_info_splits_time_and_steps_by_device(tiny_config, tmp_path):
    """A teacher trained partly elsewhere keeps that part on its own device when resumed here, and the
    steps per device add up to the total."""
    run = tmp_path / "run"
    _trainer(tiny_config, run, "steps=3").train()
    (run / "train_info.json").write_text(json.dumps({"wall_seconds": 100.0, "steps": 3,
                                                      "by_device": {"Old GPU": {"seconds": 100.0, "steps": 3}}}))
    _trainer(tiny_config, run).train()
    info = json.loads((run / "train_info.json").read_text())
    old = info["by_device"].pop("Old GPU")
    (here,) = info["by_device"].values()
    assert old == {"seconds": 100.0, "steps": 3} and here["steps"] == 3 and info["steps"] == 6
    assert here["precision"] == "fp32"  # the resolved precision of each device's part
    assert info["wall_seconds"] == pytest.approx(100.0 + here["seconds"])
    assert len(info["commands"]) == 1 and info["commands"][0] == info["command"]  # same command, once


def test_refuses_run_dir_of_another_config(tiny_config, tmp_path):
    _trainer(tiny_config, tmp_path / "run").train()
    with pytest.raises(ClarepsError, match=r"another config \(lr: 0.0004 there, 0.001 here\)"):
        _trainer(tiny_config, tmp_path / "run", "lr=0.001").train()


def test_corrupt_and_mismatched_checkpoints(tiny_config, tmp_path):
    path = _trainer(tiny_config, tmp_path / "run").train()
    data = bytearray(path.read_bytes())
    data[-10:] = b"0123456789"
    path.write_bytes(bytes(data))
    with pytest.raises(ClarepsError, match="corrupt checkpoint"):
        load_teacher(path)
    other = _trainer(tiny_config, tmp_path / "run2", "model.base_channels=16").train()
    tensors, meta = load_tensors(other)
    meta["unet"]["base_channels"] = 8  # a description of a model the tensors do not fit
    save_tensors(other, tensors, meta)
    with pytest.raises(ClarepsError, match="does not fit this model"):
        load_teacher(other)
    with pytest.raises(ClarepsError, match="teacher not found"):
        load_teacher(tmp_path / "nope.safetensors")


def test_a_stale_or_missing_sidecar_cannot_mismatch_the_weights(tmp_path):
    """A crash between the weights and the sidecar write leaves the old sidecar: the file still describes itself."""
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"w": torch.zeros(3)}, {"step": 1})
    stale = sidecar_path(path).read_text()
    save_tensors(path, {"w": torch.ones(3, dtype=torch.bfloat16)}, {"step": 2})
    sidecar_path(path).write_text(stale)
    tensors, meta = load_tensors(path)
    assert meta["step"] == 2 and torch.equal(tensors["w"], torch.ones(3, dtype=torch.bfloat16))
    sidecar_path(path).unlink()
    assert load_tensors(path)[1]["step"] == 2

    foreign = tmp_path / "foreign.safetensors"  # no metadata inside: not ours, whatever sidecar lies beside it
    save_file({"w": torch.zeros(2)}, str(foreign))
    sidecar_path(foreign).write_text(json.dumps({"step": 7, "tensors_sha256": hash_file(foreign)}))
    with pytest.raises(ClarepsError, match="carries no clareps metadata"):
        load_tensors(foreign)


def test_bad_config_and_data(tiny_config, tmp_path, tiny_npz):
    with pytest.raises(ClarepsError, match="unknown config key 'model.widht'"):
        load_config(TeacherConfig, tiny_config, ["model.widht=3"])
    with pytest.raises(ClarepsError, match="bad value for 'steps'"):
        load_config(TeacherConfig, tiny_config, ["steps=many"])
    with pytest.raises(ClarepsError, match="config file not found"):
        load_config(TeacherConfig, tmp_path / "missing.yaml")
    with pytest.raises(ClarepsError, match="do not fit the model"):
        _trainer(tiny_config, tmp_path / "r", "model.image_size=16")
    cfg = load_config(TeacherConfig, tiny_config, ["data.path=/no/such/file.npz"])
    with pytest.raises(ClarepsError, match="/no/such/file.npz"):
        load_data(cfg.data)
    np.savez(tmp_path / "bad.npz", images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.array([0, 1, 2, 99]))
    bad = load_config(TeacherConfig, tiny_config, [f"data.path={tmp_path / 'bad.npz'}", "data.num_classes=10"])
    with pytest.raises(ClarepsError, match=r"label out of range \[0, 10\)"):
        load_data(bad.data)


def test_cli_errors_are_one_line(tiny_config, tmp_path):
    cmd = [sys.executable, "-m", "clareps", "train-teacher", "-c", str(tiny_config), "--out",
           str(tmp_path / "run"), "--set", "model.widht=3", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown config key 'model.widht'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_nan_weights_are_never_checkpointed(tiny_config, tmp_path):
    trainer = _trainer(tiny_config, tmp_path / "run")
    trainer.train()
    before = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    with torch.no_grad():
        trainer.model.conv_in.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ClarepsError, match="NaN"):
        trainer.save_checkpoint()
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == before


def test_model_card_says_when_its_check_is_older_than_the_weights(tiny_config, tmp_path):
    from clareps.diffusion.model_card import write_model_card
    from clareps.io import write_json

    _trainer(tiny_config, tmp_path / "run").train()  # weights at step 6
    check = {"class_consistency": 0.5, "class_consistency_per_class": [0.5] * 10, "fid_judge_features": 1.0,
             "hardware": "cpu", "judge": "judge.safetensors", "recon_mae": 0.0, "recon_rmse": 0.0, "seconds": 60,
             "settings": {"ddim_steps": 50, "fid_real_images": 10, "per_class": 2, "recon_images": 4,
                          "recon_t_frac": 0.5, "seed": 0, "w": 3.0}, "teacher_step": 3}
    write_json(tmp_path / "run" / "teacher_check.json", check)
    card = write_model_card(tmp_path / "run").read_text()
    assert "- steps: 6 at batch" in card and "Checked at step 3" in card
    assert "These weights are at step 6" in card
    write_json(tmp_path / "run" / "teacher_check.json", dict(check, teacher_step=6))
    assert "These weights are at step" not in write_model_card(tmp_path / "run").read_text()
