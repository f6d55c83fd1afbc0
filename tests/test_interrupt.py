"""Interrupted stages (issue 18, items 2 and 5): CTRL-C is a failure that says what was kept, and a
bank is the same bytes whether it was built once, twice, or killed and resumed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from clareps.bank.build import BankConfig, build_bank
from clareps.config import build_config

import torch  # noqa: E402
from conftest import write_tiny_npz  # noqa: E402

# the subprocesses compute with as many threads as this process, so their bytes can be compared
ENV = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


STARTED: list[subprocess.Popen] = []


def _sigint_default() -> None:
    # A job started with `&` by a non-interactive shell (CI scripts, nohup ... &) ignores SIGINT, and a
    # child would inherit that (Python then installs no KeyboardInterrupt handler): CTRL-C is what we test.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "clareps", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, preexec_fn=_sigint_default)
    STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_leftovers():
    """A failed test must not leave a long run going (steps=100000) behind it."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the stage never got there"
        time.sleep(0.05)


def test_ctrl_c_exits_130_and_says_what_was_kept(tmp_path, tiny_data_cache):
    out = tmp_path / "teacher"
    proc = start("train-teacher", "--set", f"data.cache_dir={tiny_data_cache}",
                 "--set", "data.benchmark={n_train: 200, n_test: 50}",
                 "--set", "model={base_channels: 8, channel_mult: [1, 2], groups: 4, attn_resolutions: [16]}",
                 "--set", "steps=100000", "--set", "batch_size=8", "--set", "ckpt_every=2",
                 "--set", "precision=fp32", "--set", "warmup=1", "--out", out, "-q")
    wait_for(proc, lambda: (out / "teacher.safetensors").exists())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [f"interrupted: checkpoints so far are in {out}; "
                                        "rerun the same command to resume"], err
    assert (out / "checkpoint.safetensors").exists()


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved(tmp_path, tiny_data_cache):
    out = tmp_path / "teacher"
    proc = start("train-teacher", "--set", f"data.cache_dir={tiny_data_cache}",
                 "--set", "data.benchmark={n_train: 200, n_test: 50}",
                 "--set", "model={base_channels: 8, channel_mult: [1, 2], groups: 4, attn_resolutions: [16]}",
                 "--set", "steps=100000", "--set", "batch_size=8", "--set", "ckpt_every=100000", "--set", "log_every=1",
                 "--set", "precision=fp32", "--set", "warmup=1", "--out", out, "-q")
    wait_for(proc, lambda: (out / "metrics.jsonl").exists())  # training, with no checkpoint yet
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted: nothing was saved yet; rerun the same command to start again"], err
    assert not (out / "checkpoint.safetensors").exists()


def test_ctrl_c_in_a_bank_build_and_a_distill_exits_130_too(tmp_path, tiny_teacher, tiny_data_cache):
    cfg = dict(_bank_config(tiny_teacher, tiny_data_cache), per_class=20)
    (tmp_path / "bank.yaml").write_text(yaml.safe_dump(cfg))
    bank = tmp_path / "bank"
    distill = tmp_path / "student"
    runs = [(start("bank", "build", "-c", tmp_path / "bank.yaml", "--out", bank, "--no-metrics", "-q"),
             lambda: any((bank / "shards").glob("*.json")),
             f"interrupted: finished shards are in {bank / 'shards'}; rerun the same command to resume"),
            (start("distill", "--method", "ce", "--set", f"data={{kind: npz, path: {write_tiny_npz(tmp_path / 'tiny.npz')}}}",
                   "--set", "student.width=4", "--set", "epochs=10000", "--set", "batch_size=8", "--set",
                   "log_every=1", "--set", "precision=fp32", "--set", "device=cpu", "--set", "test_splits=[]",
                   "--out", distill, "-q"),
             lambda: (distill / "checkpoint.safetensors").exists(),
             f"interrupted: the last checkpoint is in {distill}; rerun the same command to resume")]
    for proc, ready, line in runs:
        wait_for(proc, ready)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and err.strip().splitlines() == [line], err


def _bank_config(teacher: str, cache: str) -> dict:
    return {"teacher": teacher, "device": "cpu", "per_class": 1, "shard_size": 2, "source": "random",
            "data": {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": cache},
            "clarid": {"k": 2, "steps": 6, "max_iter": 3, "t_e": 0.3}}


def test_same_bank_config_same_bytes_even_killed_and_resumed(tmp_path, tiny_teacher, tiny_data_cache):
    plain = _bank_config(tiny_teacher, tiny_data_cache)
    once = tmp_path / "once"
    bank, _ = build_bank(build_config(BankConfig, plain), once, quiet=True)
    timing = json.loads((once / "timing.json").read_text())
    assert len(timing["item_seconds"]) == len(bank) == 10 and timing["total_item_seconds"] > 0
    assert bank.seconds.tolist() == timing["item_seconds"]  # readers still see each item's seconds

    twice = tmp_path / "twice"
    build_bank(build_config(BankConfig, plain), twice, quiet=True)
    assert sha256(twice / "bank.safetensors") == sha256(once / "bank.safetensors")

    preset = tmp_path / "bank.yaml"
    preset.write_text(yaml.safe_dump(plain))
    killed = tmp_path / "killed"
    shards = random.Random(0).randint(1, 3)  # of 5: kill at a random shard boundary (or just after it)
    proc = start("bank", "build", "-c", preset, "--out", killed, "--no-metrics", "-q")
    wait_for(proc, lambda: len(list((killed / "shards").glob("*.json"))) >= shards)
    proc.kill()
    proc.wait()
    assert not (killed / "bank.safetensors").exists()
    resumed = subprocess.run([sys.executable, "-m", "clareps", "bank", "build", "-c", str(preset),
                              "--out", str(killed), "--no-metrics", "-q"], capture_output=True, text=True, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert sha256(killed / "bank.safetensors") == sha256(once / "bank.safetensors")


def test_a_killed_distill_resumes_to_the_same_student(tmp_path, run_cli):
    args = ["distill", "--method", "ce", "--set", f"data={{kind: npz, path: {write_tiny_npz(tmp_path / 'tiny.npz')}}}",
            "--set", "student.width=4", "--set", "epochs=10", "--set", "batch_size=8", "--set", "ckpt_every=1",
            "--set", "log_every=1", "--set", "precision=fp32", "--set", "device=cpu", "--set", "val_fraction=0.25",
            "--set", "test_splits=[]", "-q"]
    code, _, err = run_cli(*args, "--out", tmp_path / "straight")
    assert code == 0, err
    killed = tmp_path / "killed"
    proc = start(*args, "--out", killed)
    steps = random.Random(1).randint(2, 20)  # of 40: kill after a random checkpoint
    wait_for(proc, lambda: (killed / "metrics.jsonl").exists() and
             len((killed / "metrics.jsonl").read_text().splitlines()) >= steps)
    proc.kill()
    proc.wait()
    assert not (killed / "student.safetensors").exists(), "the run ended before it was killed"
    resumed = subprocess.run([sys.executable, "-m", "clareps", *args, "--out", str(killed)],
                             capture_output=True, text=True, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert sha256(killed / "student.safetensors") == sha256(tmp_path / "straight" / "student.safetensors")
