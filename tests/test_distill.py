"""Students, the distillation trainer and the five methods, on tiny data and tiny banks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from clareps.bank.format import Bank, load_bank, save_bank
from clareps.config import build_config
from clareps.data.spec import DataSpec, data_fingerprint, load_data
from clareps.taps import tap
from clareps.distill.methods import carve_validation, select_bank, teacher_targets
from clareps.classifiers.students import STUDENTS, make_student, training_memory_format
from clareps.distill.config import DistillConfig
from clareps.distill.trainer import DistillTrainer
from clareps.errors import ClarepsError
from clareps.classifiers.shape_judge import load_judge
from conftest import write_tiny_npz

C = 4  # classes
TEACHER = "0123456789abcdef"


@pytest.fixture
def npz(tmp_path):
    return write_tiny_npz(tmp_path / "tiny.npz", classes=C)


@pytest.fixture
def data(npz):
    return load_data(DataSpec(kind="npz", path=str(npz)))


def _fp(npz) -> str:
    return data_fingerprint(DataSpec(kind="npz", path=str(npz)))


def make_bank(folder, data, fp, kind="canonical", k=4, dim=16, n=12, teacher=TEACHER, **meta):
    g = torch.Generator().manual_seed(dim + n)
    labels = torch.arange(n) % C
    if kind == "feat-real":
        source = torch.tensor([int(np.flatnonzero(data.labels.numpy() == c)[i]) for i, c in
                               enumerate(labels.tolist())])
        images = data.images[source]
    else:
        source, images = torch.full((n,), -1), torch.rand(n, 3, 8, 8, generator=g)
    features = torch.randn(n, dim, generator=g) + 3 * torch.nn.functional.one_hot(labels, dim)
    meta = dict(dict(data_fingerprint=fp, teacher_sha256=teacher, feature_dim=dim, tap="mid", k=k, t_e=500,
                     w=2.0, source="random", class_names=list(data.class_names), bank_kind=kind), **meta)
    save_bank(folder, Bank(images=images, features=features, labels=labels, source_index=source,
                           latents=torch.randn(n, 3, 8, 8, generator=g), singular_values=torch.rand(n, k),
                           seconds=torch.ones(n), meta=meta))
    return folder


def tiny_config(npz, **over) -> dict:
    cfg = {"data": {"kind": "npz", "path": str(npz)}, "test_splits": [], "student": {"name": "small-cnn", "width": 4},
           "epochs": 2, "batch_size": 8, "bank_batch_size": 6, "precision": "fp32", "log_every": 2,
           "device": "cpu", "val_fraction": 0.25, "loss": {"proj_hidden": 8}, "optim": {"lr": 0.05}}
    cfg.update(over)
    return cfg


def trainer(npz, run_dir, **over) -> DistillTrainer:
    return DistillTrainer(build_config(DistillConfig, tiny_config(npz, **over)), run_dir, quiet=True)


# -- students -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_students_share_one_interface(name):
    torch.manual_seed(0)
    model = make_student(name, C, width=4).eval()
    x = torch.rand(2, 3, 16, 16)
    with tap(model, model.feature_path) as store:
        logits = model(x)
    assert logits.shape == (2, C) and store["out"].shape == (2, model.feature_dim)
    assert isinstance(model.head, torch.nn.Linear)
    assert torch.allclose(model.head(store["out"]), logits, atol=1e-6)  # the head is the last layer
    # inputs are in [0, 1]: normalisation happens inside the model
    assert torch.allclose(model.normalize(x), (x - 0.5) / 0.25)


def test_training_layout_is_channels_last_except_where_onednn_avx2_corrupts_memory():
    # the strided 1x1 shortcut of a ResNet below width 8 aborts the process on AVX2 in channels-last
    assert training_memory_format(make_student("resnet18", 10, width=4)) == torch.contiguous_format
    assert training_memory_format(make_student("wrn-28-2", 10, width=4)) == torch.contiguous_format
    assert training_memory_format(make_student("resnet18", 10, width=8)) == torch.channels_last
    assert training_memory_format(make_student("small-cnn", 10, width=4)) == torch.channels_last


def test_student_architectures():
    resnet = make_student("resnet18", 10)
    assert resnet.feature_dim == 512 and len([m for m in resnet.modules() if type(m).__name__ == "BasicBlock"]) == 8
    stem = resnet.features[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)  # the CIFAR stem, no max-pool
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in resnet.modules())
    wrn = make_student("wrn-28-2", 10)
    convs = [m for m in wrn.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    blocks = [m for m in wrn.modules() if type(m).__name__ == "WideBlock"]
    assert len(blocks) == 12 and len(convs) == 1 + 24  # depth 6n + 4 with n = 4 blocks a stage
    assert wrn.feature_dim == 128 and blocks[0].conv1.in_channels == 16  # k = 2: 16 -> 32/64/128
    with pytest.raises(ClarepsError, match="unknown student 'vgg'.*small-cnn"):
        make_student("vgg", 10)


# -- the validation split and bank selection ----------------------------------------------------------

def test_validation_carve_is_seeded_stratified_and_disjoint(data):
    train, val = carve_validation(data, 0.25, seed=0)
    assert len(set(train.tolist()) & set(val.tolist())) == 0 and len(train) + len(val) == len(data)
    assert torch.bincount(data.labels[val], minlength=C).tolist() == [3] * C
    assert torch.equal(carve_validation(data, 0.25, seed=0)[1], val)
    assert not torch.equal(carve_validation(data, 0.25, seed=1)[1], val)


def test_bank_selection_drops_validation_items(tmp_path, data, npz):
    bank = load_bank(make_bank(tmp_path / "b", data, _fp(npz), kind="feat-real", n=12))
    _, val = carve_validation(data, 0.25, seed=0)
    kept = select_bank(bank, val, None, len(data), seed=0)
    assert not set(kept.source_index.tolist()) & set(val.tolist())
    assert len(kept) == len(bank) - int(torch.isin(bank.source_index, val).sum()) < len(bank)
    assert len(select_bank(bank, val, 0.1, len(data), seed=0)) == 5
    with pytest.raises(ClarepsError, match="bank_fraction 0.5"):
        select_bank(bank, val, 0.5, len(data), seed=0)


def test_teacher_targets_center_and_pool(tmp_path, data, npz):
    bank = load_bank(make_bank(tmp_path / "b", data, _fp(npz), dim=12, feature_shape=[3, 2, 2]))
    feats, protos = teacher_targets(bank, C, "none", "center")
    assert torch.allclose(feats.mean(0), torch.zeros(12), atol=1e-6)
    assert feats.pow(2).sum(1).mean().item() == pytest.approx(1.0, rel=1e-5)
    for c in range(C):  # prototypes stay the class means of the normalised features
        assert torch.allclose(protos[c], feats[bank.labels == c].mean(0), atol=1e-5)
    pooled, _ = teacher_targets(bank, C, "mean", "none")
    assert torch.allclose(pooled, bank.features.view(-1, 3, 4).mean(-1))
    bad = load_bank(make_bank(tmp_path / "c", data, _fp(npz), dim=12))
    with pytest.raises(ClarepsError, match="feature_shape"):
        teacher_targets(bad, C, "mean", "none")


# -- the trainer -------------------------------------------------------------------------------

@pytest.mark.parametrize("method,optim", [("cadistill", "sgd"), ("ce", "adamw")])
def test_resume_equals_uninterrupted(tmp_path, data, npz, method, optim):
    bank = str(make_bank(tmp_path / "bank", data, _fp(npz))) if method == "cadistill" else None
    kw = dict(method=method, bank=bank, optim={"name": optim, "lr": 0.01})
    straight = trainer(npz, tmp_path / "a", **kw)
    straight.train()
    assert straight.step == 2 * 4  # 36 training images / batch 8 = 4 steps an epoch
    trainer(npz, tmp_path / "b", stop_at=3, **kw).train()  # stops mid-epoch
    resumed = trainer(npz, tmp_path / "b", **kw)
    resumed.train(resume=True)
    for mine, theirs in ((straight.model, resumed.model), (straight.proj, resumed.proj)):
        if mine is not None:
            for name, value in mine.state_dict().items():
                assert torch.equal(value, theirs.state_dict()[name]), name
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [2, 3, 4, 6, 8]
    assert [r["epoch"] for r in rows if "val_acc" in r and not r.get("final")] == [1, 2]
    assert rows[-1]["final"] and json.loads((tmp_path / "b" / "result.json").read_text())["step"] == 8


def test_methods_see_the_same_real_batches(tmp_path, data, npz):
    bank = str(make_bank(tmp_path / "bank", data, _fp(npz)))
    seen = {}
    for method in ("ce", "cadistill"):
        t = trainer(npz, tmp_path / method, method=method, bank=bank if method == "cadistill" else None)
        inputs = []
        t.model.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].clone()))
        for _ in range(3):
            t.train_step()
        seen[method] = inputs
    for ce_x, cad_x in zip(seen["ce"], seen["cadistill"]):
        assert cad_x.shape[0] == ce_x.shape[0] + 6  # plus the canonical batch
        assert torch.equal(cad_x[:8], ce_x)
    assert not torch.equal(seen["ce"][0], seen["ce"][1])


def test_distill_terms_are_logged_and_student_loads(tmp_path, data, npz):
    bank = str(make_bank(tmp_path / "bank", data, _fp(npz)))
    t = trainer(npz, tmp_path / "run", bank=bank, loss={"proj_hidden": 0, "cka": "unbiased", "align": "mse"})
    result = t.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"ce", "cano", "align", "cka", "loss", "lr"} <= set(rows[0])
    model, meta = load_judge(tmp_path / "run" / "student.safetensors")
    assert meta["method"] == "cadistill" and meta["metrics"]["val_acc"] == result["val_acc"]
    x = torch.rand(3, 3, 8, 8)
    # bitwise equality holds only in the trainer's layout (the layouts run different convolution kernels on
    # AVX2, which round differently)
    assert torch.equal(model.to(memory_format=training_memory_format(model))(x), t.model.eval()(x))
    assert t.train() == result  # a complete run is reused, not retrained


# -- the CLI, the five methods and bad input ------------------------------------------------------

def _write_config(tmp_path, npz, **over):
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(tiny_config(npz, epochs=1, **over)))
    return path


def test_five_methods_train_from_the_cli(tmp_path, data, npz, run_cli):
    fp = _fp(npz)
    banks = {"cadistill": make_bank(tmp_path / "banks" / "canonical", data, fp),  # not where the students go
             "control": make_bank(tmp_path / "banks" / "control", data, fp, kind="control", k=0),
             "feat-real": make_bank(tmp_path / "banks" / "featreal", data, fp, kind="feat-real")}
    config = _write_config(tmp_path, npz)
    code, out, err = run_cli("train-kd-teacher", "-c", config, "--out", tmp_path / "kdt",
                             "--set", "kd.teacher_width=4", "--set", "kd.teacher_epochs=1", "-q")
    assert code == 0, err
    kdt = tmp_path / "kdt" / "kd_teacher.safetensors"
    code, _, err = run_cli("train-kd-teacher", "-c", config, "--out", tmp_path / "kdt2",
                           "--set", "kd.teacher_width=4", "--set", "kd.teacher_epochs=1", "-q")
    assert code == 0, err  # the same config gives the same bytes; the time lies beside the file
    assert (tmp_path / "kdt2" / "kd_teacher.safetensors").read_bytes() == kdt.read_bytes()
    assert json.loads((tmp_path / "kdt" / "timing.json").read_text())["train_seconds"] > 0
    for method in ("ce", "feat-real", "control", "kd", "cadistill"):
        extra = ["--bank", banks[method]] if method in banks else []
        extra += ["--kd-teacher", kdt] if method == "kd" else []
        code, out, err = run_cli("distill", "--method", method, "--seed", 1, "-c", config,
                                 "--out", tmp_path / "runs" / method, "-q", *extra)  # not into a bank's folder
        assert code == 0, err
        assert f"{method} seed 1: val_acc" in out and "student:" in out
        result = json.loads((tmp_path / "runs" / method / "result.json").read_text())
        assert result["method"] == method and result["seed"] == 1 and 0 <= result["val_acc"] <= 1
    terms = json.loads((tmp_path / "runs" / "kd" / "metrics.jsonl").read_text().splitlines()[0])
    assert "kd" in terms and "cano" not in terms


def test_sweep_picks_on_validation_and_reuses_its_runs(tmp_path, data, npz, run_cli):
    bank = make_bank(tmp_path / "canonical", data, _fp(npz))
    config = _write_config(tmp_path, npz, test_data={"held-out": str(npz)})
    args = ["distill-sweep", "-c", config, "--bank", bank, "--grid", "loss.weights.align=0,1",
            "--grid", "loss.weights.cka=0.5", "--seeds", "0,1", "--pgd-images", 8, "--out", tmp_path / "sw", "-q"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    res = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    rows = {r["setting"]: r for r in res["rows"]}
    assert list(rows) == ["ce", "align=0_cka=0.5", "align=1_cka=0.5"]
    for r in rows.values():
        assert r["seeds"] == 2 and 0 <= r["val"] <= 1 and 0 <= r["val_pgd"] <= r["val"] + 1e-9
        assert r["val_rand"] is None  # npz data has no train-rand split
    runs = sorted(p.name for p in (tmp_path / "sw" / "runs").iterdir())
    assert runs == sorted(f"{n}-s{s}" for n in rows for s in (0, 1))
    cfg = yaml.safe_load((tmp_path / "sw" / "runs" / "align=0_cka=0.5-s1" / "config.yaml").read_text())
    assert cfg["loss"]["weights"]["align"] == 0 and cfg["loss"]["weights"]["cka"] == 0.5 and cfg["seed"] == 1
    assert "chosen:" in out and "| method | setting | loss.weights.align |" in out
    for result in (tmp_path / "sw" / "runs").glob("*/result.json"):  # the preset's test file is never scored
        assert not [k for k in json.loads(result.read_text()) if k.startswith("test_acc")]

    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "sw" / "runs").glob("*/student.safetensors")}
    code, out2, err = run_cli(*args)
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # nothing retrained
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"] == res["rows"]

    # one axis at a time: the preset, then each value alone; ce and the runs of the same settings reused
    code, out3, err = run_cli("distill-sweep", "-c", config, "--bank", bank, "--grid", "loss.weights.align=0,2",
                              "--grid", "loss.head=linear", "--seeds", "0", "--pgd-images", 8, "--one-axis",
                              "--out", tmp_path / "sw", "-q")
    assert code == 0, err
    one = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [r["setting"] for r in one["rows"]] == ["ce", "base", "align=0", "align=2", "head=linear"]
    assert [r["loss.head"] for r in one["rows"][1:]] == ["preset", "preset", "preset", "linear"]
    cfg = yaml.safe_load((tmp_path / "sw" / "runs" / "head=linear-s0" / "config.yaml").read_text())
    base = yaml.safe_load((tmp_path / "sw" / "runs" / "base-s0" / "config.yaml").read_text())["loss"]
    assert cfg["loss"]["head"] == "linear" and base["head"] == "mlp"
    assert cfg["loss"]["weights"]["align"] == base["weights"]["align"] not in (0, 2)  # the preset's, not the grid's
    ce = tmp_path / "sw" / "runs" / "ce-s0" / "student.safetensors"
    assert one["one_axis"] and ce.stat().st_mtime_ns == stamp[ce]  # the same ce reference, not retrained

    code, _, err = run_cli("distill-sweep", "-c", config, "--grid", "loss.weights.alig=1", "--out", tmp_path / "x")
    assert code == 2 and "unknown config key 'loss.weights.alig' (did you mean 'loss.weights.align'?)" in err
    assert not (tmp_path / "x").exists()
    code, _, err = run_cli("distill-sweep", "-c", config, "--grid", "loss.lambda_dist=1", "--out", tmp_path / "x")
    assert code == 2 and err.strip().endswith("loss.lambda_dist is now loss.weights.cka"), err
    code, _, err = run_cli("distill-sweep", "-c", config, "--grid", "loss.weights.align", "--out", tmp_path / "x")
    assert code == 2 and "bad grid axis" in err


def test_sweep_rule_keeps_val_accuracy_and_maximises_robustness():
    from clareps.studies.distill_sweep import best_distill_setting

    rows = [{"method": "ce", "setting": "ce", "val": 0.90, "val_rand": 0.5, "val_pgd": 0.1},
            {"method": "cadistill", "setting": "a", "val": 0.80, "val_rand": 0.9, "val_pgd": 0.9},  # too costly
            {"method": "cadistill", "setting": "b", "val": 0.89, "val_rand": 0.6, "val_pgd": 0.3},
            {"method": "cadistill", "setting": "c", "val": 0.95, "val_rand": 0.55, "val_pgd": None}]
    assert best_distill_setting(rows, 0.02)["setting"] == "c"  # 0.55 alone beats (0.6 + 0.3) / 2
    assert best_distill_setting(rows, 0.2)["setting"] == "a"
    assert best_distill_setting(rows[:2], 0.02) is None


@pytest.mark.parametrize("case,match", [
    ("other-data", "built on other data"),
    ("other-teacher", "was built with teacher"),
    ("control-bank-for-cadistill", "needs a canonical bank"),
    ("canonical-bank-for-control", "needs a control bank"),
    ("k0-canonical", "needs a bank with k > 0"),
    ("feat-real-fake-images", "not the training images"),
    ("meta-dim", "meta feature_dim 32"),
    ("unknown-method", "unknown method 'distil'"),
    ("unknown-student", "unknown student 'vgg'"),
    ("kd-no-teacher", "needs a classifier teacher"),
    ("ce-with-bank", "uses no bank"),
    ("no-bank", "needs a canonical bank: pass --bank"),
    ("npz-test-splits", "npz has no splits"),
])
def test_bad_input_is_one_line_error(tmp_path, data, npz, run_cli, case, match):
    fp = _fp(npz)
    config = _write_config(tmp_path, npz)
    method, bank, extra = "cadistill", make_bank(tmp_path / "bank", data, fp), []
    if case == "other-data":
        bank = make_bank(tmp_path / "other", data, "benchmark-abc:train")
    elif case == "other-teacher":
        teacher = tmp_path / "teacher.safetensors"
        teacher.write_bytes(b"not the teacher the bank was built with")
        extra = ["--teacher", teacher]
    elif case == "control-bank-for-cadistill":
        bank = make_bank(tmp_path / "control", data, fp, kind="control", k=0)
    elif case == "canonical-bank-for-control":
        method = "control"
    elif case == "k0-canonical":
        bank = make_bank(tmp_path / "k0", data, fp, k=0)
    elif case == "feat-real-fake-images":
        method, bank = "feat-real", make_bank(tmp_path / "fr", data, fp, kind="canonical")
        bank_obj = load_bank(bank)
        bank_obj.meta["bank_kind"] = "feat-real"
        bank_obj.source_index = torch.arange(len(bank_obj))
        save_bank(bank, bank_obj)
    elif case == "meta-dim":
        bank = make_bank(tmp_path / "md", data, fp, feature_dim=32)
    elif case == "unknown-method":
        method = "distil"
    elif case == "unknown-student":
        extra = ["--set", "student.name=vgg"]
    elif case in ("kd-no-teacher", "ce-with-bank"):
        method = case.split("-")[0]
        bank = bank if case == "ce-with-bank" else None
    elif case == "no-bank":
        bank = None
    elif case == "npz-test-splits":  # an npz file has one split: "testing" on it would score training data
        extra = ["--set", "test_splits=[test]"]
    args = ["distill", "--method", method, "-c", config, "--out", tmp_path / "run", "-q", *extra]
    code, out, err = run_cli(*args, *(["--bank", bank] if bank is not None else []))
    assert code == 2, out
    assert match in err and err.strip().count("\n") == 0 and err.startswith("error: ")


def test_bank_whose_features_do_not_fit_the_head(tmp_path, data, npz, run_cli):
    fp = _fp(npz)
    config = _write_config(tmp_path, npz)
    first = make_bank(tmp_path / "b16", data, fp, dim=16)
    code, _, err = run_cli("distill", "--method", "cadistill", "-c", config, "--bank", first,
                           "--out", tmp_path / "run", "--set", "stop_at=1", "-q")
    assert code == 0, err
    wider = make_bank(tmp_path / "b24", data, fp, dim=24)
    code, _, err = run_cli("distill", "--method", "cadistill", "-c", config, "--bank", wider,
                           "--out", tmp_path / "run", "-q")
    assert code == 2 and "does not fit the head" in err and err.strip().count("\n") == 0
    # another bank of the same size is refused too: the run's config hash covers the bank's content
    same_size = make_bank(tmp_path / "b16b", data, fp, dim=16, n=16)
    code, _, err = run_cli("distill", "--method", "cadistill", "-c", config, "--bank", same_size,
                           "--out", tmp_path / "run", "-q")
    assert code == 2 and "another config or bank" in err


def test_cli_error_has_no_traceback(tmp_path, npz):
    config = _write_config(tmp_path, npz)
    proc = subprocess.run([sys.executable, "-m", "clareps", "distill", "--method", "nope", "-c", str(config),
                           "--out", str(tmp_path / "run"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: unknown method 'nope' (known: ce, feat-real, control, kd, cadistill, cadistill-oracle, ce-oracle)"


def test_banks_from_the_builder_feed_the_trainer(tiny_teacher, tiny_data_cache, tmp_path):
    """The real bank builder's format and metadata pass the trainer's checks (data, teacher, kind)."""
    from clareps.bank.build import BankConfig, build_bank
    from clareps.io import hash_file

    data = {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": tiny_data_cache}
    for kind, method in (("canonical", "cadistill"), ("feat-real", "feat-real")):
        build_bank(build_config(BankConfig, {
            "teacher": tiny_teacher, "device": "cpu", "per_class": 2, "shard_size": 20, "kind": kind, "data": data,
            "clarid": {"k": 2, "steps": 5, "max_iter": 3, "t_e": 0.3}}), tmp_path / kind, quiet=True)
        cfg = build_config(DistillConfig, tiny_config(
            "unused", data=data, method=method, bank=str(tmp_path / kind), expect_teacher=hash_file(tiny_teacher),
            epochs=1, batch_size=30, test_splits=["test-original"]))
        result = DistillTrainer(cfg, tmp_path / f"run-{kind}", quiet=True).train()
        assert result["method"] == method and 0 <= result["test_acc/test-original"] <= 1


def test_an_unknown_option_is_a_usage_error_not_a_traceback(run_cli):
    code, _, err = run_cli("distill", "--bogus")
    assert code == 2 and "No such option: --bogus" in err and "Traceback" not in err


def test_a_bank_keeps_features_read_with_both_labels_and_students_pick_one(tiny_teacher, tiny_data_cache,
                                                                           tmp_path):
    """`loss.target_label`: the bank stores f(x~, t_e, class) and f(x~, t_e, null); the student aims at either."""
    from clareps.adapters.loading import load_teacher_any
    from clareps.bank.build import BankConfig, build_bank
    from clareps.clarid.canonical import features, timestep

    data = {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": tiny_data_cache}
    cfg = build_config(BankConfig, {"teacher": tiny_teacher, "device": "cpu", "per_class": 1, "shard_size": 10,
                                    "data": data, "clarid": {"k": 2, "steps": 5, "max_iter": 3, "t_e": 0.3}})
    bank, _ = build_bank(cfg, tmp_path / "bank", quiet=True)
    model, _ = load_teacher_any(tiny_teacher, "cpu", None)
    t = timestep(model, cfg.clarid)
    null = torch.full_like(bank.labels, model.null_class)
    loaded = load_bank(tmp_path / "bank")
    assert torch.allclose(loaded.other_features, features(model, bank.latents, t, null, "mid"), atol=1e-5)
    assert torch.allclose(loaded.features, features(model, bank.latents, t, bank.labels, "mid"), atol=1e-5)
    assert loaded.read_with("class") is loaded
    assert torch.equal(loaded.read_with("null").features, loaded.other_features)

    runs = {}
    for label in ("bank", "null"):
        dcfg = build_config(DistillConfig, tiny_config(
            "unused", data=data, method="cadistill", bank=str(tmp_path / "bank"), epochs=1, batch_size=30,
            test_splits=[], val_fraction=0.0, loss={"proj_hidden": 8, "target_label": label}))
        runs[label] = DistillTrainer(dcfg, tmp_path / f"run-{label}", quiet=True)
    assert torch.equal(runs["bank"].bank.features, loaded.features)
    assert torch.equal(runs["null"].bank.features, loaded.other_features)

    old = Bank(**{n: getattr(loaded, n) for n in ("images", "features", "labels", "source_index", "latents",
                                                  "singular_values", "seconds")}, meta=loaded.meta)
    with pytest.raises(ClarepsError, match="rebuild it to read them with the null label"):
        old.read_with("null")
