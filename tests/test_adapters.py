"""External teachers: tiny diffusers models saved to disk, loaded back through the adapters, run
through inversion, the Jacobian engine and a 2-item bank; ImageNet-style folder subsets."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from clareps.adapters import TeacherModel, pixel_shape, teacher_fingerprint, to_latent, to_pixels
from clareps.bank.build import BankConfig, build_bank
from clareps.clarid.canonical import ClaridConfig, matched_latents, timestep
from clareps.clarid.engine import top_subspace
from clareps.clarid.forward_mode import jacobian_mode
from clareps.config import build_config
from clareps.data.spec import DataSpec, data_fingerprint, load_data
from clareps.adapters.loading import load_teacher_any
from clareps.diffusion.checkpoint import save_teacher
from clareps.diffusion.sampler import decode, guided_eps
from clareps.taps import run_to_tap
from clareps.errors import ClarepsError

diffusers = pytest.importorskip("diffusers")


def _tiny_unet2d(num_class_embeds=3):
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=num_class_embeds, attention_head_dim=8)


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """A bare UNet2DModel folder (v-prediction) and a DiT pipeline folder (DiT + VAE + scheduler)."""
    root = tmp_path_factory.mktemp("external")
    torch.manual_seed(0)
    _tiny_unet2d().save_pretrained(root / "unet2d")
    diffusers.DDPMScheduler(prediction_type="v_prediction").save_pretrained(root / "unet2d")
    dit = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                          num_layers=2, sample_size=4, patch_size=2, num_embeds_ada_norm=5)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                                  down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2,
                                  layers_per_block=1, norm_num_groups=4, sample_size=8)
    dit.save_pretrained(root / "dit" / "transformer")
    vae.save_pretrained(root / "dit" / "vae")
    diffusers.DDIMScheduler(beta_schedule="scaled_linear").save_pretrained(root / "dit" / "scheduler")
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", images=rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8), labels=np.arange(8) % 2)
    return root


def _load(external, which):
    if which == "unet2d":
        return load_teacher_any(external / "unet2d")
    return load_teacher_any(f"diffusers:{external / 'dit'}", classes=[1, 3])


def test_our_unet_is_a_teacher(tiny_unet):
    x = torch.randn(1, 3, 8, 8)
    assert isinstance(tiny_unet, TeacherModel)
    assert to_latent(tiny_unet, x) is x and to_pixels(tiny_unet, x) is x
    assert pixel_shape(tiny_unet) == (3, 8, 8)


def test_unet2d_adapter_matches_the_model(external):
    model, meta = _load(external, "unet2d")
    sched = model.schedule
    assert (model.cfg.num_classes, model.null_class, model.cfg.image_size) == (2, 2, 8)
    assert meta["prediction_type"] == "v_prediction" and sched.T == 1000
    assert torch.allclose(sched.alpha_bar, diffusers.DDPMScheduler().alphas_cumprod)
    x, t, y = torch.randn(3, 3, 8, 8), torch.tensor([10, 500, 900]), torch.tensor([0, 1, 2])
    v = model.unet(x, t, class_labels=y).sample  # label 2 is the null class: the model's own last row
    ab = sched.alpha_bar[t].view(-1, 1, 1, 1)
    assert torch.allclose(model(x, t, y), ab.sqrt() * v + (1 - ab).sqrt() * x, atol=1e-6)
    assert run_to_tap(model, "mid", x, t, y).shape == (3, 16, 4, 4)  # "mid" is the UNet's mid_block


def test_dit_adapter_latents_classes_and_learned_sigma(external):
    model, meta = _load(external, "dit")
    sched = model.schedule
    assert meta["latent"] and (model.cfg.in_channels, model.cfg.image_size) == (4, 4)
    assert (model.cfg.num_classes, model.null_class, pixel_shape(model)) == (2, 2, (3, 8, 8))
    assert torch.allclose(sched.alpha_bar, diffusers.DDPMScheduler(beta_schedule="scaled_linear").alphas_cumprod)
    z, t = torch.randn(3, 4, 4, 4), torch.tensor([3, 400, 999])
    raw = model.transformer(z, timestep=t, class_labels=torch.tensor([1, 3, 5])).sample
    assert raw.shape[1] == 8 and torch.allclose(model(z, t, torch.tensor([0, 1, 2])), raw[:, :4], atol=1e-6)
    w, tt = 2.5, torch.full((3,), 7)  # guidance pairs our class 0 (DiT's 1) with DiT's own null label 5
    cond = model.transformer(z, timestep=tt, class_labels=torch.tensor([1, 1, 1])).sample[:, :4]
    null = model.transformer(z, timestep=tt, class_labels=torch.tensor([5, 5, 5])).sample[:, :4]
    assert torch.allclose(guided_eps(model, z, 7, torch.zeros(3, dtype=torch.long), w), null + w * (cond - null),
                          atol=1e-5)
    pixels = torch.rand(2, 3, 8, 8) * 2 - 1
    latents = to_latent(model, pixels)
    vae = model.codec.vae
    assert torch.allclose(latents, vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor, atol=1e-6)
    assert to_pixels(model, latents).shape == (2, 3, 8, 8)
    assert run_to_tap(model, "mid", z, t, torch.tensor([0, 1, 2])).shape == (3, 4, 16)  # DiT tokens


def _jacobian_svals(model, x, t, y, k):
    f = lambda xx: run_to_tap(model, "mid", xx[None], torch.tensor([t]), y[None]).flatten()  # noqa: E731
    with jacobian_mode(model):
        jac = torch.autograd.functional.jacobian(f, x).reshape(-1, x.numel())
    return torch.linalg.svdvals(jac.double())[:k].float()


@pytest.mark.parametrize("which", ["unet2d", "dit"])
def test_engine_through_adapters_matches_a_full_jacobian_svd(external, which):
    model, _ = _load(external, which)
    c, s = model.cfg.in_channels, model.cfg.image_size
    x, y = torch.randn(2, c, s, s), torch.tensor([0, 1])
    before = [type(m.processor) for m in model.modules() if hasattr(m, "processor")]
    sub = top_subspace(model, x, 300, y, 2, tap="mid", tol=1e-7, max_iter=60)
    assert [type(m.processor) for m in model.modules() if hasattr(m, "processor")] == before  # restored
    for b in range(2):
        ref = _jacobian_svals(model, x[b], 300, y[b], 2)
        assert torch.allclose(sub.singular_values[b], ref, rtol=1e-3), (sub.singular_values[b], ref)


@pytest.mark.parametrize("which", ["unet2d", "dit"])
def test_inversion_and_a_two_item_bank(external, which, tmp_path):
    spec = str(external / "unet2d") if which == "unet2d" else f"diffusers:{external / 'dit'}"
    base = {"teacher": spec, "device": "cpu", "per_class": 1, "source": "matched", "shard_size": 1,
            "teacher_classes": None if which == "unet2d" else [1, 3],
            "data": {"kind": "npz", "path": str(external / "data.npz")},
            # fp32 sampling: the reference decode below is fp32 (`auto` is bf16 on a CPU with native bf16)
            "clarid": {"k": 2, "steps": 10, "max_iter": 4, "t_e": 0.3, "w": 2.0, "sampler_precision": "fp32"}}
    bank, _ = build_bank(build_config(BankConfig, base), tmp_path / "canon", quiet=True)
    model, _ = load_teacher_any(spec, classes=base["teacher_classes"])
    c, s = model.cfg.in_channels, model.cfg.image_size
    assert bank.images.shape == (2, 3, 8, 8) and bank.latents.shape == (2, c, s, s)
    assert torch.equal(bank.labels, torch.tensor([0, 1])) and bank.singular_values.shape == (2, 2)
    assert bank.meta["teacher_sha256"] == teacher_fingerprint(spec)
    # The control bank is inversion (through the encoder) and decoding (through the decoder), nothing else.
    control, _ = build_bank(build_config(BankConfig, dict(base, kind="control")), tmp_path / "ctrl", quiet=True)
    data, cfg = load_data(build_config(DataSpec, base["data"])), build_config(ClaridConfig, base["clarid"])
    real, y = data.images[bank.source_index], bank.labels
    x_te = matched_latents(model, real, y, cfg)
    assert torch.allclose(control.latents, x_te, atol=1e-5)
    images = ((to_pixels(model, decode(model, x_te, y, timestep(model, cfg), cfg.steps, cfg.w)) + 1) / 2)
    assert torch.allclose(control.images, images.clamp(0, 1), atol=1e-5)
    assert not torch.allclose(control.latents, bank.latents)


def test_teacher_spec_errors(external, tmp_path, tiny_unet):
    ours = save_teacher(tmp_path / "ours.safetensors", tiny_unet, {})
    with pytest.raises(ClarepsError, match="holds no diffusers model"):
        load_teacher_any(f"diffusers:{tmp_path}")
    _tiny_unet2d(num_class_embeds=None).save_pretrained(tmp_path / "uncond")
    with pytest.raises(ClarepsError, match="not class-conditional"):
        load_teacher_any(tmp_path / "uncond")
    with pytest.raises(ClarepsError, match=r"must lie in \[0, 5\)"):
        load_teacher_any(external / "dit", classes=[1, 7])
    with pytest.raises(ClarepsError, match="teacher_classes is for external teachers"):
        load_teacher_any(ours, classes=[0])
    pickled = tmp_path / "pickled"
    _tiny_unet2d().save_pretrained(pickled, safe_serialization=False)
    diffusers.DDPMScheduler().save_pretrained(pickled)
    with pytest.raises(ClarepsError, match="holds pickled .bin weights only; clareps loads safetensors"):
        load_teacher_any(pickled)


def test_a_clareps_teacher_can_be_named_by_its_run_folder(tmp_path, tiny_unet):
    file = save_teacher(tmp_path / "run" / "teacher.safetensors", tiny_unet, {"step": 3})
    model, meta = load_teacher_any(tmp_path / "run")
    assert meta["step"] == 3 and torch.equal(model.conv_out.weight, tiny_unet.conv_out.weight)
    assert teacher_fingerprint(tmp_path / "run") == teacher_fingerprint(file)


def test_fingerprint_follows_content_not_place(external, tmp_path):
    copy = shutil.copytree(external / "dit", tmp_path / "copy")
    assert teacher_fingerprint(copy) == teacher_fingerprint(external / "dit")
    config = copy / "vae" / "config.json"
    config.write_text(config.read_text() + " ")
    assert teacher_fingerprint(copy) != teacher_fingerprint(external / "dit")


def test_image_folder_class_subset(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("n01", "n02", "n03"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "train" / name / f"{i}.png")
    spec = build_config(DataSpec, {"kind": "folder", "path": str(tmp_path), "classes": ["n03", "n01"],
                                   "image_size": 4, "max_per_class": 2})
    data = load_data(spec)
    assert data.class_names == ["n03", "n01"] and data.images.shape == (4, 3, 4, 4)
    assert torch.equal(data.labels, torch.tensor([0, 0, 1, 1]))
    assert data_fingerprint(spec) != data_fingerprint(spec.model_copy(update={"max_per_class": 3}))
    # unset options stay out of configs, so hashes of existing runs do not change
    assert "classes" not in DataSpec().model_dump(mode="json")
    with pytest.raises(ClarepsError, match="apply to data.kind=folder only"):
        load_data(build_config(DataSpec, {"kind": "benchmark", "classes": ["a"]}))
