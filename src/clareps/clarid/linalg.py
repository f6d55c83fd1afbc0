"""Small batched linear algebra for the subspace engine.

Bases are stored as rows: a tensor ``(..., n, D)`` holds n vectors of dimension D.
"""

from __future__ import annotations

import torch


def orthonormal_rows(a: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (rows) of the row space of ``a`` (..., n, D), n <= D, via QR."""
    q, r = torch.linalg.qr(a.mT)
    # Fix QR's sign freedom so the result is a continuous function of ``a``.
    sign = torch.where(r.diagonal(dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(q.dtype)
    return (q * sign.unsqueeze(-2)).mT


def project_out(w: torch.Tensor, bases: list[torch.Tensor]) -> torch.Tensor:
    """Remove from the rows of ``w`` their components along each orthonormal row basis.

    Two passes of Gram-Schmidt ("twice is enough"): once the iteration has converged,
    ``w`` lies almost inside the bases and one pass leaves fp32 cancellation error.
    """
    for _ in range(2):
        for b in bases:
            w = w - (w @ b.mT) @ b
    return w


def orthonormal_complement_rows(w: torch.Tensor, bases: list[torch.Tensor]) -> torch.Tensor:
    """Orthonormal rows spanning ``w`` with ``bases`` projected out, orthogonal to the bases.

    When ``w`` is (numerically) inside the bases, QR of the tiny remainder returns arbitrary
    directions; projecting and orthonormalising once more keeps them orthogonal to the bases.
    """
    w = orthonormal_rows(project_out(w, bases))
    return orthonormal_rows(project_out(w, bases))


def ritz(m: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rayleigh-Ritz for J on an orthonormal basis S, given ``m = J S`` as rows (..., n, D_out).

    Returns the top-k singular value estimates (..., k), descending, and their coordinates
    ``c`` (..., n, k) in the basis, both float64: the small problem is solved through the
    Gram matrix, accurate in double precision, and fine when D_out < n (surplus values 0).
    """
    m64 = m.double()
    evals, evecs = torch.linalg.eigh(m64 @ m64.mT)
    evals, evecs = evals.flip(-1), evecs.flip(-1)
    s = evals[..., :k].clamp_min(0).sqrt()
    return s, evecs[..., :k]


def principal_angles(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, descending) between the spans of orthonormal rows u and v.

    Both (..., k, D) with the same k. Computed from sines, sin(theta) = singular values of
    ``v - (v u^T) u``, which stays accurate for small angles (arccos of cosines does not).
    """
    u64, v64 = u.double(), v.double()
    resid = v64 - (v64 @ u64.mT) @ u64
    sines = torch.linalg.svdvals(resid).clamp(0.0, 1.0)
    return torch.asin(sines).to(u.dtype)
