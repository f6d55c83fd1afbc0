"""`clareps demo` end to end on the tiny preset: every stage's artifact lands in the run root, and a
second run reuses every stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from clareps.config import override
from clareps.demo import Pipeline, load_demo_config
from clareps.errors import ClarepsError
from clareps.io import hash_file, load_tensors, save_tensors
from clareps.paths import preset

METHODS = ["ce", "feat-real", "control", "kd", "cadistill"]
MAKERS = ("data", "teacher", "bank/", "bank-metrics/", "kd-teacher", "distill/", "evaluate/")  # stages with artifacts


def test_override_sets_nested_keys_only():
    base = {"a": 1, "kd": {"alpha": 0.9, "teacher_width": 64}, "loss": {"x": 1}}
    out = override(base, {"kd": {"teacher_width": 4}, "epochs": 1, "loss": None})
    assert out == {"a": 1, "kd": {"alpha": 0.9, "teacher_width": 4}, "loss": None, "epochs": 1}
    assert base["kd"]["teacher_width"] == 64  # the base is left as it was


def test_tiny_demo_end_to_end_then_reused(tmp_path, tiny_data_cache, run_cli):
    run = tmp_path / "demo"
    args = ["demo", "--config", "demo-tiny", "--out", run, "--set", f"data.cache_dir={tiny_data_cache}", "-q"]
    code, out, err = run_cli(*args)
    assert code == 0, err

    # every stage's artifact is in the run root
    assert (run / "teacher" / "teacher.safetensors").is_file()
    for kind in ("canonical", "control", "feat-real"):
        meta = json.loads((run / "banks" / kind / "bank.json").read_text())
        assert meta["bank_kind"] == kind and meta["size"] == 20  # 2 per class x 10 classes
    assert not (run / "banks" / "matched").exists()  # built only for a method that reads it
    assert json.loads((run / "banks" / "canonical" / "bank.json").read_text())["k"] == 2
    assert (run / "kd-teacher" / "kd_teacher.safetensors").is_file()
    students = sorted(p.name for p in (run / "students").iterdir())
    assert students == sorted(f"{m}-s{s}" for m in METHODS for s in (0, 1, 2))
    for name in students:
        res = json.loads((run / "students" / name / "eval-fast.json").read_text())
        assert res["method"] == name.rsplit("-s", 1)[0] and res["train_seed"] == int(name.rsplit("-s", 1)[1])
        assert res["robustness"]["budgets_255"] == [2, 8]  # the tiny preset's evaluation overrides
    agg = json.loads((run / "results" / "results.json").read_text())
    assert agg["methods"] == METHODS
    assert all(agg["metrics"]["clean/test-original"][m]["seeds"] == [0, 1, 2] for m in METHODS)
    assert (run / "results" / "results.md").read_text().startswith("| metric (%) | ce | feat-real |")
    html = (run / "report.html").read_text()
    assert 'id="saliency"' in html and 'id="terms"' in html and 'class="error"' not in html

    # what it prints: the table and where the report is
    assert "| clean acc, original ↑ |" in out and f"report: {run / 'report.html'}" in out

    log = json.loads((run / "demo.json").read_text())
    stages = log["history"][-1]["stages"]
    makers = {k: v for k, v in stages.items() if k.startswith(MAKERS)}
    assert len(makers) == 1 + 1 + 3 + 2 + 1 + 15 + 15
    assert [k for k, v in makers.items() if v["reused"]] == ["data"]  # the session's benchmark build
    when = {k: log["built"][k]["when"] for k in makers if k != "data"}  # when each artifact was finished
    assert min(when.values()) >= log["history"][-1]["started"]
    assert when["bank/canonical"] <= when["distill/ce-s0"] < when["distill/cadistill-s2"]
    hw = log["history"][-1]["hardware"]  # where the times were measured, and in which precision
    assert hw["capability"] == torch.backends.cpu.get_cpu_capability() and hw["cpu"]
    assert hw["precision"] == {"teacher": "fp32", "banks": "fp32", "students": "fp32"}  # demo-tiny pins fp32
    assert yaml.safe_load((run / "demo.yaml").read_text())["mode"] == "demo"

    # a second run reuses every stage and only re-reads
    shas = {n: hash_file(run / "students" / n / "student.safetensors") for n in students}
    code, out, err = run_cli(*args)
    assert code == 0, err
    log = json.loads((run / "demo.json").read_text())
    assert len(log["history"]) == 2 and log["history"][-1]["finished"]
    stages = log["history"][-1]["stages"]
    assert all(v["reused"] for k, v in stages.items() if k.startswith(MAKERS)), stages
    assert {n: hash_file(run / "students" / n / "student.safetensors") for n in students} == shas
    assert "40 stages (38 reused)" in out  # aggregation and the report are always redone (cheap)

    # a changed setting is refused by the stage it concerns, on one line, before anything is overwritten
    code, out, err = run_cli(*args, "--set", "distill.epochs=2")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: demo stage distill/ce-s0:") and "another config" in err
    assert hash_file(run / "students" / "ce-s0" / "student.safetensors") == shas["ce-s0"]


@pytest.mark.parametrize("args, match", [
    (["--full"], "has no 'full' section"),
    (["--section", "nope"], "has no 'nope' section (it has: demo)"),
    (["--full", "--section", "demo"], "--full is --section full"),
    (["--set", "seeds=oops"], "bad value for 'seeds'"),
    (["--set", "bank.nope=1"], "unknown config key 'nope'"),
    (["--set", "methods=[ce,magic]"], "unknown method 'magic'"),
    (["--set", "methods=[ce,ce]"], "a method is listed twice"),
    (["--set", "variants={linear: {distill: {loss: {head: linear}}}}"], "variant 'linear': name it cadistill-"),
    (["--set", "variants={cadistill-x: {distill: {loss: {hed: linear}}}}"], "[variants.cadistill-x]"),
])
def test_demo_config_errors_are_one_line(args, match, tmp_path, run_cli):
    code, out, err = run_cli("demo", "-c", "demo-tiny", "--out", tmp_path / "d", *args)
    assert code == 2 and "Traceback" not in err and match in err, err
    assert not (tmp_path / "d").exists()  # refused before any work


def test_a_given_teacher_is_copied_and_a_changed_one_refused(tmp_path, tiny_teacher, tiny_data_cache):
    """The run works on its own copy, so a teacher that trains on elsewhere cannot mix versions into it."""
    src = tmp_path / "src" / "teacher.safetensors"
    shutil.copytree(Path(tiny_teacher).parent, src.parent)
    cfg = load_demo_config(preset("demo-tiny"), "demo", [f"data.cache_dir={tiny_data_cache}", "teacher.train=null",
                                                         f"teacher.path={src}"])
    run = tmp_path / "run"
    first = Pipeline(cfg, run, "demo", quiet=True)
    first.teacher_stage()
    copy = run / "teacher" / "teacher.safetensors"
    assert hash_file(copy) == hash_file(src) and (run / "teacher" / "config.yaml").is_file()
    assert first.stages["teacher"]["reused"] is False and first.stages["teacher"]["source"] == str(src)
    assert first.banks["canonical"].teacher == str(copy)  # every stage reads the copy
    again = Pipeline(cfg, run, "demo", quiet=True)
    again.teacher_stage()
    assert again.stages["teacher"]["reused"] is True

    tensors, meta = load_tensors(src)  # the source trains on
    save_tensors(src, {k: v + 1 if v.is_floating_point() else v for k, v in tensors.items()}, meta)
    with pytest.raises(ClarepsError, match="has changed since .* use a new --out"):
        Pipeline(cfg, run, "demo", quiet=True).teacher_stage()
    assert hash_file(copy) != hash_file(src)  # the run's copy is left as it was


def test_cadistill_matched_reads_its_own_bank_in_a_chosen_section(tmp_path, tiny_data_cache, run_cli):
    """cadistill-matched: the cadistill method on a canonical bank from matched sources, built because a
    method reads it; its students, results, paired intervals and report sit beside cadistill's."""
    tiny = yaml.safe_load(Path(preset("demo-tiny")).read_text())["demo"]
    config = tmp_path / "study-tiny.yaml"
    methods = ["ce", "control", "cadistill", "cadistill-matched", "cadistill-linear"]
    variants = {"cadistill-linear": {"distill": {"loss": {"head": "linear"}}}}  # a variant: a label of its own
    config.write_text(yaml.safe_dump({"study": dict(tiny, methods=methods, variants=variants, seeds=[0, 1])}))
    run = tmp_path / "study"
    code, out, err = run_cli("demo", "-c", config, "--section", "study", "--out", run,
                             "--set", f"data.cache_dir={tiny_data_cache}", "-q")
    assert code == 0, err
    assert yaml.safe_load((run / "demo.yaml").read_text())["mode"] == "study"

    meta = json.loads((run / "banks" / "matched" / "bank.json").read_text())
    random = json.loads((run / "banks" / "canonical" / "bank.json").read_text())
    assert (meta["bank_kind"], meta["source"], meta["k"], meta["size"]) == ("canonical", "matched", 2, 20)
    assert random["source"] == "random" and meta["tensors_sha256"] != random["tensors_sha256"]
    stages = json.loads((run / "demo.json").read_text())["history"][-1]["stages"]
    assert "bank/matched" in stages and "bank-metrics/matched" in stages

    # the two students differ in their bank only, and their contracts tell them apart
    cfgs = {m: yaml.safe_load((run / "students" / f"{m}-s0" / "config.yaml").read_text())
            for m in ("cadistill", "cadistill-matched", "cadistill-linear")}
    assert dict(cfgs["cadistill-linear"], config_hash=None) == \
        dict(cfgs["cadistill"], loss=dict(cfgs["cadistill"]["loss"], head="linear"), config_hash=None)
    assert cfgs["cadistill"]["loss"]["head"] == "mlp"
    assert cfgs["cadistill-matched"]["method"] == "cadistill" and cfgs["cadistill-matched"]["bank_source"] == "matched"
    assert cfgs["cadistill-matched"]["bank"] == str(run / "banks" / "matched")
    assert cfgs["cadistill"]["bank"] == str(run / "banks" / "canonical")
    sides = {m: load_tensors(run / "students" / f"{m}-s0" / "student.safetensors")[1]
             for m in ("cadistill", "cadistill-matched")}
    assert sides["cadistill-matched"]["inputs"]["bank"] == meta["tensors_sha256"]
    assert sides["cadistill"]["config_hash"] != sides["cadistill-matched"]["config_hash"]

    res = json.loads((run / "students" / "cadistill-matched-s1" / "eval-fast.json").read_text())
    assert res["method"] == "cadistill-matched" and res["student"]["method"] == "cadistill"
    agg = json.loads((run / "results" / "results.json").read_text())
    assert agg["methods"] == methods
    assert set(agg["paired"]) == {f"{m}-vs-{b}" for m in methods[2:] for b in ("ce", "control", "cadistill")
                                  if m != b}
    assert agg["paired"]["cadistill-matched-vs-control"]["clean/test-original"]["seeds"] == [0, 1]
    table = (run / "results" / "results.md").read_text()
    assert "| cadistill-matched − ce, 95 % CI | verdict | cadistill-matched − control, 95 % CI |" in table
    html = (run / "report.html").read_text()
    assert html.index("CaDistill against ce and control, paired by seed") < \
        html.index("CaDistill from matched sources against ce, control and cadistill, paired by seed")


