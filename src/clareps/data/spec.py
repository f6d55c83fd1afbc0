"""Which data a stage reads: the default benchmark, or a user's npz / image folder / CIFAR-10."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_serializer

from clareps.config import StrictModel
from clareps.data.benchmark import BenchmarkConfig, fingerprint, load_split
from clareps.data.imageset import ImageSet
from clareps.errors import ClarepsError
from clareps.io import hash_file, hash_obj


_FOLDER_OPTIONS = ("classes", "image_size", "max_per_class")


class DataSpec(StrictModel):
    kind: Literal["benchmark", "npz", "folder", "cifar10"] = "benchmark"
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    split: str = "train"
    path: str | None = None
    num_classes: int | None = Field(None, ge=1)  # for npz files: labels must lie below it
    cache_dir: str | None = None
    # kind=folder (e.g. an ImageNet-style train/ with a folder per class): which class folders, in
    # label order; the size images are resized to; at most this many images per class (sorted names).
    classes: list[str] | None = None
    image_size: int | None = Field(None, ge=1)
    max_per_class: int | None = Field(None, ge=1)
    # a folder of released corrupted test images (CIFAR-10-C's <type>.npy and labels.npy), read by the
    # evaluation instead of corrupting the test images itself
    corruption_files: str | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_folder_options(self, handler):
        # Unset, they are left out, so configs and hashes of specs without them do not change.
        return {k: v for k, v in handler(self).items()
                if k not in (*_FOLDER_OPTIONS, "corruption_files") or v is not None}


def load_data(spec: DataSpec, split: str | None = None) -> ImageSet:
    """Load ``split`` (default: ``spec.split``) of the data a spec names."""
    split = split or spec.split
    if spec.kind != "folder" and any(getattr(spec, k) is not None for k in _FOLDER_OPTIONS):
        raise ClarepsError(f"data.{', data.'.join(_FOLDER_OPTIONS)} apply to data.kind=folder only")
    if spec.kind == "benchmark":
        return load_split(spec.benchmark, split, cache_dir=spec.cache_dir)
    if spec.path is None:
        raise ClarepsError(f"data.kind={spec.kind} needs data.path")
    from clareps.data import loaders
    if spec.kind == "npz":
        return loaders.load_npz(spec.path, num_classes=spec.num_classes)
    if spec.kind == "folder":
        sub = Path(spec.path) / split
        options = dict(size=spec.image_size, classes=spec.classes, max_per_class=spec.max_per_class)
        if sub.is_dir():
            return loaders.load_image_folder(sub, **options)
        if split != spec.split:
            raise ClarepsError(f"image folder {spec.path} has no '{split}' subfolder")
        return loaders.load_image_folder(spec.path, **options)
    return loaders.load_cifar10(spec.path, split="test" if split.startswith("test") else "train")


def data_fingerprint(spec: DataSpec, split: str | None = None) -> str:
    split = split or spec.split
    if spec.kind == "benchmark":
        return f"{fingerprint(spec.benchmark)}:{split}"
    path = Path(spec.path or "")
    content = hash_file(path) if path.is_file() else str(path.resolve())
    options = {k: getattr(spec, k) for k in _FOLDER_OPTIONS if getattr(spec, k) is not None}
    return hash_obj({"kind": spec.kind, "split": split, "content": content, **options})

