"""CLARID's direction choices and their controls (clarid/directions.py)."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev

from clareps.clarid.canonical import ClaridConfig, canonicalize, features, random_latents
from clareps.clarid.directions import (ControlInputs, candidates, dct_basis, donors, matched_removal, project,
                                       random_rows, remove, removed_share)
from clareps.clarid.engine import top_subspace
from clareps.clarid.forward_mode import jacobian_mode
from clareps.clarid.linalg import principal_angles
from clareps.taps import run_to_tap
from clareps.errors import ClarepsError

KINDS = ("jacobian", "random", "low-frequency", "shuffled", "tail")


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b: int, x: torch.Tensor, k: int, t: int = 300) -> ControlInputs:
    g = torch.Generator().manual_seed(5)
    return ControlInputs(item_seeds=torch.arange(b) + 11, donor_latents=torch.randn(x.shape, generator=g),
                         donor_labels=(torch.arange(b) + 3) % 10, donor_init=None)


def _orthonormal(rows: torch.Tensor, atol: float = 1e-5) -> bool:
    eye = torch.eye(rows.shape[-2]).expand(*rows.shape[:-2], -1, -1)
    return torch.allclose(rows @ rows.mT, eye, atol=atol)


def test_every_direction_set_is_orthonormal(rough_unet):
    x, y, k = torch.randn(2, 3, 8, 8), torch.tensor([1, 4]), 3
    for kind in KINDS:
        cfg = ClaridConfig(k=k, directions=kind, max_iter=4)
        cand = candidates(rough_unet, x, 300, y, cfg, inputs=_inputs(2, x, k))
        assert cand.rows.shape == (2, k, 3 * 8 * 8) and _orthonormal(cand.rows), kind
        assert (cand.top is not None) == (kind == "jacobian"), kind  # no matching: no extra top-k run
        assert (cand.source is None) == (kind in ("random", "low-frequency")), kind
    assert _orthonormal(dct_basis((3, 8, 8)), atol=1e-5) and dct_basis((3, 8, 8)).shape == (192, 192)
    assert _orthonormal(random_rows(3, 40, 192))
    # the first m random directions do not depend on how many were drawn
    assert torch.allclose(random_rows(3, 40, 192)[:5].abs(), random_rows(3, 5, 192).abs(), atol=1e-5)


def test_low_frequency_starts_with_the_channel_means_then_the_first_cosines():
    basis = dct_basis((3, 4, 4)).view(-1, 3, 4, 4)
    for c in range(3):
        assert torch.allclose(basis[c, c], torch.full((4, 4), 0.25)) and basis[c].abs().sum() == pytest.approx(4.0)
    assert basis[3, 0].std(dim=0).max() < 1e-6 < basis[3, 0].std(dim=1).max()  # (0, 1): varies along width only


def test_tail_is_singular_vectors_k_plus_1_to_2k(rough_unet):
    x, y, k, t = torch.randn(2, 3, 8, 8), torch.tensor([2, 7]), 2, 300
    cand = candidates(rough_unet, x, t, y, ClaridConfig(k=k, directions="tail", tol=1e-7, max_iter=300))
    own, pool = cand.source, cand.rows
    for b in range(2):
        f = lambda xi: run_to_tap(rough_unet, "mid", xi[None], torch.tensor([t]), y[b:b + 1]).flatten()  # noqa: E731
        with jacobian_mode(rough_unet):
            _, s, vh = torch.linalg.svd(jacrev(f)(x[b]).reshape(-1, x[b].numel()), full_matrices=False)
        assert s[2 * k - 1] / s[2 * k] > 1.02 and s[k - 1] / s[k] > 1.02  # gaps: the tail is well defined
        assert principal_angles(vh[k:2 * k], pool[b]).max() < 1e-2
        assert torch.allclose(own.singular_values[b], s[:2 * k], rtol=1e-3)


def test_donors_are_a_derangement_into_other_classes():
    labels = torch.arange(10).repeat_interleave(3)
    d = donors(labels)
    assert (d != torch.arange(len(labels))).all() and (labels[d] != labels).all()
    assert sorted(d.tolist()) == list(range(len(labels)))  # a permutation
    uneven = torch.tensor([0, 0, 0, 2, 5, 5])
    assert (uneven[donors(uneven)] != uneven).all()
    with pytest.raises(ClarepsError, match="two classes"):
        donors(torch.zeros(4, dtype=torch.long))


def test_matched_removal_is_exact_and_takes_whole_directions_first():
    x, pool = torch.randn(50), random_rows(0, 50, 50)
    c = pool @ x
    target = float((c[:3].pow(2).sum() + 0.5 * c[3] ** 2).sqrt())
    out, used, scale = matched_removal(x, pool, target)
    assert scale == 1.0 and used == 4 and (x - out).norm() == pytest.approx(target, rel=1e-5)
    assert torch.allclose(pool[4:] @ out, c[4:], atol=1e-5)  # later directions untouched
    out, used, scale = matched_removal(x, pool[:2], float(c[:2].norm()) * 1.5)  # pool too small: scaled
    assert scale == pytest.approx(1.5) and used == 2
    assert (x - out).norm() == pytest.approx(float(c[:2].norm()) * 1.5, rel=1e-5)


def test_every_control_removes_the_jacobian_share_within_one_percent(rough_unet):
    x, y, k = torch.randn(3, 3, 8, 8), torch.tensor([1, 4, 8]), 3
    init = torch.randn(3, 2 * k, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    jac = remove(rough_unet, x, 300, y, ClaridConfig(k=k, tol=1e-4), init=init[:, :k])
    for kind in KINDS[1:]:
        cfg = ClaridConfig(k=k, directions=kind, match_removed_norm=True, tol=1e-4)
        start = init if kind == "tail" else init[:, :k]
        got = remove(rough_unet, x, 300, y, cfg, init=start, inputs=_inputs(3, x, k))
        share = got.record["removed_share"]
        assert torch.allclose(share, jac.record["removed_share"], rtol=0.01), kind
        assert torch.allclose(share, removed_share(x, got.latents), rtol=1e-4), kind
    unmatched = remove(rough_unet, x, 300, y, ClaridConfig(k=k, directions="random"), inputs=_inputs(3, x, k))
    assert not torch.allclose(unmatched.record["removed_share"], jac.record["removed_share"], rtol=0.05)
    assert (unmatched.record["engine_iterations"] == 0).all() and unmatched.singular_values.shape == (3, 0)


def test_jacobian_default_is_the_plain_projection(rough_unet):
    x, y, k = torch.randn(2, 3, 8, 8), torch.tensor([0, 9]), 3
    cfg = ClaridConfig(k=k, max_iter=5)
    sub = top_subspace(rough_unet, x, 300, y, k, max_iter=5, tol=cfg.tol)
    got = remove(rough_unet, x, 300, y, cfg)
    assert torch.equal(got.latents, project(x, sub.vectors)) and torch.equal(got.singular_values, sub.singular_values)
    assert torch.equal(got.record["engine_iterations"], sub.iterations)
    assert torch.allclose(got.record["removed_share"], removed_share(x, got.latents))


def test_feature_label_null_reads_the_null_class(tiny_unet):
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 2])
    cfg = ClaridConfig(k=0, steps=4, t_e=0.3, feature_label="null")
    t = tiny_unet.schedule.index(cfg.t_e)
    out = canonicalize(tiny_unet, x, y, cfg)
    null = torch.full_like(y, tiny_unet.null_class)
    assert torch.equal(out["features"], features(tiny_unet, x, t, null, cfg.tap))
    assert not torch.equal(out["features"], features(tiny_unet, x, t, y, cfg.tap))
    class_read = canonicalize(tiny_unet, x, y, ClaridConfig(k=0, steps=4, t_e=0.3))
    assert torch.equal(out["images"], class_read["images"])  # decoding still reads the class


def test_w_to_te_defaults_to_w(tiny_unet):
    y = torch.tensor([1, 2])
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    base = random_latents(tiny_unet, y, ClaridConfig(steps=6, w=3.0), noise)
    assert torch.equal(base, random_latents(tiny_unet, y, ClaridConfig(steps=6, w=3.0, w_to_te=3.0), noise))
    assert not torch.allclose(base, random_latents(tiny_unet, y, ClaridConfig(steps=6, w=3.0, w_to_te=1.0), noise))
