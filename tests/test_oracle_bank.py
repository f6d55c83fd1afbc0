"""The oracle bank: matched sources with their backgrounds replaced using the true masks."""

from __future__ import annotations

import pytest
import torch

from clareps.bank.build import BankBuilder, BankConfig, bank_contract, build_bank
from clareps.bank.format import load_bank
from clareps.clarid.oracle import mean_background
from clareps.config import build_config, to_plain
from clareps.data.spec import DataSpec, load_data
from clareps.errors import ClarepsError

DATA = {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}}


def _cfg(teacher, cache, **over) -> BankConfig:
    base = {"teacher": teacher, "device": "cpu", "per_class": 2, "shard_size": 6, "kind": "oracle",
            "data": dict(DATA, cache_dir=cache), "clarid": {"steps": 10, "t_e": 0.3}}
    base.update(over)
    return build_config(BankConfig, base)


def _train(cache):
    spec = build_config(DataSpec, dict(DATA, cache_dir=cache))
    return load_data(spec), load_data(spec, "train-rand")


def test_image_pass_is_the_source_inside_the_mask_and_the_other_background_outside(tiny_teacher, tiny_data_cache,
                                                                                    tmp_path):
    train, rand = _train(tiny_data_cache)
    bank, reused = build_bank(_cfg(tiny_teacher, tiny_data_cache, oracle={"oracle_pass": "image"}),
                              tmp_path / "rand-image", quiet=True)
    assert not reused and len(bank) == 20 and bank.meta["bank_kind"] == "oracle" and bank.meta["k"] == 0
    assert bank.meta["source"] == "matched" and bank.meta["oracle"] == {"background": "random", "oracle_pass": "image"}
    assert torch.equal(bank.labels, torch.arange(10).repeat_interleave(2))
    src = bank.source_index
    assert (src >= 0).all() and torch.equal(train.labels[src], bank.labels)
    m = train.masks[src]
    assert torch.equal(bank.images * m, train.images[src] * m)  # the source's animal, pixel for pixel
    assert torch.equal(bank.images * (1 - m), rand.images[src] * (1 - m))  # another source's background
    changed = (rand.bg_source[src] != train.bg_source[src])
    assert changed.any() and not torch.equal(bank.images[changed], train.images[src][changed])
    # neutral: one flat colour, the mean background pixel of the training set
    neutral, _ = build_bank(_cfg(tiny_teacher, tiny_data_cache, oracle={"background": "neutral",
                                                                         "oracle_pass": "image"}),
                            tmp_path / "neutral-image", quiet=True)
    colour = mean_background(train)
    assert torch.allclose(colour, (train.images * (1 - train.masks)).sum((0, 2, 3)) / (1 - train.masks).sum())
    assert torch.equal(neutral.images * m, train.images[src] * m)
    assert torch.allclose(neutral.images * (1 - m), colour.view(1, 3, 1, 1) * (1 - m))
    # the features are the teacher's at x_te of the edited image: the same in both passes of a background
    decoded, _ = build_bank(_cfg(tiny_teacher, tiny_data_cache), tmp_path / "rand-decoded", quiet=True)
    assert decoded.meta["oracle"]["oracle_pass"] == "decoded"
    assert torch.equal(decoded.source_index, src) and torch.equal(decoded.features, bank.features)
    assert torch.equal(decoded.latents, bank.latents) and not torch.equal(decoded.images, bank.images)
    assert decoded.images.min() >= 0 and decoded.images.max() <= 1


def test_decoded_pass_is_the_control_path_on_the_edited_images(tiny_teacher, tiny_data_cache, tmp_path):
    """k = 0 decoding of the edited image's inversion: the control bank's path, fed the oracle's images."""
    from clareps.clarid.canonical import canonicalize, matched_latents

    cfg = _cfg(tiny_teacher, tiny_data_cache, per_class=1, shard_size=10)
    bank, _ = build_bank(cfg, tmp_path / "o", quiet=True)
    builder = BankBuilder(cfg, tmp_path / "o", quiet=True)
    edited = builder.oracle.edit(bank.source_index)
    x_te = matched_latents(builder.model, edited, bank.labels, builder.cfg.clarid)
    out = canonicalize(builder.model, x_te, bank.labels, builder.cfg.clarid)
    assert torch.equal(out["images"], bank.images) and torch.equal(out["features"], bank.features)


def test_resume_reuse_and_refusals(tiny_teacher, tiny_data_cache, tmp_path):
    cfg = _cfg(tiny_teacher, tiny_data_cache)
    one, _ = build_bank(cfg, tmp_path / "one", quiet=True)
    builder = BankBuilder(cfg, tmp_path / "two", quiet=True)
    builder.build(rank=1, world=2)
    builder.build(rank=0, world=2)
    two = builder.merge()
    for name in ("images", "features", "latents", "labels", "source_index"):
        assert torch.equal(getattr(one, name), getattr(two, name)), name
    assert build_bank(cfg, tmp_path / "one", quiet=True)[1]  # reused
    other = _cfg(tiny_teacher, tiny_data_cache, oracle={"background": "neutral"})
    with pytest.raises(ClarepsError, match="oracle.background: 'random' there, 'neutral' here"):
        build_bank(other, tmp_path / "one", quiet=True)
    with pytest.raises(ClarepsError, match="oracle settings apply to kind: oracle only"):
        _cfg(tiny_teacher, tiny_data_cache, kind="control", oracle={"background": "neutral"})
    with pytest.raises(ClarepsError, match="needs data.kind=benchmark, split=train"):
        BankBuilder(_cfg(tiny_teacher, tiny_data_cache, data=dict(DATA, cache_dir=tiny_data_cache,
                                                                  split="train-rand")), tmp_path / "x")


def test_other_kinds_keep_their_config_and_hash(tiny_data_cache):
    """The oracle settings are left out of every other bank's config, so existing banks stay current."""
    cfg = build_config(BankConfig, {"kind": "control", "teacher": "t", "data": dict(DATA, cache_dir=tiny_data_cache)})
    assert "oracle" not in to_plain(cfg)
    stored = {"config": to_plain(cfg), "teacher_sha256": "a", "data_fingerprint": "b"}
    contract = bank_contract(cfg, "unused", "a", "b")
    assert contract.hash == bank_contract(build_config(BankConfig, stored["config"]), "unused", "a", "b").hash


def test_bank_show_and_compare_measure_an_oracle_bank(tiny_teacher, tiny_data_cache, tiny_judge, tiny_mask_judge,
                                                       tmp_path, run_cli):
    oracle = _cfg(tiny_teacher, tiny_data_cache, oracle={"oracle_pass": "image"})
    build_bank(oracle, tmp_path / "oracle", quiet=True)
    control = oracle.model_copy(update={"kind": "control", "oracle": None, "source": "matched"})
    build_bank(control, tmp_path / "control", quiet=True)
    code, out, err = run_cli("bank", "show", "--bank", tmp_path / "oracle", "--control", tmp_path / "control",
                             "--judge", tiny_judge, "--mask-judge", tiny_mask_judge, "--out", tmp_path / "show")
    assert code == 0, err
    code, out, err = run_cli("bank", "compare", tmp_path / "control", tmp_path / "oracle", "--judge", tiny_judge,
                             "--mask-judge", tiny_mask_judge, "--out", tmp_path / "cmp.md")
    assert code == 0, err
    text = (tmp_path / "cmp.md").read_text()
    assert "bg_source_kept" in text and "shape_iou" in text
    assert len(load_bank(tmp_path / "oracle")) == 20
