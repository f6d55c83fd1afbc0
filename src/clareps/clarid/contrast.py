"""The top of a generalized eigenproblem of two Jacobians, matrix-free: A v = lam B v with
A = J_f^T J_f and B = J_g^T J_g + ridge I.

Directions v with a large lam change the features f much and the map g little (per unit of
||v||, the ridge keeps B positive definite and sets how much "changes g little" counts). The
class-contrastive directions (``clarid/families.py``) take g to be the class evidence.

Algorithm: block LOBPCG (Knyazev 2001) with a B operator, written for Jacobians like the
engine (``clarid/engine.py``): only J_f, J_g (JVPs) and J_f^T, J_g^T (VJPs) are applied, each
vectorised over the block. Per step, on the Euclidean-orthonormal basis S = [X, W, P]:

    Rayleigh-Ritz: (S^T A S) c = lam (S^T B S) c from the Gram matrices of J_f S and J_g S (fp64,
        through a Cholesky factor of S^T B S); X <- the top-k Ritz vectors (B-orthonormal);
    W <- the residuals A X - B X diag(lam), orthonormalised against X and P (k VJPs of f and of g);
    P <- the part of the new X outside the old one (as the engine).

Stopping, per latent: when every lam^(1/2) and their energy change by less than ``tol``
(relative) between two steps, or after ``max_iter`` steps; a latent that has stopped leaves the
batch, as in the engine. The returned directions are the Ritz
vectors in order of lam, made Euclidean-orthonormal by a QR in that order (the first j span the
top-j Ritz vectors for every j), so they can be projected out like any other direction set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from clareps.clarid.engine import FeatureFn, JacobianOperator, _settled
from clareps.clarid.forward_mode import full_fp32
from clareps.clarid.linalg import orthonormal_complement_rows, orthonormal_rows
from clareps.errors import ClarepsError


@dataclass
class Contrast:
    vectors: torch.Tensor  # (B, k, *x.shape[1:]) Euclidean-orthonormal, nested in order of lam
    values: torch.Tensor  # (B, k) generalized eigenvalues lam, descending
    iterations: torch.Tensor  # (B,) steps until the item settled (max_iter when it did not)
    converged: torch.Tensor  # (B,) bool
    ridge: torch.Tensor  # (B,) the ridge used
    features: torch.Tensor  # (B, D_f) f(x)


def mean_gram_eigenvalue(op: JacobianOperator, rows: torch.Tensor) -> torch.Tensor:
    """Per item, ||J V||_F^2 / n for orthonormal rows V (b, n, D): an estimate of trace(J^T J) / D."""
    return op.jvp(rows).pow(2).sum((1, 2)) / rows.shape[1]


def generalized_top_fn(f: FeatureFn, g: FeatureFn, x: torch.Tensor, k: int, ridge: float | torch.Tensor,
                       args: Sequence[torch.Tensor] = (), g_args: Sequence[torch.Tensor] = (),
                       tol: float = 1e-3, max_iter: int = 50, init: torch.Tensor | None = None,
                       seed: int = 0, relative_ridge: bool = False) -> Contrast:
    """The top-k of J_f^T J_f v = lam (J_g^T J_g + ridge I) v per latent of x (B, ...).

    ``f(x, *args)`` and ``g(x, *g_args)`` are batch-independent maps to (B, D). ``ridge``: a number
    or one per item (> 0); with ``relative_ridge`` it is in units of the mean eigenvalue of
    J_g^T J_g, estimated from the start block (``mean_gram_eigenvalue``).
    """
    dim = x[0].numel()
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dim // 3:
        raise ClarepsError(f"k must be an int in [1, {dim // 3}] (a third of the input dimension), got {k!r}")
    if not tol > 0 or not isinstance(max_iter, int) or max_iter < 1:
        raise ClarepsError(f"need tol > 0 and an int max_iter >= 1, got tol={tol!r}, max_iter={max_iter!r}")
    x, b = x.float(), x.shape[0]
    with torch.no_grad(), full_fp32():
        if init is None:
            start = torch.randn(b, k, dim, generator=torch.Generator().manual_seed(seed)).to(x.device)
        else:
            start = init.reshape(b, k, dim).to(x.device, torch.float32)
        op_f, op_g = JacobianOperator(f, x, list(args)), JacobianOperator(g, x, list(g_args))
        xv = orthonormal_rows(start)
        r = torch.as_tensor(ridge, dtype=torch.float64, device=x.device).expand(b).clone()
        if relative_ridge:
            r = r * mean_gram_eigenvalue(op_g, xv).double()
        if not bool((r > 0).all()):
            raise ClarepsError("the ridge must be > 0 (J_g^T J_g alone may be singular)")
        def rebuild(active: torch.Tensor) -> tuple[JacobianOperator, JacobianOperator]:
            return (JacobianOperator(f, x[active], [a[active] for a in args]),
                    JacobianOperator(g, x[active], [a[active] for a in g_args]))

        vectors, lam, steps, done = _lobpcg(op_f, op_g, xv, r, k, tol, max_iter, rebuild)
    return Contrast(vectors=orthonormal_rows(vectors).reshape(b, k, *x.shape[1:]), values=lam.float(),
                    iterations=steps, converged=done, ridge=r.float(), features=op_f.value)


def _ritz(jf: torch.Tensor, jg: torch.Tensor, gram_s: torch.Tensor, ridge: torch.Tensor, k: int):
    """Top-k of the small pencil on a basis S given J_f S, J_g S (rows) and S S^T: (lam, c (b, n, k))."""
    a = jf.double() @ jf.double().mT
    bm = jg.double() @ jg.double().mT + ridge[:, None, None] * gram_s
    low = torch.linalg.cholesky(0.5 * (bm + bm.mT))
    m = torch.linalg.solve_triangular(low, torch.linalg.solve_triangular(low, a, upper=False).mT, upper=False)
    evals, evecs = torch.linalg.eigh(0.5 * (m + m.mT))
    evals, evecs = evals.flip(-1)[..., :k], evecs.flip(-1)[..., :k]
    c = torch.linalg.solve_triangular(low.mT, evecs, upper=True)  # B-orthonormal coordinates
    return evals.clamp_min(0), c


def _lobpcg(op_f: JacobianOperator, op_g: JacobianOperator, xv: torch.Tensor, ridge: torch.Tensor, k: int, tol: float,
            max_iter: int, rebuild):
    """``rebuild(active)``: the two operators at the latents still running (a settled one leaves the batch)."""
    b = xv.shape[0]
    eye = lambda n, m: torch.eye(n, dtype=torch.float64, device=xv.device).expand(m, n, n)  # noqa: E731
    comb = lambda cc, rows: cc.mT.to(rows.dtype) @ rows  # noqa: E731
    jf, jg = op_f.jvp(xv), op_g.jvp(xv)
    lam, c = _ritz(jf, jg, eye(k, b), ridge, k)
    xv, jf, jg = comb(c, xv), comb(c, jf), comb(c, jg)
    p = jpf = jpg = None
    out_v, out_lam = xv.clone(), lam.clone()
    steps = torch.full((b,), max_iter, dtype=torch.long, device=xv.device)
    done = torch.zeros(b, dtype=torch.bool, device=xv.device)
    active = torch.arange(b, device=xv.device)
    for step in range(1, max_iter + 1):
        scale = (lam * ridge[:, None]).float()[..., None]
        resid = op_f.vjp(jf) - (op_g.vjp(jg) * lam.float()[..., None] + scale * xv)
        xo = orthonormal_rows(xv)
        w = orthonormal_complement_rows(resid, [xo] if p is None else [xo, p])
        jwf, jwg = op_f.jvp(w), op_g.jvp(w)
        basis = torch.cat([xo, w] + ([] if p is None else [p]), 1)
        # xo = mix @ xv (same span), so its images are the same combinations of the known ones
        mix = torch.linalg.solve(xv @ xv.mT, xv @ xo.mT).mT
        ifs = torch.cat([mix @ jf, jwf] + ([] if p is None else [jpf]), 1)
        igs = torch.cat([mix @ jg, jwg] + ([] if p is None else [jpg]), 1)
        lam_new, c = _ritz(ifs, igs, eye(basis.shape[1], len(active)), ridge, k)
        q = orthonormal_rows(c.mT)  # the new X's span in coordinates, Euclidean-orthonormal
        outside = torch.cat([torch.zeros_like(c[:, :k]), c[:, k:]], 1)
        pc = orthonormal_complement_rows(outside.mT, [q]).float()
        p, jpf, jpg = pc @ basis, pc @ ifs, pc @ igs
        xv, jf, jg = comb(c, basis), comb(c, ifs), comb(c, igs)
        settled = _settled(lam_new.clamp_min(0).sqrt(), lam.clamp_min(0).sqrt(), tol)
        out_v[active], out_lam[active] = xv, lam_new
        steps[active[settled]], done[active[settled]] = step, True
        lam = lam_new
        if bool(settled.all()):
            break
        if bool(settled.any()):
            keep = ~settled
            active, xv, jf, jg, lam, ridge = active[keep], xv[keep], jf[keep], jg[keep], lam[keep], ridge[keep]
            p, jpf, jpg = p[keep], jpf[keep], jpg[keep]
            op_f, op_g = rebuild(active)
    return out_v, out_lam, steps, done
