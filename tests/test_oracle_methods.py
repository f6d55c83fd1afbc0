"""The oracle study's methods: cadistill-oracle (CaDistill's losses on the oracle bank) and ce-oracle
(cross-entropy with the oracle bank's images as labelled data), and the study's config."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clareps.errors import ClarepsError
from test_distill import _fp, make_bank, trainer  # noqa: F401 (the npz and data fixtures come from conftest)
from test_distill import data, npz  # noqa: F401


def test_ce_oracle_puts_the_bank_images_into_the_cross_entropy_and_nothing_else(tmp_path, data, npz):
    bank = str(make_bank(tmp_path / "bank", data, _fp(npz), kind="oracle", k=0))
    t = trainer(npz, tmp_path / "run", method="ce-oracle", bank=bank)
    assert t.proj is None and [w.name for w in t.terms] == ["ce"]
    inputs, outputs = [], []

    def keep(_m, args, out):  # returns None: the output stays the model's
        inputs.append(args[0].clone())
        outputs.append(out.detach().float())

    t.model.register_forward_hook(keep)
    terms = t.train_step()
    idx, bidx = t._indices(len(t.y), 8, 0, stream=0), t._indices(len(t.bank_x), 6, 0, stream=2)
    assert inputs[0].shape[0] == 8 + 6 and torch.equal(inputs[0][8:], t.bank_x[bidx])
    logits = outputs[0]
    labels = torch.cat([t.y[idx], t.bank_y[bidx]])
    assert torch.allclose(terms["ce"], F.cross_entropy(logits, labels), atol=1e-6)
    assert not torch.allclose(terms["ce"], F.cross_entropy(logits[:8], labels[:8]), atol=1e-4)
    ce = trainer(npz, tmp_path / "ce", method="ce")  # the same real batches as every method
    seen = []
    ce.model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    ce.train_step()
    assert torch.equal(seen[0], inputs[0][:8])


def test_ce_oracle_run_hash_reads_the_bank_batches_not_the_losses(tmp_path, data, npz):
    bank = str(make_bank(tmp_path / "bank", data, _fp(npz), kind="oracle", k=0))
    base = trainer(npz, tmp_path / "a", method="ce-oracle", bank=bank).contract.hash
    assert trainer(npz, tmp_path / "b", method="ce-oracle", bank=bank,
                   loss={"proj_hidden": 8, "weights": {"align": 9.0}}).contract.hash == base
    assert trainer(npz, tmp_path / "c", method="ce-oracle", bank=bank, bank_batch_size=4).contract.hash != base


def test_cadistill_oracle_trains_on_an_oracle_bank_and_refuses_others(tmp_path, data, npz):
    oracle = str(make_bank(tmp_path / "oracle", data, _fp(npz), kind="oracle", k=0))
    t = trainer(npz, tmp_path / "run", method="cadistill-oracle", bank=oracle)
    result = t.train()
    assert [w.name for w in t.terms] == ["ce", "cano", "align", "cka"] and result["method"] == "cadistill-oracle"
    canonical = str(make_bank(tmp_path / "canonical", data, _fp(npz)))
    for method in ("cadistill-oracle", "ce-oracle"):
        with pytest.raises(ClarepsError, match=f"method {method} needs a oracle bank"):
            trainer(npz, tmp_path / f"x-{method}", method=method, bank=canonical)
    with pytest.raises(ClarepsError, match="needs a bank with k = 0"):
        trainer(npz, tmp_path / "y", method="ce-oracle",
                bank=str(make_bank(tmp_path / "k4", data, _fp(npz), kind="oracle", k=4)))
    with pytest.raises(ClarepsError, match="needs a oracle bank: pass --bank"):
        trainer(npz, tmp_path / "z", method="ce-oracle")


def test_the_why_study_config_reads_the_oracle_bank_where_a_method_needs_it(tmp_path, monkeypatch):
    import clareps.adapters.loading

    from clareps.demo.pipeline import Pipeline
    from clareps.demo.spec import load_demo_config
    from clareps.paths import resolve_preset

    monkeypatch.setattr(clareps.adapters.loading, "teacher_fingerprint", lambda path: "0123456789abcdef")
    path = resolve_preset("study-why", "demo-default")
    oracle = Pipeline(load_demo_config(path, "oracle"), tmp_path, "oracle", quiet=True)
    assert oracle.banks["oracle"].kind == "oracle" and oracle.banks["oracle"].oracle.background == "random"
    assert all(cfg.oracle is None for kind, cfg in oracle.banks.items() if kind != "oracle")
    for label in ("cadistill-oracle", "ce-oracle"):
        cfg = oracle.distill_config(label, 3)
        assert cfg.method == label and cfg.bank == str(tmp_path / "banks" / "oracle") and cfg.seed == 3
    assert oracle.eval_cfg.components == ["clean", "robustness", "corruptions"]
    assert oracle.eval_cfg.robustness.attacks == ["pgd", "cw", "apgd-ce"] and oracle.eval_cfg.corruptions.table == "auto"
    spatial = Pipeline(load_demo_config(path, "spatial"), tmp_path, "spatial", quiet=True)
    assert "oracle" not in spatial.banks and spatial.cfg.seeds == list(range(10, 20))
    control = spatial.distill_config("control-spatial", 10)
    assert control.method == "control" and control.loss.align_on == "spatial"
    assert control.bank == str(tmp_path / "banks" / "control")


def test_a_tiny_oracle_study_runs_end_to_end(tmp_path, tiny_data_cache, run_cli):
    """The oracle bank is built because a method reads it (with the section's oracle settings); its
    students, results and paired intervals sit beside the others'."""
    import json
    from pathlib import Path

    import yaml

    from clareps.paths import preset

    tiny = yaml.safe_load(Path(preset("demo-tiny")).read_text())["demo"]
    methods = ["ce", "control", "cadistill-oracle", "ce-oracle"]
    bank = dict(tiny.get("bank") or {}, oracle={"background": "random", "oracle_pass": "decoded"})
    config = tmp_path / "study-tiny.yaml"
    config.write_text(yaml.safe_dump({"oracle": dict(tiny, methods=methods, seeds=[0, 1], bank=bank)}))
    run = tmp_path / "study"
    code, out, err = run_cli("demo", "-c", config, "--section", "oracle", "--out", run,
                             "--set", f"data.cache_dir={tiny_data_cache}", "-q")
    assert code == 0, err
    meta = json.loads((run / "banks" / "oracle" / "bank.json").read_text())
    assert (meta["bank_kind"], meta["source"], meta["k"]) == ("oracle", "matched", 0)
    assert meta["oracle"] == {"background": "random", "oracle_pass": "decoded"}
    assert "oracle" not in json.loads((run / "banks" / "control" / "bank.json").read_text())["config"]
    for m in ("cadistill-oracle", "ce-oracle"):
        cfg = yaml.safe_load((run / "students" / f"{m}-s0" / "config.yaml").read_text())
        assert cfg["method"] == m and cfg["bank"] == str(run / "banks" / "oracle")
    agg = json.loads((run / "results" / "results.json").read_text())
    assert agg["methods"] == ["ce", "control", "ce-oracle", "cadistill-oracle"]
    assert {"cadistill-oracle-vs-ce", "cadistill-oracle-vs-control", "cadistill-oracle-vs-ce-oracle",
            "ce-oracle-vs-ce", "ce-oracle-vs-control"} <= set(agg["paired"])
    assert agg["corruption_table"] == "cifar"
