"""2-D embeddings of feature sets for the report: UMAP when umap-learn is installed, else t-SNE,
or PCA on request; cached by a hash of the features, so a rerun of the report is quick."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from clareps.io import atomic_write

NAMES = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}


def embedding_method(method: str) -> str:
    """The embedding ``auto`` stands for: UMAP when umap-learn is installed, else t-SNE."""
    if method != "auto":
        return method
    return "umap" if importlib.util.find_spec("umap") is not None else "tsne"


def _reduce(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = (x - x.mean(0)) / (x.std(0).mean() + 1e-8)
    if method == "pca" or len(x) < 5:
        return PCA(2, random_state=seed).fit_transform(x) if min(x.shape) >= 2 else np.zeros((len(x), 2))
    x = PCA(min(50, *x.shape), random_state=seed).fit_transform(x)  # as usual before a neighbour graph
    if method == "umap":
        import umap

        with _torch_threads_kept():
            return umap.UMAP(n_neighbors=min(15, len(x) - 1), random_state=seed, n_jobs=1).fit_transform(x)
    from sklearn.manifold import TSNE

    return TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed, init="pca").fit_transform(x)


@contextlib.contextmanager
def _torch_threads_kept():
    """UMAP's numba kernels start numba's OpenMP pool with a thread per core, and that pool is torch's too:
    torch would compute with that many threads afterwards in this process (other bytes than the user's
    thread count gives, and a background job set to one thread no longer on one). Run them with torch's
    thread count and give it back after."""
    import numba

    threads = torch.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def embed_2d(features: torch.Tensor, method: str, cache_dir: Path | None = None, seed: int = 0) -> np.ndarray:
    """(N, 2) coordinates of L2-normalised ``features`` (the geometry k-means NMI also sees)."""
    x = torch.nn.functional.normalize(features.float().flatten(1), dim=1).numpy().astype(np.float32)
    if cache_dir is None:
        return _reduce(x, method, seed)
    import hashlib

    key = hashlib.sha256(x.tobytes() + f"{method}:{seed}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"embedding-{key}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    xy = _reduce(x, method, seed).astype(np.float32)
    atomic_write(path, lambda p: _save(p, xy))
    return xy


def _save(path: Path, xy: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object, so numpy adds no ".npy" to the temp name
        np.save(fh, xy, allow_pickle=False)
