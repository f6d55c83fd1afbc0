"""CLARID banks: projection, control path, shards/resume/ranks, refusals, metrics."""

from __future__ import annotations

import json

import pytest
import torch

from clareps.bank.build import BankBuilder, BankConfig, build_bank
from clareps.bank.format import load_bank
from clareps.clarid.canonical import ClaridConfig, canonicalize, features
from clareps.clarid.directions import project
from clareps.bank.metrics import background_variance, separability
from clareps.measures import kmeans_nmi, linear_probe, probe_correct
from clareps.config import build_config
from clareps.device import resolve_precision
from clareps.errors import ClarepsError


def _cfg(teacher, cache, **over) -> BankConfig:
    base = {"teacher": teacher, "device": "cpu", "per_class": 2, "shard_size": 6, "source": "matched",
            "data": {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": cache},
            "clarid": {"k": 2, "steps": 10, "max_iter": 4, "t_e": 0.3}}
    base.update(over)
    return build_config(BankConfig, base)


def test_projection_removes_directions_and_can_keep_norm():
    x = torch.randn(3, 2, 4, 4)
    v = torch.linalg.qr(torch.randn(3, 32, 5))[0].transpose(1, 2).reshape(3, 5, 2, 4, 4)
    out = project(x, v)
    assert torch.allclose(torch.einsum("bkd,bd->bk", v.flatten(2), out.flatten(1)), torch.zeros(3, 5), atol=1e-5)
    kept = project(x, v, norm_preserving=True)
    assert torch.allclose(kept.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), atol=1e-4)
    assert torch.equal(project(x, v[:, :0]), x)


def test_canonicalize_reads_f_of_x_te_from_forwards_it_runs_anyway(tiny_unet, monkeypatch):
    """f(x_te) is the engine's own (k > 0, an engine run at x_te) or f(x~) (k = 0): bitwise a separate
    forward's, without one; only a control that runs no engine at x_te reads it on its own."""
    import clareps.clarid.canonical as canonical

    x, y, reads = torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), []

    def counted(*args):
        reads.append(args[1])
        return features(*args)

    monkeypatch.setattr(canonical, "features", counted)
    for over, forwards in (({"k": 0}, 1), ({}, 1), ({"directions": "tail"}, 1), ({"directions": "low-frequency"}, 2)):
        cfg, reads[:] = ClaridConfig(**{"k": 2, "steps": 4, "t_e": 0.3, "max_iter": 2, **over}), []
        out = canonicalize(tiny_unet, x, y, cfg)
        assert len(reads) == forwards, over  # f(x~) always; f(x_te) only for the low-frequency control
        assert torch.equal(out["input_features"], features(tiny_unet, x, tiny_unet.schedule.index(0.3), y, "mid"))
        assert out["input_features"].data_ptr() != out["features"].data_ptr()  # safetensors refuses shared storage


def test_bf16_sampler_leaves_the_engine_and_features_in_fp32(tiny_unet):
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 2])
    out = {p: canonicalize(tiny_unet, x, y, ClaridConfig(k=2, steps=6, t_e=0.3, max_iter=3, w=2.0,
                                                                sampler_precision=p)) for p in ("fp32", "bf16")}
    for key in ("latents", "features", "singular_values"):  # same x_te: the projection is untouched
        assert torch.equal(out["bf16"][key], out["fp32"][key]), key
    images = out["bf16"]["images"]
    assert images.dtype == torch.float32 and not torch.equal(images, out["fp32"]["images"])  # really bf16
    assert (images - out["fp32"]["images"]).abs().max() < 0.05


