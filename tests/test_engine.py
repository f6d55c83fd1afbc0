"""The CLARID subspace engine, checked against full Jacobians (jacrev + SVD)."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev

from clareps.clarid.engine import JacobianOperator, top_subspace, top_subspace_fn
from clareps.clarid.forward_mode import jacobian_mode
from clareps.clarid.linalg import principal_angles
from clareps.taps import run_to_tap
from clareps.errors import ClarepsError


pytestmark = pytest.mark.usefixtures("one_thread")


def _known_map(d_in: int, d_out: int, svals: list[float], seed: int = 0):
    """A = U diag(s) V^T with chosen singular values; returns A and its right singular vectors."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(d_out, d_in, generator=g))[0]
    v = torch.linalg.qr(torch.randn(d_in, d_in, generator=g))[0]
    s = torch.tensor(svals + torch.linspace(1.0, 0.05, d_in - len(svals)).tolist())
    return u @ torch.diag(s) @ v.T, v.T


def _full_svd(f, x_item: torch.Tensor):
    jac = jacrev(f)(x_item).reshape(-1, x_item.numel())
    _, s, vh = torch.linalg.svd(jac, full_matrices=False)
    return s, vh


def _assert_orthonormal(vectors: torch.Tensor, atol: float = 1e-5):
    v = vectors.flatten(2)
    eye = torch.eye(v.shape[1]).expand(v.shape[0], -1, -1)
    assert torch.allclose(v @ v.mT, eye, atol=atol)


def test_mildly_nonlinear_map_matches_full_svd_and_is_seed_independent():
    a, _ = _known_map(48, 64, [10.0, 8.0, 6.0, 4.0])
    f = lambda x: x.flatten(1) @ a.T + 0.05 * torch.tanh(x.flatten(1) @ a.T)  # noqa: E731
    x, k = torch.randn(2, 3, 4, 4), 4
    runs = [top_subspace_fn(f, x, k, tol=1e-6, seed=seed) for seed in (0, 1)]
    for b in range(2):
        s, vh = _full_svd(lambda xi: f(xi[None])[0], x[b])
        for r in runs:
            assert torch.allclose(r.singular_values[b], s[:k], rtol=1e-3)
            assert principal_angles(vh[:k], r.vectors[b].flatten(1)).max() < 1e-2
            assert r.converged[b] and r.energy[b] == pytest.approx((r.singular_values[b] ** 2).sum().item())
        assert principal_angles(runs[0].vectors[b].flatten(1), runs[1].vectors[b].flatten(1)).max() < 1e-2
    for r in runs:
        _assert_orthonormal(r.vectors)
        assert r.vectors.shape == (2, k, 3, 4, 4)
        assert (r.singular_values[:, :-1] >= r.singular_values[:, 1:]).all()


@pytest.mark.parametrize("k", [4, 5, 6])
def test_k_up_to_the_input_dimension(k):
    a, _ = _known_map(6, 8, [6.0, 5.0, 4.0])
    res = top_subspace_fn(lambda x: x @ a.T, torch.randn(2, 6), k, tol=1e-7)
    assert torch.allclose(res.singular_values, torch.linalg.svdvals(a)[:k].expand(2, -1), rtol=1e-4)
    _assert_orthonormal(res.vectors)


def test_tiny_unet_captures_optimal_energy(tiny_unet):
    with torch.no_grad():
        for p in tiny_unet.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, t, y, k = torch.randn(2, 3, 8, 8), 300, torch.tensor([1, 7]), 4
    res = top_subspace(tiny_unet, x, t, y, k, tol=1e-4)
    _assert_orthonormal(res.vectors)
    for b in range(2):
        f = lambda xi: run_to_tap(tiny_unet, "mid", xi[None], torch.tensor([t]), y[b:b + 1]).flatten()  # noqa: E731
        s, vh = _full_svd(f, x[b])
        assert res.energy[b] >= 0.999 * (s[:k] ** 2).sum()
        assert torch.allclose(res.singular_values[b], s[:k], rtol=1e-2)
        assert res.max_angle[b] >= 0 and res.iterations[b] >= 1


def test_finished_latents_leave_the_batch():
    d, k = 48, 4
    g = torch.Generator().manual_seed(1)
    fast = torch.randn(d, k, generator=g) @ torch.randn(k, d, generator=g)  # rank k: exact after 1 step
    slow, _ = _known_map(d, d, [5.0, 4.9, 4.8, 4.7, 4.6], seed=2)  # a crowded top: slow
    mats, batches = torch.stack([fast, slow]), []

    def f(x, idx):
        batches.append(x.shape[0])
        return torch.einsum("bod,bd->bo", mats[idx], x.flatten(1))

    res = top_subspace_fn(f, torch.randn(2, d), k, (torch.tensor([0, 1]),), tol=1e-6, max_iter=200)
    assert res.converged.all()
    assert res.iterations[0] <= 2 < res.iterations[1]
    # f runs once to linearise the VJP, once per JVP batch (start + one per step); once the
    # fast latent stopped, everything ran on the slow one alone.
    fast_steps, slow_steps = res.iterations.tolist()
    assert batches == [2] * (2 + fast_steps) + [1] * (1 + slow_steps - fast_steps)


def test_warm_start_from_true_vectors_converges_at_once():
    a, vt = _known_map(48, 64, [10.0, 8.0, 6.0, 4.0])
    f = lambda x: x.flatten(1) @ a.T  # noqa: E731
    x, k = torch.randn(3, 48), 4
    init = vt[:k].expand(3, k, 48).clone()
    res = top_subspace_fn(f, x, k, tol=1e-4, init=init)
    assert (res.iterations == 1).all() and res.converged.all()
    assert torch.allclose(res.singular_values, torch.tensor([10.0, 8.0, 6.0, 4.0]).expand(3, -1), rtol=1e-5)
    cold = top_subspace_fn(f, x, k, tol=1e-4)
    assert (cold.iterations > 1).all()


