"""The direction families that try to select (clarid/families.py), against full Jacobians."""

from __future__ import annotations

import pytest
import scipy.linalg
import torch
from torch.func import jacrev

from clareps.clarid.canonical import ClaridConfig, canonicalize
from clareps.clarid.directions import ControlInputs, candidates, remove, removed_share
from clareps.clarid.families import estimated_background, guidance, oracle_background
from clareps.clarid.forward_mode import jacobian_mode
from clareps.clarid.linalg import orthonormal_rows, principal_angles
from clareps.config import to_plain
from clareps.errors import ClarepsError
from clareps.taps import run_to_tap

pytestmark = pytest.mark.usefixtures("one_thread")
T = 300


def _masks(b: int) -> torch.Tensor:
    m = torch.zeros(b, 1, 8, 8)
    m[:, :, 2:6, 1:5] = 1.0
    return m


def _jac(fn, x_item: torch.Tensor) -> torch.Tensor:
    return jacrev(fn)(x_item[None])[0].reshape(-1, x_item.numel())


def test_estimated_background_drops_the_strongest_share_of_the_grid():
    strength = torch.zeros(1, 8, 8)
    strength[0, 4:8, 0:4] = 5.0  # the lower-left quarter: 4 cells of a 4x4 grid
    bg = estimated_background(strength, (4, 4), 0.25)
    want = torch.ones(1, 4, 4)
    want[0, 2:4, 0:2] = 0
    assert torch.equal(bg, want)
    assert estimated_background(strength, (4, 4), 0.01).sum() == 15  # at least one foreground cell
    assert estimated_background(strength, (4, 4), 0.99).sum() == 1  # and one background cell


def test_oracle_background_reads_cell_coverage():
    m = torch.zeros(2, 1, 8, 8)
    m[0, :, 0:2, 0:1] = 1.0  # half of cell (0, 0)
    m[1] = 1.0  # all foreground
    bg = oracle_background(m, (4, 4), 0.0)
    assert bg[0, 0, 0] == 0 and bg[0].sum() == 15
    assert oracle_background(m, (4, 4), 0.5)[0].sum() == 16  # half covered is not more than 0.5
    assert bg[1].sum() == 1  # every cell foreground: the least covered one is kept


@pytest.mark.parametrize("kind", ["region-restricted", "mask-oracle"])
def test_region_families_are_the_top_of_the_masked_jacobian(rough_unet, kind):
    x, y, k = torch.randn(2, 3, 8, 8), torch.tensor([1, 4]), 3
    cfg = ClaridConfig(k=k, directions=kind, tol=1e-7, max_iter=200, foreground_share=0.4)
    cand = candidates(rough_unet, x, T, y, cfg, inputs=ControlInputs(class_labels=y, masks=_masks(2)))
    tt = torch.full((2,), T)
    if kind == "mask-oracle":
        bg = oracle_background(_masks(2), (4, 4), 0.0)
    else:
        with torch.no_grad():
            bg = estimated_background(guidance(rough_unet, x, tt, y).abs().mean(1), (4, 4), 0.4)
    assert 0 < bg.sum() < bg.numel()
    for i in range(2):
        with jacobian_mode(rough_unet):
            jac = _jac(lambda xx: run_to_tap(rough_unet, "mid", xx, tt[:1], y[i:i + 1]) * bg[i], x[i])
        _, s, vh = torch.linalg.svd(jac, full_matrices=False)
        assert principal_angles(cand.rows[i][None], vh[:k][None]).max() < 1e-2
        assert torch.allclose(cand.source.singular_values[i], s[:k], rtol=1e-3)


def test_class_contrastive_matches_the_explicit_pencil(rough_unet):
    x, y, k = torch.randn(1, 3, 8, 8), torch.tensor([3]), 3
    cfg = ClaridConfig(k=k, directions="class-contrastive", tol=1e-7, max_iter=300, contrast_eps=5.0)
    cand = candidates(rough_unet, x, T, y, cfg, inputs=ControlInputs(class_labels=y))
    tt = torch.full((1,), T)
    with jacobian_mode(rough_unet):
        jf = _jac(lambda xx: run_to_tap(rough_unet, "mid", xx, tt, y), x[0]).detach()
        jg = _jac(lambda xx: guidance(rough_unet, xx, tt, y), x[0]).detach()
    gram_g = (jg.T @ jg).double()
    # the ridge: 5 x the mean eigenvalue of J_g^T J_g as estimated from the (seed 0) start block
    start = orthonormal_rows(torch.randn(1, k, 192, generator=torch.Generator().manual_seed(0)))[0]
    ridge = 5.0 * float((jg.double() @ start.double().T).pow(2).sum() / k)
    lam, v = scipy.linalg.eigh((jf.T @ jf).double().numpy(), (gram_g + ridge * torch.eye(192).double()).numpy())
    top = torch.linalg.qr(torch.from_numpy(v[:, ::-1][:, :k].copy()).float())[0].T
    assert torch.allclose(cand.source.singular_values[0] ** 2, torch.from_numpy(lam[::-1][:k].copy()).float(),
                          rtol=1e-3)
    assert principal_angles(cand.rows[0][None], top[None]).max() < 2e-2


@pytest.mark.parametrize("kind", ["class-contrastive", "region-restricted", "mask-oracle"])
def test_families_remove_the_jacobian_share(rough_unet, kind):
    x, y, k = torch.randn(2, 3, 8, 8), torch.tensor([1, 4]), 3
    init = torch.randn(2, k, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    jac = remove(rough_unet, x, T, y, ClaridConfig(k=k, tol=1e-4), init=init)
    cfg = ClaridConfig(k=k, directions=kind, match_removed_norm=True, tol=1e-4)
    got = remove(rough_unet, x, T, y, cfg, init=init, inputs=ControlInputs(class_labels=y, masks=_masks(2)))
    assert torch.allclose(got.record["removed_share"], jac.record["removed_share"], rtol=0.01)
    assert torch.allclose(got.record["removed_share"], removed_share(x, got.latents), rtol=1e-4)
    assert not torch.allclose(got.latents, jac.latents, atol=1e-3)


def test_canonicalize_hands_the_class_to_the_families(rough_unet):
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 4])
    out = canonicalize(rough_unet, x, y, ClaridConfig(k=2, steps=4, directions="class-contrastive", max_iter=3))
    assert out["images"].shape == (2, 3, 8, 8) and torch.isfinite(out["latents"]).all()


def test_unset_family_settings_leave_the_config_as_it_was():
    plain = to_plain(ClaridConfig())
    assert not {"contrast_eps", "foreground_share", "mask_threshold"} & set(plain)
    assert to_plain(ClaridConfig(contrast_eps=0.5))["contrast_eps"] == 0.5


def test_missing_inputs_are_clareps_errors(rough_unet):
    x, y = torch.randn(1, 3, 8, 8), torch.tensor([1])
    with pytest.raises(ClarepsError, match="mask"):
        candidates(rough_unet, x, T, y, ClaridConfig(k=2, directions="mask-oracle"), inputs=ControlInputs())
    with pytest.raises(ClarepsError, match="class"):
        candidates(rough_unet, x, T, y, ClaridConfig(k=2, directions="region-restricted"), inputs=ControlInputs())
