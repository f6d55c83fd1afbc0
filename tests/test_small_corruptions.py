"""The corruption table at the image's scale (CIFAR-10-C's settings up to 64 px) and released files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clareps.config import build_config
from clareps.errors import ClarepsError
from clareps.evaluate.corruptions import (COMMON, CorruptionConfig, corrupt_images, evaluate_corruptions,
                                          resolve_table, table_of)

BENCH = {"n_train": 2000, "n_test": 250}


def test_auto_table_follows_the_image_side():
    assert resolve_table("auto", 32) == "cifar" and resolve_table("auto", 64) == "cifar"
    assert resolve_table("auto", 65) == "imagenet" and resolve_table("imagenet", 32) == "imagenet"
    assert table_of({"accuracy": {}}) == "imagenet"  # results from before tables were named
    with pytest.raises(ValueError):
        CorruptionConfig(table="svhn")


def test_cifar_noise_has_cifar_strength_and_imagenet_is_one_setting_away():
    x = torch.full((64, 3, 32, 32), 0.5)
    for table, sigma in (("auto", 0.04), ("imagenet", 0.08)):  # severity 1 of each table
        noise = corrupt_images(x, "gaussian_noise", 1, seed=0, table=table) - x
        assert float(noise.std()) == pytest.approx(sigma, rel=0.1)
    assert torch.equal(corrupt_images(x, "jpeg_compression", 1, table="cifar"),
                       corrupt_images(x, "jpeg_compression", 1))
    small = torch.rand(2, 3, 16, 16)  # the small table also serves images below ImageNet-C's 32 px
    for name in COMMON:
        out = corrupt_images(small, name, 5, seed=1)
        assert out.shape == small.shape and 0 <= float(out.min()) and float(out.max()) <= 1
        assert torch.equal(out, corrupt_images(small, name, 5, seed=1))
    with pytest.raises(ClarepsError, match="at least 32 px"):
        corrupt_images(small, "fog", 1, table="imagenet")


@pytest.fixture(scope="module")
def ce_student_and_test(tmp_path_factory):
    """A width-16 ce student trained 8 epochs on a 2000-image build of the benchmark (32 px), and its
    250 test images."""
    from clareps.data.spec import DataSpec, load_data
    from clareps.distill.config import DistillConfig
    from clareps.distill.trainer import DistillTrainer
    from clareps.evaluate.suite import load_student

    data = {"kind": "benchmark", "benchmark": BENCH, "cache_dir": str(tmp_path_factory.mktemp("cache"))}
    run = tmp_path_factory.mktemp("ce-s0")
    cfg = build_config(DistillConfig, {
        "method": "ce", "seed": 0, "student": {"name": "small-cnn", "width": 16}, "epochs": 8, "batch_size": 20,
        "data": data, "precision": "fp32", "device": "cpu", "log_every": 1000})
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        DistillTrainer(cfg, run, quiet=True).train()
    finally:
        torch.set_num_threads(previous)
    model, _ = load_student(run, "cpu")
    return model, load_data(build_config(DataSpec, data), "test-original")


def test_accuracy_falls_with_severity_and_stays_above_chance_at_severity_one(ce_student_and_test, one_thread):
    model, test = ce_student_and_test
    out = evaluate_corruptions(model, test.images, test.labels, CorruptionConfig(n_images=None, cache=False))
    assert out["table"] == "cifar" and out["clean_accuracy"] > 0.5
    chance = 1 / test.num_classes
    for name, acc in out["accuracy"].items():
        assert acc[0] >= 2 * chance, (name, acc)
        if name == "glass_blur":  # its severities are not ordered by difficulty (severity 4 blurs less than
            continue  # 3 and 5: sigma .25 against .4; the blur hides the shuffle)
        assert acc[4] < acc[0], (name, acc)
    # severity by severity, one type can rise by a few points for this 70 % student on 250 images (snow's
    # severity 3 above its 2 on AVX2 kernels, by 9 points); the mean over the 15 types falls at every step
    mean = [sum(acc[s] for acc in out["accuracy"].values()) / len(out["accuracy"]) for s in range(5)]
    assert all(b < a for a, b in zip(mean, mean[1:])), mean


def _fake_cifar_c(folder, images: torch.Tensor, labels: torch.Tensor, names: list[str]) -> None:
    """A CIFAR-10-C-like folder: severity s of image i is the image darkened by s/10, stored at row (s-1) N + i."""
    folder.mkdir()
    u8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    blocks = [np.round(u8 * (1 - s / 10)).astype(np.uint8) for s in range(1, 6)]
    for name in names:
        np.save(folder / f"{name}.npy", np.concatenate(blocks))
    np.save(folder / "labels.npy", np.tile(labels.numpy().astype(np.uint8), 5))


def test_released_files_are_read_row_by_row(tmp_path):
    from clareps.evaluate.released_corruptions import released_source

    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(12, 3, 8, 8, generator=gen), torch.arange(12) % 3
    _fake_cifar_c(tmp_path / "c", images, labels, ["fog", "snow"])
    idx = np.array([5, 0, 11])
    read = released_source(tmp_path / "c", images, labels, idx)
    sets = read("fog", [0, 2, 5])
    assert torch.equal(sets[0], images[idx])
    want = np.round((images[idx] * 255).round().permute(0, 2, 3, 1).numpy() * 0.5).astype(np.uint8)
    assert torch.equal(sets[5], torch.from_numpy(want).permute(0, 3, 1, 2).float() / 255)
    with pytest.raises(ClarepsError, match="no released corruption file"):
        read("frost", [1])
    with pytest.raises(ClarepsError, match="does not hold the labels"):
        released_source(tmp_path / "c", images, (labels + 1) % 3, idx)
    with pytest.raises(ClarepsError, match="no labels.npy"):
        released_source(tmp_path, images, labels, idx)


class _Brightness(torch.nn.Module):
    """Class 0 for dark images, 1 for bright ones."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # predict() reads the device off a parameter

    def forward(self, x):
        m = x.mean((1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], 1)


