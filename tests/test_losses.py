"""The CaDistill loss terms: values against hand computations, invariances, gradient signs."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from clareps.distill.losses import ProjectionHead, align_loss, cano_loss, cka_loss, kd_loss
from clareps.errors import ClarepsError
from clareps.measures import linear_cka

ESTIMATORS = ("biased", "unbiased")


def _features(n=12, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


# -- CKA ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_cka_is_one_for_identical_and_small_for_unrelated(estimator):
    x = _features()
    assert linear_cka(x, x, estimator).item() == pytest.approx(1.0, abs=1e-12)
    assert cka_loss(x, x, estimator).item() == pytest.approx(0.0, abs=1e-12)
    y = _features(n=200, d=3, seed=1)
    z = _features(n=200, d=3, seed=2)
    assert linear_cka(y, z, estimator).item() < 0.1
    assert cka_loss(y, z, estimator).item() > 0.9


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling(estimator):
    x, y = _features(d=6), _features(d=4, seed=3)
    y = y + 0.5 * x[:, :4]  # related, so CKA is neither 0 nor 1
    q, _ = torch.linalg.qr(_features(n=6, d=6, seed=4))
    base = linear_cka(x, y, estimator)
    assert 0.1 < base.item() < 0.99
    assert linear_cka(x @ q, y, estimator).item() == pytest.approx(base.item(), abs=1e-10)
    assert linear_cka(3.7 * x, 0.2 * y, estimator).item() == pytest.approx(base.item(), abs=1e-10)
    assert linear_cka(x + 5.0, y, estimator).item() == pytest.approx(base.item(), abs=1e-10)
    # an anisotropic scaling is not an invariance: the tests above could fail
    stretch = torch.diag(torch.tensor([10.0, 1, 1, 1, 1, 0.1], dtype=torch.float64))
    assert abs(linear_cka(x @ stretch, y, estimator).item() - base.item()) > 1e-3


def test_biased_cka_matches_hand_computation():
    # For 1-D features, biased linear CKA is the squared Pearson correlation. Centred,
    # x = (-1.5, -.5, .5, 1.5) and y = (-1.5, .5, -.5, 1.5): sum xy = 4, sum x^2 = sum y^2 = 5,
    # so r = 0.8 and CKA = 0.64.
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    y = torch.tensor([[1.0], [3.0], [2.0], [4.0]])
    assert linear_cka(x, y).item() == pytest.approx(0.64, abs=1e-6)


def _hsic_u_statistic(k, l):
    """HSIC_1 of Song et al. from its definition as a U-statistic over distinct index tuples."""
    n = k.shape[0]
    perm = lambda r: list(itertools.permutations(range(n), r))  # noqa: E731
    a = sum(k[i, j] * l[i, j] for i, j in perm(2)) / len(perm(2))
    b = sum(k[i, j] * l[q, r] for i, j, q, r in perm(4)) / len(perm(4))
    c = sum(k[i, j] * l[i, q] for i, j, q in perm(3)) / len(perm(3))
    return a + b - 2 * c


def test_unbiased_cka_matches_the_u_statistic():
    x, y = _features(n=6, d=3, seed=5), _features(n=6, d=2, seed=6)
    k, l = x @ x.T, y @ y.T  # the U-statistic needs no centring
    want = _hsic_u_statistic(k, l) / (_hsic_u_statistic(k, k) * _hsic_u_statistic(l, l)).sqrt()
    assert linear_cka(x, y, "unbiased").item() == pytest.approx(want.item(), abs=1e-10)
    assert abs(linear_cka(x, y, "biased").item() - want.item()) > 1e-3  # the two estimators differ


def test_cka_gradient_step_aligns_features():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]], requires_grad=True)
    y = torch.tensor([[1.0], [3.0], [2.0], [4.0]])
    cka_loss(x, y).backward()
    with torch.no_grad():
        moved = x - 0.5 * x.grad
    corr = lambda a: torch.corrcoef(torch.stack([a.flatten(), y.flatten()]))[0, 1]  # noqa: E731
    assert corr(moved) > corr(x.detach()) + 1e-3
    assert cka_loss(moved, y) < cka_loss(x.detach(), y)


def test_cka_refuses_bad_shapes():
    with pytest.raises(ClarepsError, match="at least 4"):
        linear_cka(_features(n=3), _features(n=3), "unbiased")
    with pytest.raises(ClarepsError, match="items"):
        linear_cka(_features(n=5), _features(n=6))


# -- alignment ----------------------------------------------------------------------------------

def test_align_loss_values():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert align_loss(s, 3 * s).item() == pytest.approx(0.0, abs=1e-7)  # cosine ignores the norm
    assert align_loss(s, -s).item() == pytest.approx(2.0)
    assert align_loss(s, s.flip(1)).item() == pytest.approx(1.0)  # orthogonal
    assert align_loss(s, 3 * s, "mse").item() == pytest.approx(((2 * s) ** 2).mean().item())
    with pytest.raises(ClarepsError, match="shape"):
        align_loss(s, s[:, :1])


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_align_gradient_moves_student_toward_target(kind):
    s = torch.tensor([[1.0, 0.0]], requires_grad=True)
    t = torch.tensor([[0.0, 1.0]])
    align_loss(s, t, kind).backward()
    step = -s.grad[0]
    assert step[1] > 0  # toward the target direction
    if kind == "mse":
        assert torch.allclose(step, (t - s.detach())[0])  # d/ds mean((s - t)^2) over 2 elements
    assert align_loss(s.detach() + 0.1 * step, t, kind) < align_loss(s.detach(), t, kind)


# -- prototype cross-entropy ----------------------------------------------------------------------

def test_cano_loss_reduces_to_cross_entropy():
    # Degenerate case: prototypes are the standard basis and embeddings have unit norm, so the
    # cosine similarities are the embeddings themselves and T = 1 leaves them as logits.
    z = F.normalize(_features(n=7, d=4, seed=7), dim=1)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    protos = torch.eye(4, dtype=torch.float64)
    assert cano_loss(z, protos, y, temperature=1.0).item() == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-12)
    assert cano_loss(z, protos, y, temperature=0.5).item() == pytest.approx(
        F.cross_entropy(z / 0.5, y).item(), abs=1e-12)
    # prototypes are compared by direction only
    assert cano_loss(3 * z, 2 * protos, y, 1.0).item() == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-12)


def test_cano_gradient_pulls_toward_own_prototype():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[1.0, 1.0]], requires_grad=True)  # halfway between the two prototypes
    cano_loss(z, protos, torch.tensor([0]), temperature=0.1).backward()
    step = -z.grad[0]
    assert step @ (protos[0] - protos[1]) > 0
    assert cano_loss(z.detach() + 0.01 * step, protos, torch.tensor([0]), 0.1) < \
        cano_loss(z.detach(), protos, torch.tensor([0]), 0.1)
    with pytest.raises(ClarepsError, match="temperature"):
        cano_loss(z, protos, torch.tensor([0]), 0.0)


# -- logit KD and the projection head ----------------------------------------------------------------

def test_kd_loss_value_and_gradient():
    t = torch.tensor([[3.0, 0.0, -1.0]])
    assert kd_loss(t, t, 4.0).item() == pytest.approx(0.0, abs=1e-7)
    s = torch.zeros(1, 3, requires_grad=True)
    loss = kd_loss(s, t, 2.0)
    p, q = F.softmax(t / 2, 1), F.softmax(s.detach() / 2, 1)
    assert loss.item() == pytest.approx(4 * (p * (p.log() - q.log())).sum().item(), abs=1e-6)
    loss.backward()
    assert -s.grad[0, 0] > 0 and -s.grad[0, 2] < 0  # raise the teacher's top class, lower its last


def test_projection_head_shapes():
    x = torch.randn(5, 8)
    assert ProjectionHead(8, 3, hidden=16)(x).shape == (5, 3)
    linear = ProjectionHead(8, 3, hidden=0)
    assert isinstance(linear.net, torch.nn.Linear) and linear(x).shape == (5, 3)
