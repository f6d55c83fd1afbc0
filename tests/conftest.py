"""Shared fixtures: tiny models and a tiny default-benchmark build, cached per session."""

from __future__ import annotations

import pytest
import torch

from clareps.diffusion.unet import UNet, UNetConfig

TINY_UNET = dict(base_channels=8, channel_mult=[1, 2], groups=4, image_size=8, attn_resolutions=[4])


@pytest.fixture
def tiny_unet() -> UNet:
    torch.manual_seed(0)
    model = UNet(UNetConfig(**TINY_UNET)).eval()
    with torch.no_grad():  # the zero-initialised output conv would make eps identically 0
        model.conv_out.weight.normal_(0, 0.05)
    return model


@pytest.fixture(scope="session")
def tiny_data_cache(tmp_path_factory) -> str:
    """A cache dir holding a 200/50 build of the default benchmark."""
    from clareps.data.benchmark import BenchmarkConfig, build_benchmark

    cache = tmp_path_factory.mktemp("cache")
    build_benchmark(BenchmarkConfig(n_train=200, n_test=50), cache_dir=cache, progress=False)
    return str(cache)