def test_evaluation_reads_released_files_and_names_them(tmp_path):
    from clareps.evaluate.released_corruptions import released_source

    images = torch.cat([torch.full((4, 3, 8, 8), 0.2), torch.full((4, 3, 8, 8), 0.9)])
    labels = torch.tensor([0] * 4 + [1] * 4)
    _fake_cifar_c(tmp_path / "c", images, labels, ["contrast"])
    idx = np.arange(8)
    cfg = CorruptionConfig(types=["contrast"], n_images=None)
    out = evaluate_corruptions(_Brightness(), images, labels, cfg, released=released_source(tmp_path / "c", images,
                                                                                             labels, idx))
    # darkened by s/10: 0.9 -> 0.81, 0.72, 0.63 (bright), 0.54, 0.45 (dark from severity 5)
    assert out["table"] == "cifar10-c-files" and out["accuracy"]["contrast"] == [1.0, 1.0, 1.0, 1.0, 0.5]


def test_aggregation_names_the_table_and_reads_absent_as_imagenet(tmp_path):
    from clareps.evaluate.aggregate import aggregate, to_markdown
    from clareps.evaluate.suite import FORMAT

    def run(method, seed, table):
        cor = {"severities": [1], "accuracy": {"fog": [0.5]}, "per_type": {"fog": 0.5}, "mean_accuracy": 0.5}
        if table:
            cor["table"] = table
        return {"format": FORMAT, "mode": "full", "config_hash": "h", "eval_seed": 0, "method": method,
                "train_seed": seed, "file": f"{method}-{seed}", "corruptions": cor, "summary": {"corr/mean": 0.5}}

    old = aggregate([run("ce", 0, None), run("kd", 0, None)])
    assert old["corruption_table"] == "imagenet" and "ImageNet-C's settings" in to_markdown(old)
    new = aggregate([run("ce", 0, "cifar"), run("kd", 0, "cifar")])
    assert new["corruption_table"] == "cifar" and "CIFAR-10-C's settings" in to_markdown(new)
    assert [r["corruption_table"] for r in new["runs"]] == ["cifar", "cifar"]
    json.dumps(new)
