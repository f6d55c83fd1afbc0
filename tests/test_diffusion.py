"""The teacher's parts: U-Net shapes and taps, schedule, guidance, DDIM inversion."""

from __future__ import annotations

import pytest
import torch

from clareps.diffusion.sampler import decode, guided_eps, invert, sample
from clareps.diffusion.schedule import Schedule
from clareps.taps import run_to_tap, tap
from clareps.diffusion.unet import UNet, UNetConfig
from clareps.errors import ClarepsError
from conftest import TINY_UNET


def test_unet_output_shape_and_null_class(tiny_unet):
    x = torch.randn(3, 3, 8, 8)
    out = tiny_unet(x, torch.tensor([0, 500, 999]), torch.tensor([0, 9, tiny_unet.null_class]))
    assert out.shape == x.shape
    with pytest.raises(IndexError):
        tiny_unet(x, torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, tiny_unet.null_class + 1]))


def test_tap_reads_bottleneck_and_stops_early(tiny_unet):
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([10, 10]), torch.tensor([1, 2])
    with tap(tiny_unet, "mid") as store:
        tiny_unet(x, t, y)
    assert store["out"].shape == (2, 16, 4, 4)
    calls = []
    handle = tiny_unet.conv_out.register_forward_hook(lambda *a: calls.append(1))
    feats = run_to_tap(tiny_unet, "mid", x, t, y)
    handle.remove()
    assert torch.equal(feats, store["out"]) and calls == []  # the decoder never ran
    with pytest.raises(ClarepsError, match="no module at tap path"):
        run_to_tap(tiny_unet, "mid.nonexistent", x, t, y)


def test_schedule_identities():
    sched = Schedule.cosine(1000)
    ab = sched.alpha_bar
    assert ab.shape == (1000,) and torch.all(ab[1:] < ab[:-1])
    assert ab[0] > 0.999 and ab[-1] < 1e-4
    x0, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 10, 500, 900])
    xt = sched.add_noise(x0, t, noise)
    a = ab[t].view(-1, 1, 1, 1)
    # x_t is a variance-preserving mix: recover x0 exactly from (x_t, noise)
    assert torch.allclose((xt - (1 - a).sqrt() * noise) / a.sqrt(), x0, atol=1e-3)
    big = sched.add_noise(torch.randn(20000), torch.full((20000,), 700), torch.randn(20000))
    assert abs(big.var().item() - 1) < 0.05  # variance preserving
    grid = sched.grid(0, 500, 50)
    assert grid[0] == 0 and grid[-1] == 500 and len(grid) == 26
    assert sched.index(0.5) == 500


def test_guidance_w1_is_conditional(tiny_unet):
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([3, 4])
    cond = tiny_unet(x, torch.full((2,), 300), y)
    assert torch.allclose(guided_eps(tiny_unet, x, 300, y, 1.0), cond, atol=1e-6)
    uncond = tiny_unet(x, torch.full((2,), 300), torch.full((2,), tiny_unet.null_class))
    w3 = guided_eps(tiny_unet, x, 300, y, 3.0)
    assert torch.allclose(w3, uncond + 3 * (cond - uncond), atol=1e-5)
    assert not torch.allclose(w3, cond, atol=1e-4)


@pytest.mark.parametrize("w", [1.0, 2.0])
def test_ddim_inversion_then_decoding_returns_input(tiny_unet, w):
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    y = torch.tensor([0, 1, 2, 3])
    xt = invert(tiny_unet, x0, y, t_end=500, steps=100, w=w)
    assert (xt - x0).abs().mean() > 0.1  # it really moved
    back = decode(tiny_unet, xt, y, t_start=500, steps=100, w=w)
    assert (back - x0).abs().max() < 2e-2


def test_sample_is_seeded(tiny_unet):
    y = torch.tensor([0, 1])
    a = sample(tiny_unet, y, steps=5, w=2.0, generator=torch.Generator().manual_seed(1))
    b = sample(tiny_unet, y, steps=5, w=2.0, generator=torch.Generator().manual_seed(1))
    c = sample(tiny_unet, y, steps=5, w=2.0, generator=torch.Generator().manual_seed(2))
    assert a.shape == (2, 3, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)


def test_the_sampler_reads_the_schedule_the_teacher_carries(tiny_unet):
    y, seed = torch.tensor([0, 1]), lambda: torch.Generator().manual_seed(1)
    short = UNet(UNetConfig(**TINY_UNET), Schedule.cosine(100)).eval()
    short.load_state_dict(tiny_unet.state_dict())  # the same network, trained (say) on a 100-step schedule
    ours = sample(tiny_unet, y, steps=5, w=2.0, generator=seed())
    assert not torch.equal(ours, sample(short, y, steps=5, w=2.0, generator=seed()))
    tiny_unet.schedule = short.schedule
    assert torch.equal(sample(tiny_unet, y, steps=5, w=2.0, generator=seed()), sample(short, y, steps=5, w=2.0,
                                                                                        generator=seed()))
    with pytest.raises(ClarepsError, match="carries no noise schedule"):
        sample(UNet(UNetConfig(**TINY_UNET)), y, steps=2)


def test_a_teacher_file_carries_the_schedule_back(tiny_unet, tmp_path):
    from clareps.adapters.loading import load_teacher_any as load_teacher
    from clareps.diffusion.checkpoint import save_teacher

    model, meta = load_teacher(save_teacher(tmp_path / "t.safetensors", tiny_unet, {}))
    assert meta["T"] == 1000 and torch.equal(model.schedule.alpha_bar, tiny_unet.schedule.alpha_bar)
    tiny_unet.schedule = Schedule.tabulated(tiny_unet.schedule.alpha_bar ** 2)  # not a cosine one: T cannot say it
    with pytest.raises(ClarepsError, match="keeps a cosine schedule"):
        save_teacher(tmp_path / "u.safetensors", tiny_unet, {})


def test_unet_config_refuses_shapes_it_cannot_take():
    from clareps.config import build_config
    with pytest.raises(ClarepsError, match="cannot be halved"):
        build_config(UNetConfig, {"image_size": 30, "channel_mult": [1, 2, 2]})
    with pytest.raises(ClarepsError, match="multiples of groups"):
        build_config(UNetConfig, {"base_channels": 12, "groups": 8})
    with pytest.raises(ClarepsError, match="must be even"):
        build_config(UNetConfig, {"base_channels": 9, "groups": 1})


def test_sampling_from_noise_stays_in_range(tiny_unet):
    # near T, alpha_bar ~ 2e-9: without clipping x0, eps errors of a weak model explode
    out = sample(tiny_unet, torch.tensor([0, 1, 2]), steps=20, w=3.0,
                 generator=torch.Generator().manual_seed(0))
    assert out.abs().max() < 1.1
