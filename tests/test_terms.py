"""Methods as tables of weighted terms; each CaDistill term moves the student toward the bank."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from test_distill import _fp, data, make_bank, npz, trainer  # noqa: F401  (tiny data, bank maker, fixtures)

from clareps.bank.format import load_bank, save_bank
from clareps.config import build_config
from clareps.distill.terms import StepTensors, WeightedTerm, formula, terms_for, total
from clareps.distill.config import RENAMED_LOSS_KEYS, DistillConfig, KDConfig, LossConfig, LossWeights
from clareps.distill.methods import CADISTILL_TERMS, METHODS, TERMS
from clareps.errors import ClarepsError
from clareps.evaluate.probe import probe


def test_tables_of_the_methods():
    loss, kd = LossConfig(weights={"align": 0.3, "cano": 0.5, "cka": 0.2}, scale=2.0), KDConfig(alpha=0.9)
    assert formula(terms_for(METHODS["ce"], loss, kd)) == "L = 1 ce"
    assert formula(terms_for(METHODS["cadistill"], loss, kd)) == "L = 1 ce + 1 cano + 0.6 align + 0.4 cka"
    assert formula(terms_for(METHODS["kd"], loss, kd)) == "L = 0.1 ce + 0.9 kd"
    assert formula(terms_for(METHODS["ce-oracle"], loss, kd)) == "L = 1 ce"


def test_the_weights_are_named_as_the_terms_print_and_old_keys_name_the_new_ones():
    assert tuple(LossWeights.model_fields) == CADISTILL_TERMS
    assert all(set(m.terms) <= set(TERMS) for m in METHODS.values())
    for old, new in RENAMED_LOSS_KEYS.items():
        with pytest.raises(ClarepsError, match=rf"^x.yaml: loss.{old} is now loss.{new}$"):
            build_config(DistillConfig, {"loss": {old: 0.3}}, "x.yaml")


def test_total_is_the_weighted_sum_and_ce_on_bank_adds_the_bank_items():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    bank_logits, bank_labels = torch.randn(2, 3), torch.tensor([2, 2])
    s = StepTensors(logits=logits, labels=labels, bank_logits=bank_logits, bank_labels=bank_labels)
    table = [WeightedTerm("a", 2.0, lambda s: s.logits.sum()), WeightedTerm("b", -1.0, lambda s: s.labels.sum())]
    loss, values = total(table, s)
    assert torch.isclose(loss, 2 * logits.sum() - labels.sum()) and set(values) == {"a", "b"}
    ce_all = terms_for(METHODS["ce"], LossConfig(ce_on_bank=True), KDConfig())[0].term(s)
    want = torch.nn.functional.cross_entropy(torch.cat([logits, bank_logits]), torch.cat([labels, bank_labels]))
    assert torch.isclose(ce_all, want)
    assert not torch.isclose(terms_for(METHODS["ce"], LossConfig(), KDConfig())[0].term(s), want)
    # label smoothing reaches the cross-entropy of every method: plain, with the bank, and KD's ce part
    smooth = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2)
    for name in ("ce", "cadistill", "kd"):
        ce = terms_for(METHODS[name], LossConfig(), KDConfig(), label_smoothing=0.2)[0]
        assert ce.name == "ce" and torch.isclose(ce.term(s), smooth)
    smooth_all = torch.nn.functional.cross_entropy(torch.cat([logits, bank_logits]), torch.cat([labels, bank_labels]),
                                                   label_smoothing=0.2)
    assert torch.isclose(terms_for(METHODS["ce-oracle"], LossConfig(), KDConfig(), 0.2)[0].term(s), smooth_all)


def _learnable_bank(folder, data, fp, n):  # noqa: F811
    """A bank a small student can learn from a few items: images of 2x2 colour blocks tinted by their
    class (like the tiny data), teacher features = a class embedding + a fixed linear map of the blocks."""
    make_bank(folder, data, fp, n=n, dim=16)
    bank = load_bank(folder)
    blocks = 0.6 * torch.rand(n, 3, 2, 2, generator=torch.Generator().manual_seed(n))
    tint = 0.4 * torch.nn.functional.one_hot(bank.labels % 3, 3).float()[:, :, None, None]
    images = torch.nn.functional.interpolate(blocks + tint, size=bank.images.shape[-2:], mode="nearest")
    g = torch.Generator().manual_seed(7)
    w, embed = torch.randn(16, 12, generator=g), 2 * torch.randn(int(bank.labels.max()) + 1, 16, generator=g)
    features = embed[bank.labels] + (blocks.flatten(1) - 0.3) @ w.T
    save_bank(folder, dataclasses.replace(bank, images=images, features=features))
    return folder


@pytest.mark.parametrize("term", CADISTILL_TERMS)
def test_each_term_lowers_its_value_and_raises_held_out_cka(tmp_path, data, npz, term):  # noqa: F811
    train_bank = _learnable_bank(tmp_path / "bank", data, _fp(npz), n=24)
    held_out = _learnable_bank(tmp_path / "held", data, _fp(npz), n=40)
    runs = {}
    for name, weight in (("off", 0.0), ("on", 1.0)):
        loss = {"weights": dict.fromkeys(CADISTILL_TERMS, 0.0) | {term: weight}, "proj_hidden": 0, "head": "linear"}
        t = trainer(npz, tmp_path / name, method="cadistill", bank=str(train_bank), epochs=12,
                    student={"name": "small-cnn", "width": 8}, loss=loss)
        t.train()
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        last = [r for r in rows if term in r][-3:]  # the term's value over the last logged windows
        runs[name] = {"value": sum(r[term] for r in last) / len(last),
                      "cka": probe(t.student_path, {"held": held_out})["banks"]["held"]["cka"]}
    assert runs["on"]["value"] < runs["off"]["value"] - 0.02, runs  # the term lowers its own value
    assert runs["on"]["cka"] > runs["off"]["cka"] + 0.05, runs  # and moves the student toward the teacher


def test_spatial_alignment_uses_the_students_last_map(tmp_path, data, npz):  # noqa: F811
    bank = make_bank(tmp_path / "bank", data, _fp(npz), n=12, dim=2 * 4 * 4, feature_shape=[2, 4, 4])
    t = trainer(npz, tmp_path / "run", method="cadistill", bank=str(bank), epochs=1,
                loss={"align_on": "spatial", "proj_hidden": 8})
    assert t.feature_path == "features.7"  # small-cnn's last conv block, before the global pooling
    result = t.train()
    assert result["step"] == t.total_steps
    with pytest.raises(Exception, match="teacher_pool=none"):
        trainer(npz, tmp_path / "run2", method="cadistill", bank=str(bank), epochs=1,
                loss={"align_on": "spatial", "teacher_pool": "mean"})


def test_unknown_loss_variant_is_a_config_error():
    from clareps.errors import ClarepsError

    with pytest.raises(ClarepsError, match="loss.head"):
        from clareps.distill.config import DistillConfig
        build_config(DistillConfig, {"loss": {"head": "transformer"}})


def test_probe_cli_marks_the_training_bank_as_not_held_out(tmp_path, data, npz, run_cli):  # noqa: F811
    train_bank = _learnable_bank(tmp_path / "bank", data, _fp(npz), n=12)
    held_out = _learnable_bank(tmp_path / "held", data, _fp(npz), n=20)
    t = trainer(npz, tmp_path / "run", method="cadistill", bank=str(train_bank), epochs=1)
    t.train()
    code, out, err = run_cli("probe", "--student", tmp_path / "run", "--bank", f"held={held_out}",
                             "--bank", f"train={train_bank}")
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "probe.json").read_text())
    assert result["banks"]["held"]["held_out"] and not result["banks"]["train"]["held_out"]
    assert -1 <= result["banks"]["held"]["cka"] <= 1 and "not held out" in out
    code, out, err = run_cli("probe", "--student", tmp_path / "run", "--bank", str(held_out))
    assert code == 2 and "NAME=DIR" in err
    code, _, err = run_cli("probe", "--student", tmp_path / "run", "--bank", f"held={held_out}",
                           "--label", "cadistill-spatial")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "probe.json").read_text())["method"] == "cadistill-spatial"
    code, _, err = run_cli("probe", "--student", tmp_path / "run", "--bank", f"held={held_out}", "--label", "cadistill-")
    assert code == 2 and "name it cadistill or cadistill-SOMETHING" in err