def test_bank_contents_and_control_is_the_same_path(tiny_teacher, tiny_data_cache, tmp_path):
    bank, reused = build_bank(_cfg(tiny_teacher, tiny_data_cache), tmp_path / "canon", quiet=True)
    assert not reused and len(bank) == 20 and bank.singular_values.shape == (20, 2)
    assert torch.equal(bank.labels, torch.arange(10).repeat_interleave(2))
    assert (bank.source_index >= 0).all() and bank.images.min() >= 0 and bank.images.max() <= 1
    assert bank.meta["k"] == 2 and bank.meta["bank_kind"] == "canonical"
    assert bank.meta["sampler_precision_resolved"] == resolve_precision("auto", torch.device("cpu"))
    timing = json.loads((tmp_path / "canon" / "timing.json").read_text())
    assert timing["hardware"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert bank.meta["feature_shape"] == [16, 16, 16] and bank.feature_dim == 16 * 16 * 16
    control, _ = build_bank(_cfg(tiny_teacher, tiny_data_cache, kind="control"), tmp_path / "ctrl", quiet=True)
    zero_k, _ = build_bank(_cfg(tiny_teacher, tiny_data_cache, clarid={"k": 0, "steps": 10, "max_iter": 4,
                                                                          "t_e": 0.3}), tmp_path / "k0", quiet=True)
    assert control.meta["k"] == 0 and torch.equal(control.source_index, bank.source_index)
    assert torch.equal(control.images, zero_k.images) and torch.equal(control.features, zero_k.features)
    assert not torch.allclose(control.latents, bank.latents)  # the projection really changed the latent
    assert build_bank(_cfg(tiny_teacher, tiny_data_cache), tmp_path / "canon", quiet=True)[1]  # reused


def test_resume_and_ranks_give_identical_banks(tiny_teacher, tiny_data_cache, tmp_path):
    cfg = _cfg(tiny_teacher, tiny_data_cache)
    one, _ = build_bank(cfg, tmp_path / "one", quiet=True)
    builder = BankBuilder(cfg, tmp_path / "two", quiet=True)
    assert builder.build(rank=1, world=2) == [1, 3]  # rank 1 of 2 builds the odd shards only
    assert not (tmp_path / "two" / "shards" / "shard-00000.safetensors").exists()
    ranges = builder.shard_ranges()
    done = builder.finished_shards()  # what a stopped build has: the odd shards, their items and tensors
    assert [r for r, _ in done] == [ranges[1], ranges[3]]
    assert torch.equal(done[0][1]["labels"], one.labels[ranges[1].start:ranges[1].stop])
    with pytest.raises(ClarepsError, match="shard 0 .* is missing"):
        builder.merge()
    builder.build(rank=0, world=2)
    two = builder.merge()
    for name in ("images", "features", "latents", "singular_values", "labels", "source_index"):
        assert torch.equal(getattr(one, name), getattr(two, name)), name


def test_refuses_a_mismatched_bank_and_bad_requests(tiny_teacher, tiny_data_cache, tmp_path):
    build_bank(_cfg(tiny_teacher, tiny_data_cache), tmp_path / "b", quiet=True)
    with pytest.raises(ClarepsError, match=r"another config, teacher or data \(cfg.seed: 0 there, 1 here\)"):
        build_bank(_cfg(tiny_teacher, tiny_data_cache, seed=1), tmp_path / "b", quiet=True)
    with pytest.raises(ClarepsError, match="fewer than the 50 asked"):
        BankBuilder(_cfg(tiny_teacher, tiny_data_cache, per_class=50), tmp_path / "c")
    with pytest.raises(ClarepsError, match="no module at tap path"):
        build_bank(_cfg(tiny_teacher, tiny_data_cache, clarid={"tap": "mid.nope", "k": 1}), tmp_path / "d", quiet=True)
    with pytest.raises(ClarepsError, match="no bank at"):
        load_bank(tmp_path / "nothing")


def test_merge_knows_the_feature_shape_without_a_forward(tiny_teacher, tiny_data_cache, tmp_path):
    cfg = _cfg(tiny_teacher, tiny_data_cache, per_class=1, shard_size=10, clarid={"k": 1, "steps": 4, "max_iter": 2})
    builder, forwards = BankBuilder(cfg, tmp_path / "b", quiet=True), []
    builder.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    builder.build()
    forwards.clear()
    assert builder.merge().meta["feature_shape"] == [16, 16, 16] and forwards == []  # read off the shards' forwards
    fresh = BankBuilder(cfg, tmp_path / "b", quiet=True)  # a merge-only process (a resume): one forward
    fresh.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    assert fresh.feature_shape() == [16, 16, 16] and len(forwards) == 1


def test_random_source_bank(tiny_teacher, tiny_data_cache, tmp_path):
    bank, _ = build_bank(_cfg(tiny_teacher, tiny_data_cache, source="random", per_class=1), tmp_path / "r", quiet=True)
    assert (bank.source_index == -1).all() and len(bank) == 10


def test_metric_known_answers():
    same = torch.rand(1, 3, 4, 4).repeat(5, 1, 1, 1)
    assert background_variance(same, torch.ones(5, 1, 4, 4)) == pytest.approx(0.0, abs=1e-7)
    labels = torch.arange(4).repeat_interleave(10)
    separated = torch.nn.functional.one_hot(labels, 4).float() + 0.01 * torch.randn(40, 4)
    assert kmeans_nmi(separated, labels, 4) == pytest.approx(1.0)
    assert kmeans_nmi(torch.randn(40, 4), labels, 4) < 0.5
    assert linear_probe(separated, labels) == 1.0
    noise = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    assert linear_probe(noise, labels) < 0.6  # chance is 0.25
    assert linear_probe(separated[:5], labels[:5]) is None  # a class with one item cannot be cross-validated
    good = separability(separated, labels, 4, "f")
    assert good["ami_f"] == pytest.approx(1.0) and good["probe_f"] == 1.0 and good["probe_f_shuffled"] < 0.6
    g = torch.Generator().manual_seed(1)
    unrelated = separability(torch.randn(50, 8, generator=g), torch.arange(10).repeat(5), 10, "f")
    assert abs(unrelated["ami_f"]) < 0.05 and unrelated["nmi_f"] > 0.3  # 5 items a class: NMI's chance level is high


def test_per_item_probe_matches_the_probe():
    labels = torch.arange(4).repeat_interleave(10)
    g = torch.Generator().manual_seed(0)
    separated = torch.nn.functional.one_hot(labels, 4).float() + 0.05 * torch.randn(40, 4, generator=g)
    noise = torch.randn(40, 8, generator=g)
    correct = probe_correct(separated, labels)
    assert correct.shape == (40,) and correct.mean() == linear_probe(separated, labels) == 1.0
    assert probe_correct(noise, labels).mean() == pytest.approx(linear_probe(noise, labels))  # equal folds of 8
    assert probe_correct(separated[:5], labels[:5]) is None


def test_background_judge_identifies_real_sources(tiny_data_cache):
    from clareps.data.benchmark import BenchmarkConfig, load_split
    from clareps.classifiers.background_judge import predict_source, train_background_judge

    cfg = BenchmarkConfig(n_train=200, n_test=50)
    judge = train_background_judge(load_split(cfg, "train", cache_dir=tiny_data_cache))
    test = load_split(cfg, "test-mixed-rand", cache_dir=tiny_data_cache)
    pred = predict_source(judge, test.images, 1 - test.masks)
    assert (pred == test.bg_source).float().mean() > 0.7  # chance is 0.1
    blank = predict_source(judge, torch.full_like(test.images, 0.5), 1 - test.masks)
    assert (blank == test.bg_source).float().mean() < 0.5  # a flat grey background matches no source


def test_sampler_precision_as_asked_enters_the_bank_hash(tmp_path):
    """auto, bf16 and fp32 are three configs (auto is hashed as auto: the bank records what it resolved to)."""
    from clareps.bank.build import bank_contract

    hashes = {p: bank_contract(_cfg("teacher.safetensors", str(tmp_path), clarid={"k": 2, "sampler_precision": p}),
                               tmp_path, "t", "d").hash for p in ("auto", "bf16", "fp32")}
    assert len(set(hashes.values())) == 3


def test_control_banks_record_the_engine_and_match_the_jacobian_share(tiny_teacher, tiny_data_cache, tmp_path):
    from clareps.bank.format import RECORD

    clarid = {"k": 2, "steps": 6, "max_iter": 4, "t_e": 0.3}
    jac, _ = build_bank(_cfg(tiny_teacher, tiny_data_cache, per_class=1, clarid=clarid), tmp_path / "j", quiet=True)
    assert set(load_bank(tmp_path / "j").record) == set(RECORD)
    assert (jac.record["engine_iterations"] >= 1).all() and (jac.record["removed_directions"] == 2).all()
    for kind in ("random", "shuffled"):
        cfg = _cfg(tiny_teacher, tiny_data_cache, per_class=1,
                   clarid={**clarid, "directions": kind, "match_removed_norm": True})
        bank, _ = build_bank(cfg, tmp_path / kind, quiet=True)
        assert torch.allclose(bank.record["removed_share"], jac.record["removed_share"], rtol=0.01), kind
        assert not torch.allclose(bank.latents, jac.latents), kind
    control, _ = build_bank(_cfg(tiny_teacher, tiny_data_cache, per_class=1, kind="control", clarid=clarid),
                            tmp_path / "c", quiet=True)
    assert (control.record["removed_share"] == 0).all() and (control.record["engine_iterations"] == 0).all()


def test_family_banks_match_the_jacobian_share_and_the_oracle_needs_masks(tiny_teacher, tiny_data_cache, tmp_path):
    clarid = {"k": 2, "steps": 6, "max_iter": 4, "t_e": 0.3}
    jac, _ = build_bank(_cfg(tiny_teacher, tiny_data_cache, per_class=1, clarid=clarid), tmp_path / "j", quiet=True)
    for kind in ("mask-oracle", "region-restricted"):
        cfg = _cfg(tiny_teacher, tiny_data_cache, per_class=1,
                   clarid={**clarid, "directions": kind, "match_removed_norm": True})
        bank, _ = build_bank(cfg, tmp_path / kind, quiet=True)
        assert torch.equal(bank.source_index, jac.source_index), kind
        assert torch.allclose(bank.record["removed_share"], jac.record["removed_share"], rtol=0.01), kind
    with pytest.raises(ClarepsError, match="mask-oracle"):  # refused before any work
        BankBuilder(_cfg(tiny_teacher, tiny_data_cache, source="random",
                         clarid={**clarid, "directions": "mask-oracle"}), tmp_path / "r", quiet=True)
