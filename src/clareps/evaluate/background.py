"""Clean accuracy on every test variant, background reliance and per-class accuracy.

The variants of the default benchmark (data/benchmark.py) keep each test silhouette and change
only what surrounds it: ``test-original`` (backgrounds correlated with the class as in training),
``test-only-fg`` (no background), ``test-only-bg`` (the background alone), ``test-mixed-same``
(always the class's own background source) and ``test-mixed-rand`` (a random source).
The background gap, mixed-same - mixed-rand, is what a model gains from the spurious background:
zero for a model that reads only the foreground.
"""

from __future__ import annotations

from torch import nn

from clareps.data.imageset import ImageSet
from clareps.classifiers.training import predict
from clareps.evaluate.robustness import per_class

VARIANTS = ("test-original", "test-only-fg", "test-only-bg", "test-mixed-same", "test-mixed-rand")


def variant_accuracy(model: nn.Module, data: ImageSet, batch_size: int = 250) -> dict:
    correct = predict(model, data.images, batch_size) == data.labels
    return {"accuracy": float(correct.float().mean()) if len(data) else None, "n": len(data),
            "per_class": per_class(correct, data.labels, data.num_classes)}


def background_metrics(model: nn.Module, variants: dict[str, ImageSet], batch_size: int = 250) -> dict:
    """Accuracy (overall and per class) on each variant, and the background gaps where defined."""
    model.eval()
    acc = {name: variant_accuracy(model, data, batch_size) for name, data in variants.items()}
    out: dict = {"variants": acc}
    if "test-mixed-same" in acc and "test-mixed-rand" in acc:
        same, rand = acc["test-mixed-same"], acc["test-mixed-rand"]
        out["bg_gap"] = same["accuracy"] - rand["accuracy"]
        out["bg_gap_per_class"] = [None if a is None or b is None else a - b
                                   for a, b in zip(same["per_class"], rand["per_class"])]
    if "test-original" in acc and "test-only-fg" in acc:
        out["fg_only_drop"] = acc["test-original"]["accuracy"] - acc["test-only-fg"]["accuracy"]
    if "test-only-bg" in acc:
        k = next(iter(variants.values())).num_classes
        out["only_bg_above_chance"] = acc["test-only-bg"]["accuracy"] - 1.0 / k
    return out


def background_skipped(clean: dict) -> str | None:
    """Why the background tests measured nothing (None when they measured something): they need test
    variants whose background was changed, which only data with foreground masks can give."""
    if any(k in clean for k in ("bg_gap", "fg_only_drop", "only_bg_above_chance")):
        return None
    return ("the data has no test variants with the background changed (test-mixed-same and test-mixed-rand "
            "give the background gap, test-only-fg the foreground-only drop: pass them with --variant NAME=FILE.npz)")
