"""The selectivity measures on hand-made tensors: each value is known in advance."""

from __future__ import annotations

import pytest
import torch

from clareps.bank.metrics import summary_rows
from clareps.bank.selectivity import colour_change, correlated_background_rate, item_measures, matched_measures


class RedMask(torch.nn.Module):
    """A mask judge stand-in: foreground where the red channel exceeds 0.5."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, :1] - 0.5


class BlueSource:
    """A background-source judge stand-in: source 1 where the background's mean blue exceeds 0.5,
    else 0 (``background_stats`` puts the per-channel means first)."""

    def predict(self, stats):
        return (stats[:, 2] > 0.5).astype("int64")


def _fg(n: int = 2) -> torch.Tensor:
    fg = torch.zeros(n, 1, 4, 4)
    fg[:, :, 1:3, 1:3] = 1  # a 2x2 animal in the middle
    return fg


def test_a_uniform_recolouring_is_tint_and_not_texture():
    sources = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.5
    shift = torch.tensor([0.3, -0.1, 0.2])[None, :, None, None]
    samples = sources + shift * _fg()  # inside the foreground only
    tint, texture = colour_change(samples, sources, _fg())
    assert torch.allclose(tint, torch.full((2,), 0.2)) and torch.allclose(texture, torch.zeros(2), atol=1e-6)


def test_a_zero_mean_pattern_is_texture_and_not_tint():
    sources = torch.full((1, 3, 4, 4), 0.5)
    samples = sources.clone()
    samples[0, :, 1, 1:3] += 0.1  # +0.1 on the top row of the animal, -0.1 on the bottom: mean unchanged
    samples[0, :, 2, 1:3] -= 0.1
    samples[0, :, 0, 0] = 1.0  # a background change counts in neither
    tint, texture = colour_change(samples, sources, _fg(1))
    assert tint.item() == pytest.approx(0.0, abs=1e-6) and texture.item() == pytest.approx(0.1)


def test_matched_measures_split_background_removal_by_the_correlated_source():
    # four items of class 1: sources on background 1 (correlated) for the first two, 0 for the others;
    # a blue background is source 1. The samples keep items 0 and 2's backgrounds and swap 1 and 3's.
    labels, source_bg = torch.tensor([1, 1, 1, 1]), torch.tensor([1, 1, 0, 0])
    bg = 1 - _fg(4)
    sources = torch.zeros(4, 3, 4, 4)
    sources[:, 2] = source_bg.float()[:, None, None] * bg[:, 0]
    samples = sources.clone()
    samples[1, 2], samples[3, 2] = 0.0, bg[3, 0]  # item 1 loses its blue, item 3 gains it
    samples[:, 0] = _fg(4)[:, 0]  # the animal in red, exactly where the source mask is
    samples[0, 0, 1, 1] = 0  # item 0 loses one of its four animal pixels: IoU 3/4
    sources[:, 0] = _fg(4)[:, 0]
    out = matched_measures(samples, sources, _fg(4), labels, source_bg, BlueSource(), RedMask())
    assert out["bg_source_kept_correlated"] == 0.5 and out["bg_source_kept_other"] == 0.5
    assert out["bg_source_kept"] == 0.5 and out["items_bg_correlated"] == 2 and out["items_bg_other"] == 2
    # background change: item 1 lost 1.0 on 12 of its 12 background pixels in one of 3 channels
    assert out["bg_change_correlated"] == pytest.approx((12 * 1.0) / (2 * 12 * 3))
    assert out["bg_change_other"] == pytest.approx((12 * 1.0) / (2 * 12 * 3))
    assert out["shape_iou"] == pytest.approx((0.75 + 3) / 4) and out["shape_iou_sources"] == 1.0

    # the spurious backgrounds alone are removed: kept 0 % for correlated sources, 100 % for others
    samples[0, 2], samples[1, 2], samples[3, 2] = 0.0, 0.0, 0.0
    out = matched_measures(samples, sources, _fg(4), labels, source_bg, BlueSource(), RedMask())
    assert out["bg_source_kept_correlated"] == 0.0 and out["bg_source_kept_other"] == 1.0
    assert out["bg_change_other"] == 0.0


def test_item_measures_are_per_item_and_average_to_the_bank_measures():
    labels, source_bg = torch.tensor([1, 1, 1, 1]), torch.tensor([1, 1, 0, 0])
    sources = torch.zeros(4, 3, 4, 4)
    sources[:, 0] = _fg(4)[:, 0]
    samples = sources.clone()
    samples[2, 2] = 1 - _fg(4)[2, 0]  # item 2: a blue background (source 1, was 0)
    samples[3, 1] += 0.4 * _fg(4)[3, 0]  # item 3: the animal tinted green
    items = item_measures(samples, sources, _fg(4), source_bg, BlueSource(), RedMask())
    assert items["bg_source_kept"].tolist() == [0.0, 0.0, 0.0, 1.0]  # 0, 1: blue sources read as 0 (black bg)
    assert items["bg_change"][2] == pytest.approx(1 / 3) and items["fg_change"][2] == 0
    assert items["fg_change"][3] == pytest.approx(0.4 / 3) and items["bg_change"][3] == 0
    assert items["tint_shift"][3] == pytest.approx(0.4 / 3) and items["shape_iou"].tolist() == [1.0] * 4
    out = matched_measures(samples, sources, _fg(4), labels, source_bg, BlueSource(), RedMask())
    assert out == matched_measures(samples, sources, _fg(4), labels, source_bg, BlueSource(), RedMask(), items)
    assert out["bg_source_kept"] == pytest.approx(float(items["bg_source_kept"].mean()))
    assert out["tint_shift"] == pytest.approx(float(items["tint_shift"].mean()))


def test_correlated_background_rate_reads_outside_the_predicted_mask():
    # class 1's correlated source is 1 (blue). Item 0: blue background -> 1 = its class; item 1: blue
    # only inside its (red) animal, which the mask judge cuts out -> 0; item 2 of class 0: black -> 0.
    images = torch.zeros(3, 3, 4, 4)
    images[0, 2] = 1
    images[1, 0], images[1, 2] = _fg(1)[0, 0], _fg(1)[0, 0]
    rate = correlated_background_rate(images, torch.tensor([1, 1, 0]), BlueSource(), RedMask())
    assert rate == pytest.approx(2 / 3)


def test_summary_rows_format_present_measures_only():
    rows = dict(summary_rows({"shape_iou": 0.91234, "bg_source_kept_correlated": 0.25, "engine_iterations": 7.0,
                              "unrelated": 1}))
    assert rows == {"shape IoU (mask judge vs source mask)": "0.912", "bg source kept, correlated sources": "25.0 %",
                    "engine iterations (mean)": "7.0"}
