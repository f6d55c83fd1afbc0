"""Shared fixtures: tiny models and a tiny default-benchmark build, cached per session."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from clareps.diffusion.schedule import Schedule
from clareps.diffusion.unet import UNet, UNetConfig

# Tiny tensors gain nothing from a second OpenMP thread, and `make test` runs two pytest-xdist workers
# on two cores: one thread each (and in the subprocesses they start) keeps them from fighting.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

TINY_UNET = dict(base_channels=8, channel_mult=[1, 2], groups=4, image_size=8, attn_resolutions=[4])


def write_tiny_npz(path, n: int = 48, classes: int = 4, darkest: int = 120):
    """n 8x8 RGB images whose class tints one channel (a cue a tiny student learns), as an npz data set."""
    import numpy as np

    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    images = rng.integers(0, darkest, (n, 8, 8, 3), dtype=np.uint8)
    images[..., labels % 3] += 100
    np.savez(path, images=images, labels=labels)
    return path


@pytest.fixture
def one_thread():
    # Shared 2-core machines: a second OpenMP thread fighting other jobs makes tiny ops 10x slower;
    # and torchrun ranks run one thread each: one process matches them bit for bit only with one too.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_unet() -> UNet:
    torch.manual_seed(0)
    model = UNet(UNetConfig(**TINY_UNET), Schedule.cosine(1000)).eval()
    with torch.no_grad():  # the zero-initialised output conv would make eps identically 0
        model.conv_out.weight.normal_(0, 0.05)
    return model


@pytest.fixture
def rough_unet(tiny_unet):
    """The tiny U-Net with perturbed weights: a spectrum with gaps (the zero-init one is flat)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in tiny_unet.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return tiny_unet


@pytest.fixture(scope="session")
def tiny_data_cache(tmp_path_factory) -> str:
    """A cache dir holding a 200/50 build of the default benchmark."""
    from clareps.data.benchmark import BenchmarkConfig, build_benchmark

    cache = tmp_path_factory.mktemp("cache")
    build_benchmark(BenchmarkConfig(n_train=200, n_test=50), cache_dir=cache, progress=False)
    return str(cache)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, tiny_data_cache) -> str:
    """A 32x32 teacher trained for a few steps on the tiny benchmark build."""
    from clareps.config import build_config
    from clareps.data.spec import data_fingerprint, load_data
    from clareps.diffusion.train import TeacherConfig, TeacherTrainer

    cfg = build_config(TeacherConfig, {
        "data": {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": tiny_data_cache},
        "model": {"base_channels": 8, "channel_mult": [1, 2], "groups": 4, "attn_resolutions": [16]},
        "steps": 3, "batch_size": 16, "lr": 2e-4, "warmup": 1, "precision": "fp32", "log_every": 3, "ckpt_every": 3})
    trainer = TeacherTrainer(cfg, load_data(cfg.data), tmp_path_factory.mktemp("teacher"),
                             data_fingerprint(cfg.data), quiet=True)
    path = trainer.train()
    return str(path)


@pytest.fixture(scope="session")
def tiny_judge(tmp_path_factory, tiny_data_cache) -> str:
    from clareps.config import build_config
    from clareps.classifiers.shape_judge import JudgeConfig, train_judge

    cfg = build_config(JudgeConfig, {
        "data": {"kind": "benchmark", "split": "train-rand", "benchmark": {"n_train": 200, "n_test": 50},
                 "cache_dir": tiny_data_cache},
        "width": 4, "epochs": 1, "batch_size": 50, "precision": "fp32", "device": "cpu"})
    path, _ = train_judge(cfg, tmp_path_factory.mktemp("judge"), quiet=True)
    return str(path)


@pytest.fixture(scope="session")
def tiny_mask_judge(tmp_path_factory, tiny_data_cache) -> str:
    from clareps.config import build_config
    from clareps.classifiers.mask_judge import MaskJudgeConfig, train_mask_judge

    cfg = build_config(MaskJudgeConfig, {
        "data": {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": tiny_data_cache},
        "width": 2, "epochs": 1, "batch_size": 50, "precision": "fp32", "device": "cpu"})
    path, _ = train_mask_judge(cfg, tmp_path_factory.mktemp("mask-judge"), quiet=True)
    return str(path)


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `clareps ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from clareps.cli import main

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["clareps", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err
    return run