def test_the_study_config_validates_without_running(tmp_path):
    """Every stage config of the shipped study builds (Pipeline's __init__ validates them all)."""
    from clareps.distill.methods import DEMO_METHODS

    cfg = load_demo_config(preset("study-cadistill"), "study")
    assert cfg.methods == DEMO_METHODS + ["cadistill-matched", "cadistill-spatial"] and cfg.seeds == [0, 1, 2, 3, 4]
    pipeline = Pipeline(cfg, tmp_path / "run", "study", quiet=True)
    spatial = override(pipeline.distill_base, cfg.variants["cadistill-spatial"].distill)  # the sweep's pick
    assert spatial["loss"] == dict(pipeline.distill_base["loss"], align_on="spatial")
    assert cfg.base_method("cadistill-spatial") == "cadistill"
    assert list(pipeline.banks) == ["canonical", "control", "feat-real", "matched"]
    matched, canonical = pipeline.banks["matched"], pipeline.banks["canonical"]
    assert (matched.kind, matched.source, canonical.source) == ("canonical", "matched", "random")
    assert canonical.fraction == 0.1 and canonical.per_class is None
    assert {b.clarid.sampler_precision for b in pipeline.banks.values()} == {"fp32"}
    assert pipeline.distill_base["precision"] == "fp32" and pipeline.distill_base["epochs"] == 10
    assert pipeline.distill_base["student"] == {"name": "small-cnn", "width": 32, "feature_path": None}
    assert pipeline.eval_cfg.robustness.slow_n_images == 200  # the standard mode
    assert not (tmp_path / "run").exists()  # constructing it touches nothing
    demo = Pipeline(load_demo_config(preset("demo-default"), "demo"), tmp_path / "run", "demo", quiet=True)
    assert "matched" not in demo.banks