def test_vjp_linearisation_is_reusable_and_operators_match_jacobian(tiny_unet):
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([100, 100]), torch.tensor([3, 4])
    f = lambda xx, tt, yy: run_to_tap(tiny_unet, "mid", xx, tt, yy).flatten(1)  # noqa: E731
    with jacobian_mode(tiny_unet), torch.no_grad():
        op = JacobianOperator(f, x, [t, y])
        cot = [torch.randn(2, 3, op.out_dim) for _ in range(2)]
        reused = [op.vjp(c) for c in cot]  # the second call reuses the same saved forward
        fresh = JacobianOperator(f, x, [t, y]).vjp(cot[1])
        tang = torch.randn(2, 3, x[0].numel())
        pushed = op.jvp(tang)
    assert torch.equal(reused[1], fresh)
    for b in range(2):
        jac = jacrev(lambda xi: f(xi[None], t[b:b + 1], y[b:b + 1])[0])(x[b]).reshape(op.out_dim, -1)
        assert torch.allclose(reused[0][b], cot[0][b] @ jac, atol=1e-5)
        assert torch.allclose(pushed[b], tang[b] @ jac.T, atol=1e-5)


def test_the_engine_hands_back_f_at_its_latents(tiny_unet):
    """Subspace.features is f(x) from the VJP linearisation's own forward, bitwise what a separate forward
    gives (a bank stores it as f(x_te)), for the whole batch even when latents leave it early."""
    x, t, y = torch.randn(3, 3, 8, 8), torch.tensor([100, 100, 100]), torch.tensor([3, 4, 5])
    sub = top_subspace(tiny_unet, x, t, y, 2, max_iter=3, tol=0.5)
    with torch.no_grad():
        assert torch.equal(sub.features, run_to_tap(tiny_unet, "mid", x, t, y).flatten(1))


def test_engine_restores_model_state(tiny_unet):
    tiny_unet.train()
    precision = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    top_subspace(tiny_unet, torch.randn(1, 3, 8, 8), 10, 0, 2, max_iter=2)
    assert tiny_unet.training and torch.is_grad_enabled()
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == precision


def test_on_step_reports_every_step():
    a, _ = _known_map(48, 64, [10.0, 8.0, 6.0, 4.0])
    seen = []
    res = top_subspace_fn(lambda x: x @ a.T, torch.randn(2, 48), 4, tol=1e-5,
                          on_step=lambda step, idx, v, s: seen.append((step, idx.tolist(), v.shape, s.shape)))
    assert [s[0] for s in seen] == list(range(res.iterations.max().item() + 1))
    assert seen[0][2:] == ((2, 4, 48), (2, 4))


@pytest.mark.parametrize("bad", ["k_too_big", "k_zero", "x_3d", "x_channels", "tap", "init", "args", "tol"])
def test_bad_input_is_a_clareps_error(tiny_unet, bad):
    x = torch.randn(2, 3, 8, 8)
    f = lambda xx: xx.flatten(1)  # noqa: E731
    calls = {
        "k_too_big": lambda: top_subspace_fn(f, x, 3 * 8 * 8 + 1),
        "k_zero": lambda: top_subspace(tiny_unet, x, 10, 1, 0),
        "x_3d": lambda: top_subspace(tiny_unet, x[0], 10, 1, 2),
        "x_channels": lambda: top_subspace(tiny_unet, torch.randn(2, 4, 8, 8), 10, 1, 2),
        "tap": lambda: top_subspace(tiny_unet, x, 10, 1, 2, tap="mid.nope"),
        "init": lambda: top_subspace_fn(f, x, 2, init=torch.randn(2, 3, 3, 8, 8)),
        "args": lambda: top_subspace_fn(lambda xx, a: xx.flatten(1), x, 2, (torch.zeros(3),)),
        "tol": lambda: top_subspace_fn(f, x, 2, tol=0.0),
    }
    with pytest.raises(ClarepsError):
        calls[bad]()


def test_diffusers_model_with_attention():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    model = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                  block_out_channels=(8, 16), norm_num_groups=4, num_class_embeds=3,
                                  down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                  up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=8)
    processors = lambda: [type(m.processor) for m in model.modules() if hasattr(m, "processor")]  # noqa: E731
    before = processors()
    x, k = torch.randn(1, 3, 8, 8), 3
    res = top_subspace(model, x, 50, 1, k, tap="mid_block", tol=1e-5)
    assert processors() == before and len(before) >= 2
    with jacobian_mode(model):
        s, _ = _full_svd(lambda xi: run_to_tap(model, "mid_block", xi[None], torch.tensor([50]),
                                               torch.tensor([1])).flatten(), x[0])
    assert torch.allclose(res.singular_values[0], s[:k], rtol=1e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tiny_unet):
    x, k = torch.randn(2, 3, 8, 8), 3
    cpu = top_subspace(tiny_unet, x, 200, 2, k, tol=1e-5)
    gpu = top_subspace(tiny_unet.cuda(), x.cuda(), 200, 2, k, tol=1e-5)
    assert gpu.vectors.is_cuda
    assert torch.allclose(gpu.singular_values.cpu(), cpu.singular_values, rtol=1e-3)
    for b in range(2):
        assert principal_angles(cpu.vectors[b].flatten(1), gpu.vectors[b].flatten(1).cpu()).max() < 1e-2
