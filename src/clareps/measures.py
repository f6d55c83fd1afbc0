"""Measures shared by every stage: linear CKA between two feature sets (the CaDistill loss term, the
student probe), class separability of features (k-means NMI and its chance-corrected AMI) and a linear
probe (its accuracy, and its out-of-fold verdict per item). Low in the flow: torch, scikit-learn (loaded on
first use) and ``clareps.errors`` only."""

from __future__ import annotations

from typing import Literal

import torch

from clareps.errors import ClarepsError

EPS = 1e-12


def _gram(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1)
    x = x - x.mean(0, keepdim=True)
    return x @ x.T


def _hsic_biased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    # k and l are Gram matrices of centred features, so tr(K H L H) = tr(K L) = sum(K * L);
    # the 1 / (n - 1)^2 factor cancels in CKA and is left out.
    return (k * l).sum()


def _hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator of Song et al. (2012), eq. 5; needs n > 3."""
    n = k.shape[0]
    k = k - torch.diag_embed(torch.diagonal(k))
    l = l - torch.diag_embed(torch.diagonal(l))
    trace = (k * l).sum()
    sums = k.sum() * l.sum() / ((n - 1) * (n - 2))
    cross = 2 * (k.sum(0) @ l.sum(0)) / (n - 2)
    return (trace + sums - cross) / (n * (n - 3))


def linear_cka(x: torch.Tensor, y: torch.Tensor,
               estimator: Literal["biased", "unbiased"] = "biased") -> torch.Tensor:
    """Linear CKA between two sets of features of the same n items: x (n, d1), y (n, d2)."""
    if x.shape[0] != y.shape[0]:
        raise ClarepsError(f"linear_cka: x has {x.shape[0]} items, y has {y.shape[0]}")
    if estimator not in ("biased", "unbiased"):
        raise ClarepsError(f"unknown CKA estimator '{estimator}' (use biased or unbiased)")
    n = x.shape[0]
    if n < (4 if estimator == "unbiased" else 2):
        raise ClarepsError(f"linear_cka ({estimator}) needs at least {4 if estimator == 'unbiased' else 2} "
                           f"items, got {n}")
    hsic = _hsic_biased if estimator == "biased" else _hsic_unbiased
    k, l = _gram(x), _gram(y)
    denom = (hsic(k, k).clamp_min(0) * hsic(l, l).clamp_min(0)).sqrt().clamp_min(EPS)
    return hsic(k, l) / denom


def kmeans_scores(feats: torch.Tensor, labels: torch.Tensor, clusters: int, seed: int = 0) -> tuple[float, float]:
    """(NMI, AMI) between k-means clusters of L2-normalised features and the classes. AMI is
    corrected for chance: about 0 for clusters unrelated to the classes, whatever their number."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    x = torch.nn.functional.normalize(feats.float(), dim=1).numpy()
    assign = KMeans(clusters, n_init=10, random_state=seed).fit_predict(x)
    y = labels.numpy()
    return float(normalized_mutual_info_score(y, assign)), float(adjusted_mutual_info_score(y, assign))


def kmeans_nmi(feats: torch.Tensor, labels: torch.Tensor, clusters: int, seed: int = 0) -> float:
    """NMI between k-means clusters of L2-normalised features and the classes."""
    return kmeans_scores(feats, labels, clusters, seed)[0]


def _probe_setup(feats: torch.Tensor, labels: torch.Tensor, folds: int, seed: int):
    """(normalised features, labels, stratified folds), or None when a class has fewer than two items."""
    from sklearn.model_selection import StratifiedKFold

    counts = torch.bincount(labels)
    counts = counts[counts > 0]
    folds = min(folds, int(counts.min())) if len(counts) > 1 else 0
    if folds < 2:
        return None
    x = torch.nn.functional.normalize(feats.float(), dim=1).numpy()
    return x, labels.numpy(), StratifiedKFold(folds, shuffle=True, random_state=seed)


def linear_probe(feats: torch.Tensor, labels: torch.Tensor, folds: int = 5, seed: int = 0) -> float | None:
    """Stratified k-fold accuracy of a logistic regression on L2-normalised features (None when a
    class has fewer than two items)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    setup = _probe_setup(feats, labels, folds, seed)
    if setup is None:
        return None
    x, y, cv = setup
    return float(cross_val_score(LogisticRegression(max_iter=1000), x, y, cv=cv).mean())


def probe_correct(feats: torch.Tensor, labels: torch.Tensor, folds: int = 5, seed: int = 0) -> torch.Tensor | None:
    """Per item, 1 where the probe of ``linear_probe`` (same folds), trained without the item's fold,
    names its class: a per-item measure, so two banks of the same items get a paired interval."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    setup = _probe_setup(feats, labels, folds, seed)
    if setup is None:
        return None
    x, y, cv = setup
    return torch.from_numpy(cross_val_predict(LogisticRegression(max_iter=1000), x, y, cv=cv) == y).float()
