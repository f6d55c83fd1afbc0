"""Loaders for data users bring (npz, image folders, CIFAR-10 batches); nothing is downloaded."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from clareps.data.imageset import ImageSet
from clareps.errors import ClarepsError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}

# Only what a pickled numpy array (or dict/list of them) needs; anything else is refused.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # arrays at pickle protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # Python 3 writes bytes this way at pickle protocol < 3
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}")


def safe_unpickle(data: bytes, path: str | Path):
    """Unpickle ``data`` allowing only numpy arrays and plain containers; errors name ``path``."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise ClarepsError(f"cannot read pickle {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None


def _to_unit_float(images: np.ndarray, path) -> torch.Tensor:
    if images.dtype == np.uint8:
        return torch.from_numpy(images.astype(np.float32) / 255.0)
    if np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32)
        if images.size and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise ClarepsError(f"{path}: float images must lie in [0, 1]")
        return torch.from_numpy(images)
    raise ClarepsError(f"{path}: images must be uint8 or float, got {images.dtype}")


def _to_nchw(images: np.ndarray, path) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        return images.transpose(0, 3, 1, 2)
    if images.ndim == 4 and images.shape[1] in (1, 3):
        return images
    raise ClarepsError(
        f"{path}: images must be (N,H,W,C) or (N,C,H,W) with C in (1, 3), or (N,H,W); got {images.shape}"
    )


def _labels(labels: np.ndarray, n: int, num_classes: int | None, path) -> tuple[torch.Tensor, int]:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ClarepsError(f"{path}: labels must be {n} integers, got {labels.dtype} of shape {labels.shape}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if n else 1
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ClarepsError(
            f"{path}: label out of range [0, {num_classes}): found {int(labels.min())}..{int(labels.max())}"
        )
    return torch.from_numpy(labels.astype(np.int64)), num_classes


def _masks(masks: np.ndarray, shape: tuple[int, ...], path) -> torch.Tensor:
    n, _, h, w = shape
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    elif masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.shape != (n, h, w):
        raise ClarepsError(f"{path}: masks must be (N,H,W) = {(n, h, w)}, got {masks.shape}")
    if masks.dtype == np.bool_:
        binary = masks
    elif masks.dtype == np.uint8:
        binary = masks > (127 if masks.max(initial=0) > 1 else 0)
    else:
        binary = masks.astype(np.float32) >= 0.5
    return torch.from_numpy(binary.astype(np.float32))[:, None]


def load_npz(path: str | Path, num_classes: int | None = None) -> ImageSet:
    """An ``.npz`` with ``images``, ``labels`` and optionally ``masks``, ``bg_source``, ``class_names``."""
    path = Path(path)
    if not path.is_file():
        raise ClarepsError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ClarepsError(f"cannot read npz file {path}: {exc}".splitlines()[0]) from None
    for key in ("images", "labels"):
        if key not in arrays:
            raise ClarepsError(f"{path}: missing array '{key}' (has {sorted(arrays)})")
    names = [str(s) for s in arrays["class_names"]] if "class_names" in arrays else []
    if num_classes is None and names:
        num_classes = len(names)
    images = _to_unit_float(_to_nchw(arrays["images"], path), path).contiguous()
    labels, num_classes = _labels(arrays["labels"], images.shape[0], num_classes, path)
    masks = _masks(arrays["masks"], tuple(images.shape), path) if "masks" in arrays else None
    bg = arrays.get("bg_source")
    if bg is not None:
        bg = torch.from_numpy(np.asarray(bg).astype(np.int64))
    return _make(path, images, labels, masks, bg, num_classes, names)


def load_image_folder(path: str | Path, size: int | None = None, classes: list[str] | None = None,
                      max_per_class: int | None = None) -> ImageSet:
    """A folder with one subfolder of images per class (sorted names, or ``classes`` in that order:
    a class subset of e.g. ImageNet's train/), each image resized to ``size`` when given, keeping
    the first ``max_per_class`` files of each class by name when given."""
    path = Path(path)
    if not path.is_dir():
        raise ClarepsError(f"image folder not found: {path}")
    if classes is None:
        classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ClarepsError(f"{path}: no class subfolders")
    images, labels = [], []
    for c, name in enumerate(classes):
        folder = path / name
        if not folder.is_dir():
            raise ClarepsError(f"{path}: class folder '{name}' not found")
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:max_per_class]
        if not files:
            raise ClarepsError(f"{folder}: no images")
        for f in files:
            images.append(_read_image(f, size))
            labels.append(c)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ClarepsError(f"{path}: images differ in size {sorted(shapes)[:3]}; pass size= to resize them")
    arr = np.stack(images).transpose(0, 3, 1, 2)
    tensor = torch.from_numpy(arr.astype(np.float32) / 255.0)
    return _make(path, tensor, torch.tensor(labels, dtype=torch.int64), None, None, len(classes), list(classes))


def read_images(path: str | Path, size: int) -> torch.Tensor:
    """One image file, or every image file of a folder (sorted by name, not recursive), as RGB
    (N, 3, size, size) floats in [0, 1], each resized to ``size``."""
    path = Path(path)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ClarepsError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    elif path.is_file():
        files = [path]
    else:
        raise ClarepsError(f"images not found: {path}")
    arr = np.stack([_read_image(f, size) for f in files]).transpose(0, 3, 1, 2)
    return torch.from_numpy(arr.astype(np.float32) / 255.0)


def _read_image(f: Path, size: int | None) -> np.ndarray:
    try:
        with Image.open(f) as im:
            im = im.convert("RGB")
            if size is not None:
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ClarepsError(f"cannot read image {f}: {exc}".splitlines()[0]) from None


def load_cifar10(path: str | Path, split: str = "train") -> ImageSet:
    """CIFAR-10 from its python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``)."""
    path = Path(path)
    if split not in ("train", "test"):
        raise ClarepsError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
    if not path.is_dir():
        raise ClarepsError(f"CIFAR-10 folder not found: {path}")
    if not (path / "batches.meta").exists() and (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    data, labels = [], []
    for name in names:
        batch = _read_pickle_dict(path / name)
        x = np.asarray(batch.get(b"data", batch.get("data")))
        y = np.asarray(batch.get(b"labels", batch.get("labels")))
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
            raise ClarepsError(f"{path / name}: 'data' must be uint8 (N, 3072), got {x.dtype} {x.shape}")
        data.append(x.reshape(-1, 3, 32, 32))
        labels.append(y)
    class_names = [f"class{i}" for i in range(10)]
    meta_path = path / "batches.meta"
    if meta_path.exists():
        meta = _read_pickle_dict(meta_path)
        raw = meta.get(b"label_names", meta.get("label_names"))
        if raw is not None:
            class_names = [s.decode() if isinstance(s, bytes) else str(s) for s in raw]
    x = np.concatenate(data)
    y, _ = _labels(np.concatenate(labels), x.shape[0], len(class_names), path / names[0])
    images = torch.from_numpy(x.astype(np.float32) / 255.0)
    return _make(path, images, y, None, None, len(class_names), class_names)


def _read_pickle_dict(path: Path) -> dict:
    if not path.is_file():
        raise ClarepsError(f"CIFAR-10 file not found: {path}")
    obj = safe_unpickle(path.read_bytes(), path)
    if not isinstance(obj, dict):
        raise ClarepsError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _make(path, images, labels, masks, bg, num_classes, names) -> ImageSet:
    try:
        return ImageSet(images, labels, masks, bg, num_classes, names)
    except ClarepsError as exc:
        raise ClarepsError(f"{path}: {exc}") from None
