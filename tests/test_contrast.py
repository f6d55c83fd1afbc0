"""The generalized eigen engine (clarid/contrast.py), checked against explicit decompositions."""

from __future__ import annotations

import pytest
import scipy.linalg
import torch
from torch.func import jacrev

from clareps.clarid.contrast import generalized_top_fn
from clareps.clarid.engine import top_subspace_fn
from clareps.clarid.linalg import principal_angles
from clareps.errors import ClarepsError

pytestmark = pytest.mark.usefixtures("one_thread")


def _maps(d: int = 30, m_f: int = 24, m_g: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mf, mg = torch.randn(m_f, d, generator=g), torch.randn(m_g, d, generator=g)
    return mf, mg


def _explicit(jf: torch.Tensor, jg: torch.Tensor, ridge: float, k: int):
    a = (jf.T @ jf).double().numpy()
    b = (jg.T @ jg).double().numpy() + ridge * torch.eye(jf.shape[1]).double().numpy()
    lam, v = scipy.linalg.eigh(a, b)
    top = torch.from_numpy(v[:, ::-1][:, :k].copy()).float().T
    return torch.from_numpy(lam[::-1][:k].copy()).float(), torch.linalg.qr(top.T)[0].T


def test_linear_maps_match_scipy_generalized_eigh():
    mf, mg = _maps()
    x = torch.randn(2, 30)
    f, g = (lambda xx: xx @ mf.T), (lambda xx: xx @ mg.T)
    for ridge in (0.2, 1.0, 20.0):  # smaller ridges: a worse-conditioned pencil, slower (not wrong)
        out = generalized_top_fn(f, g, x, 4, ridge, tol=1e-6, max_iter=300)
        lam, span = _explicit(mf, mg, ridge, 4)
        assert out.converged.all()
        for i in range(2):
            assert torch.allclose(out.values[i], lam, rtol=1e-3), (ridge, out.values[i], lam)
            # the stop reads the values; where lam_4 and lam_5 lie 2 % apart (ridge <= 1) the subspace
            # settles later (to 4e-3 rad after 80 steps)
            assert principal_angles(out.vectors[i][None], span[None]).max() < (2e-2 if ridge > 1 else 0.1)
        v = out.vectors.flatten(2)
        assert torch.allclose(v @ v.mT, torch.eye(4).expand(2, 4, 4), atol=1e-5)


def test_nested_order_the_first_j_span_the_top_j():
    mf, mg = _maps(seed=1)
    out = generalized_top_fn(lambda xx: xx @ mf.T, lambda xx: xx @ mg.T, torch.randn(1, 30), 5, 0.5,
                             tol=1e-6, max_iter=300)
    for j in (1, 2, 3):
        _, span = _explicit(mf, mg, 0.5, j)
        assert principal_angles(out.vectors[0, :j][None], span[None]).max() < 2e-2


def test_nonlinear_maps_match_the_pencil_of_their_full_jacobians():
    mf, mg = _maps(seed=2)
    f = lambda xx: torch.tanh(xx @ mf.T) + 0.1 * (xx @ mf.T) ** 2  # noqa: E731
    g = lambda xx: torch.sin(xx @ mg.T)  # noqa: E731
    x = 0.3 * torch.randn(1, 30, generator=torch.Generator().manual_seed(3))
    out = generalized_top_fn(f, g, x, 3, 0.2, tol=1e-6, max_iter=300)
    jf, jg = jacrev(f)(x)[0, :, 0], jacrev(g)(x)[0, :, 0]
    lam, span = _explicit(jf, jg, 0.2, 3)
    assert torch.allclose(out.values[0], lam, rtol=1e-3)
    assert principal_angles(out.vectors[0][None], span[None]).max() < 2e-2


def test_a_large_ridge_gives_the_jacobians_top_subspace():
    mf, _ = _maps(seed=4)
    f, x = (lambda xx: xx @ mf.T), torch.randn(1, 30)
    out = generalized_top_fn(f, lambda xx: xx[:, :3] * 0.0 + xx[:, :3], x, 4, 1e6, tol=1e-7, max_iter=200)
    top = top_subspace_fn(f, x, 4, tol=1e-7, max_iter=200)
    assert principal_angles(out.vectors.flatten(2), top.vectors.flatten(2)).max() < 2e-2


def test_relative_ridge_is_in_units_of_the_mean_eigenvalue_of_jg():
    mf, mg = _maps(seed=5)
    x = torch.randn(1, 30)
    out = generalized_top_fn(lambda xx: xx @ mf.T, lambda xx: xx @ mg.T, x, 3, 1.0, relative_ridge=True,
                             tol=1e-6, max_iter=100)
    mean_eig = float((mg.T @ mg).trace() / 30)
    assert 0.2 * mean_eig < float(out.ridge[0]) < 5 * mean_eig  # a 3-probe estimate of the mean


def test_bad_input_is_a_clareps_error():
    f = lambda xx: xx  # noqa: E731
    with pytest.raises(ClarepsError):
        generalized_top_fn(f, f, torch.randn(1, 6), 3, 1.0)  # k above a third of the dimension
    with pytest.raises(ClarepsError):
        generalized_top_fn(f, f, torch.randn(1, 30), 2, 0.0)


def test_settled_latents_leave_the_batch_with_their_own_answer():
    mf, mg = _maps(seed=6)
    f = lambda xx: torch.tanh(xx @ mf.T)  # noqa: E731
    g = lambda xx: xx @ mg.T  # noqa: E731
    x = torch.cat([0.01 * torch.randn(1, 30), 2.0 * torch.randn(1, 30)])  # near-linear and saturated
    init = torch.randn(2, 3, 30, generator=torch.Generator().manual_seed(7))
    both = generalized_top_fn(f, g, x, 3, 1.0, tol=1e-6, max_iter=200, init=init)
    assert both.iterations[0] != both.iterations[1]  # one left the batch before the other
    for i in range(2):
        alone = generalized_top_fn(f, g, x[i:i + 1], 3, 1.0, tol=1e-6, max_iter=200, init=init[i:i + 1])
        assert both.iterations[i] == alone.iterations[0]
        assert torch.allclose(both.values[i], alone.values[0], rtol=1e-4)
