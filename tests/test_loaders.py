"""Loaders for user data: npz, image folders, CIFAR-10 batches (with a restricted unpickler)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from clareps.data.loaders import load_cifar10, load_image_folder, load_npz, safe_unpickle
from clareps.errors import ClarepsError


def test_npz_layouts_and_masks(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)
    masks = np.zeros((6, 5, 5), np.uint8)
    masks[:, 1:3, 1:4] = 255
    np.savez(tmp_path / "a.npz", images=nhwc, labels=np.array([0, 1, 2, 0, 1, 2]), masks=masks,
             class_names=np.array(["x", "y", "z"]))  # fmt: skip
    ds = load_npz(tmp_path / "a.npz")
    assert ds.images.shape == (6, 3, 5, 5) and ds.num_classes == 3 and ds.class_names == ["x", "y", "z"]
    assert float(ds.images[2, 1, 3, 4]) == pytest.approx(nhwc[2, 3, 4, 1] / 255.0)
    assert ds.masks.shape == (6, 1, 5, 5) and ds.masks.sum() == 6 * 6
    assert ds.labels.dtype == torch.int64

    nchw = rng.random((4, 1, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "b.npz", images=nchw, labels=np.array([0, 3, 1, 1]))
    ds = load_npz(tmp_path / "b.npz", num_classes=5)
    assert ds.num_classes == 5 and torch.equal(ds.images, torch.from_numpy(nchw))
    np.savez(tmp_path / "c.npz", images=nhwc[..., 0], labels=np.zeros(6, np.int64), class_names=np.array(["p", "q"]))
    gray = load_npz(tmp_path / "c.npz")
    assert gray.images.shape == (6, 1, 5, 5) and gray.num_classes == 2


@pytest.mark.parametrize(
    "arrays, match",
    [
        (dict(images=np.zeros((3, 4, 4, 3), np.uint8), labels=np.array([0, 1, 5])), "label out of range"),
        (dict(images=np.zeros((3, 4, 4, 5), np.uint8), labels=np.zeros(3, np.int64)), "images must be"),
        (dict(images=np.zeros((3, 4, 4, 3), np.uint8), labels=np.zeros(2, np.int64)), "labels must be 3"),
        (dict(images=np.full((3, 4, 4, 3), 2.0), labels=np.zeros(3, np.int64)), r"\[0, 1\]"),
        (dict(images=np.zeros((3, 4, 4, 3), np.int32), labels=np.zeros(3, np.int64)), "uint8 or float"),
        (dict(images=np.zeros((3, 4, 4, 3), np.uint8)), "missing array 'labels'"),
        (dict(images=np.zeros((3, 4, 4, 3), np.uint8), labels=np.zeros(3, np.int64),
              masks=np.zeros((3, 2, 2))), "masks must be"),  # fmt: skip
    ],
)
def test_npz_bad_inputs(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ClarepsError, match=match) as err:
        load_npz(path, num_classes=3 if "label out" in match else None)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_npz_missing_and_corrupt(tmp_path):
    with pytest.raises(ClarepsError, match="not found"):
        load_npz(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ClarepsError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")


def _png(path, size, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_image_folder(tmp_path):
    _png(tmp_path / "dogs" / "a.png", (6, 6), (255, 0, 0))
    _png(tmp_path / "dogs" / "b.png", (6, 6), (0, 255, 0))
    _png(tmp_path / "cats" / "a.png", (6, 6), (0, 0, 255))
    Image.new("L", (6, 6), 128).save(tmp_path / "cats" / "gray.png")
    ds = load_image_folder(tmp_path)
    assert ds.class_names == ["cats", "dogs"] and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.images.shape == (4, 3, 6, 6)
    assert torch.equal(ds.images[0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(ds.images[1, :, 0, 0], torch.full((3,), 128 / 255))
    ordered = load_image_folder(tmp_path, classes=["dogs", "cats"])
    assert ordered.labels.tolist() == [0, 0, 1, 1] and torch.equal(ordered.images[0, :, 0, 0], torch.tensor([1.0, 0, 0]))

    _png(tmp_path / "dogs" / "c.png", (9, 7), (1, 2, 3))
    with pytest.raises(ClarepsError, match="differ in size"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=4).images.shape == (5, 3, 4, 4)
    with pytest.raises(ClarepsError, match="'birds' not found"):
        load_image_folder(tmp_path, classes=["birds"])
    with pytest.raises(ClarepsError, match="not found"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "dogs" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(ClarepsError, match="broken.png"):
        load_image_folder(tmp_path, size=4)


def _write_cifar(folder, n=4, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, fh, protocol=protocol)
    names = [n.encode() for n in ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, fh, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_batches(tmp_path, protocol):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    train = load_cifar10(tmp_path)  # the parent folder works too
    assert train.images.shape == (20, 3, 32, 32) and train.class_names[0] == "plane"
    data, labels = batches["data_batch_2"]
    # CIFAR rows are channel-major: 1024 red values, then green, then blue
    assert train.images[4, 1, 0, 5] == torch.tensor(data[0, 1024 + 5] / 255.0, dtype=torch.float32)
    assert train.labels[4:8].tolist() == labels
    test = load_cifar10(tmp_path / "cifar-10-batches-py", split="test")
    assert len(test) == 4 and test.labels.tolist() == batches["test_batch"][1]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_malicious_pickle(tmp_path):
    folder = tmp_path / "cifar"
    _write_cifar(folder)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, fh, protocol=2)
    with pytest.raises(ClarepsError, match="data_batch_3.*refused"):
        load_cifar10(folder)
    assert not marker.exists()
    eval_payload = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(ClarepsError, match="refused to load global builtins.eval"):
        safe_unpickle(eval_payload, "p")


def test_cifar10_bad_inputs(tmp_path):
    with pytest.raises(ClarepsError, match="not found"):
        load_cifar10(tmp_path / "nope")
    folder = tmp_path / "c"
    _write_cifar(folder)
    with pytest.raises(ClarepsError, match="split"):
        load_cifar10(folder, split="val")
    (folder / "data_batch_5").unlink()
    with pytest.raises(ClarepsError, match="data_batch_5"):
        load_cifar10(folder)
    (folder / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ClarepsError, match="test_batch"):
        load_cifar10(folder, split="test")
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(ClarepsError, match="3072"):
        load_cifar10(folder, split="test")
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, fh)
    with pytest.raises(ClarepsError, match="label out of range"):
        load_cifar10(folder, split="test")
