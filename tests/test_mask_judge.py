"""The mask judge: its IoU, its training and loading path on a tiny model, and its CLI verb."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clareps.classifiers.checkpoint import load_classifier
from clareps.classifiers.mask_judge import load_mask_judge, mask_iou, predict_masks
from clareps.classifiers.mask_net import MaskNet
from clareps.config import build_config
from clareps.data.spec import DataSpec, load_data
from clareps.errors import ClarepsError


def test_mask_iou_by_hand():
    pred, true = torch.zeros(3, 1, 4, 4), torch.zeros(3, 1, 4, 4)
    pred[0, 0, 0, :4] = 1  # 4 pixels
    true[0, 0, 0, 1:4] = 1
    true[0, 0, 1, :3] = 1  # 6 pixels, 3 shared: 3 / 7
    pred[1, 0, 2, 2] = 1  # disjoint: 0
    true[1, 0, 3, 3] = 1
    iou = mask_iou(pred, true)  # item 2: both empty, they agree
    assert torch.allclose(iou, torch.tensor([3 / 7, 0.0, 1.0]))


def test_predict_masks_thresholds_the_logit_at_zero():
    class Red(torch.nn.Module):  # a logit > 0 where the red channel exceeds 0.5
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return x[:, :1] - 0.5

    x = torch.zeros(2, 3, 4, 4)
    x[0, 0, :2] = 0.9
    assert torch.equal(predict_masks(Red(), x, batch_size=1), (x[:, :1] > 0.5).float())


def test_mask_net_keeps_the_image_size():
    assert MaskNet(width=2)(torch.rand(2, 3, 16, 16)).shape == (2, 1, 16, 16)
    with pytest.raises(ClarepsError, match="divisible by 4"):  # it pools twice
        MaskNet(width=2)(torch.rand(1, 3, 18, 18))


def test_tiny_mask_judge_trains_saves_and_loads(tiny_mask_judge, tiny_data_cache, tiny_judge):
    model, meta = load_mask_judge(tiny_mask_judge)
    assert meta["role"] == "mask-judge" and meta["arch"] == "mask-net" and meta["width"] == 2
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    # the stored test IoU is what the loaded weights give: the saved model is the trained one
    spec = build_config(DataSpec, {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50},
                                   "cache_dir": tiny_data_cache})
    test = load_data(spec, "test-original")
    iou = mask_iou(predict_masks(model, test.images), test.masks).mean()
    assert iou.item() == pytest.approx(meta["metrics"]["iou/test-original"], abs=1e-6)
    assert {"iou/test-mixed-rand", "params"} <= set(meta["metrics"]) and "train_seconds" not in meta["metrics"]
    timing = json.loads((Path(tiny_mask_judge).parent / "timing.json").read_text())
    assert timing["train_seconds"] > 0 and timing["hardware"]["precision"] == "fp32"
    assert isinstance(load_classifier(tiny_mask_judge)[0], MaskNet)  # the one save/load of classifiers
    with pytest.raises(ClarepsError, match="not a mask judge"):
        load_mask_judge(tiny_judge)


def test_train_mask_judge_cli(run_cli, tiny_data_cache, tmp_path):
    args = ["--set", "data.benchmark.n_train=200", "--set", "data.benchmark.n_test=50", "--set",
            f"data.cache_dir={tiny_data_cache}", "--set", "width=2", "--set", "epochs=1", "--set", "device=cpu",
            "--set", "eval_splits=[test-only-fg]"]
    code, out, err = run_cli("train-mask-judge", *args, "--out", tmp_path / "mj", "-q")
    assert code == 0, err
    meta = json.loads((tmp_path / "mj" / "mask_judge.json").read_text())
    assert list(k for k in meta["metrics"] if k.startswith("iou/")) == ["iou/test-only-fg"]
    code, _, err = run_cli("train-mask-judge", "--set", "arch=small-cnn", "--out", tmp_path / "bad")
    assert code == 2 and "arch" in err


@pytest.mark.parametrize("role", ["shape", "mask"])
def test_a_judge_retrained_from_the_same_config_has_the_same_bytes(role, tiny_data_cache, tmp_path):
    """Its time and machine go to timing.json beside it, not into the file's header."""
    from clareps.classifiers.mask_judge import MaskJudgeConfig, train_mask_judge
    from clareps.classifiers.shape_judge import JudgeConfig, train_judge

    data = {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": tiny_data_cache}
    common = {"epochs": 1, "batch_size": 50, "precision": "fp32", "device": "cpu"}
    if role == "shape":
        cfg, train = build_config(JudgeConfig, dict(common, data=dict(data, split="train-rand"), width=4)), train_judge
    else:
        cfg, train = build_config(MaskJudgeConfig, dict(common, data=data, width=2)), train_mask_judge
    first, _ = train(cfg, tmp_path / "a", quiet=True)
    second, metrics = train(cfg, tmp_path / "b", quiet=True)
    assert first.read_bytes() == second.read_bytes() and metrics["train_seconds"] > 0
    assert json.loads((tmp_path / "b" / "timing.json").read_text())["hardware"]["precision"] == "fp32"
