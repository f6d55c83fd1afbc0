"""Bad input through the CLI, as a new user would type it: one line on stderr, a non-zero exit, and
nothing written (issue 18, items 1, 3 and 4)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from clareps.bank.format import Bank, save_bank
from clareps.io import hash_file


def refused(code: int, err: str, match: str) -> None:
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], (code, err)


def snapshot(folder: Path) -> dict:
    """Every path under ``folder``, with each file's bytes and time (a folder's own time moves with the
    writability probe's create-and-delete, which leaves nothing)."""
    return {str(p.relative_to(folder)): (hash_file(p), p.stat().st_mtime_ns) if p.is_file() else None
            for p in folder.rglob("*")}


# -- 1. numbers out of range, refused by the schema before any work ---------------------------------
@pytest.mark.parametrize("args, match", [
    (["train-teacher", "--set", "batch_size=-4"], "'batch_size'"),
    (["train-teacher", "--set", "batch_size=0"], "'batch_size'"),
    (["train-teacher", "--set", "steps=0"], "'steps'"),
    (["train-teacher", "--set", "model.base_channels=0"], "'model.base_channels'"),
    (["train-teacher", "--set", "T=0"], "'T'"),
    (["train-teacher", "--set", "ckpt_every=0"], "'ckpt_every'"),
    (["train-teacher", "--set", "lr=nan"], "'lr'"),
    (["train-teacher", "--set", "model.image_size=30"], "cannot be halved"),
    (["bank", "build", "--set", "clarid.k=-1"], "'clarid.k'"),
    (["bank", "build", "--set", "clarid.t_e=1.5"], "'clarid.t_e'"),
    (["bank", "build", "--set", "clarid.t_e=-0.2"], "'clarid.t_e'"),
    (["bank", "build", "--set", "clarid.steps=0"], "'clarid.steps'"),
    (["bank", "build", "--set", "clarid.w=nan"], "'clarid.w'"),
    (["distill", "--set", "epochs=-1"], "'epochs'"),
    (["distill", "--set", "student.width=-3"], "'student.width'"),
    (["distill", "--set", "batch_size=0"], "'batch_size'"),
    (["distill", "--set", "val_fraction=1"], "'val_fraction'"),
    (["sample", "--per-class", "0"], "'--per-class'"),
    (["sample", "--steps", "0"], "'--steps'"),
    (["sample", "--steps", "-3"], "'--steps'"),
    (["sample", "--w", "nan"], "'--w'"),
    (["teacher-check", "--per-class", "0"], "'--per-class'"),
    (["evaluate", "--student", "x", "--set", "robustness.budgets_255=[-1]"], "'robustness.budgets_255.0'"),
    (["bank", "sweep", "--k", "abc"], "bad --k 'abc'"),
    (["bank", "sweep", "--t-e", "2.0"], "'clarid.t_e'"),
    (["bank", "sweep", "--k", ","], "--k is empty"),
    (["bank", "sweep", "--variants", ""], "bad --variants"),
])
def test_out_of_range_is_one_line_before_any_work(args, match, tmp_path, run_cli):
    out = tmp_path / "out"
    code, _, err = run_cli(*args, *(["--out", out] if args[0] != "teacher-check" else []))
    refused(code, err, match)
    assert not out.exists()


def _bank_preset(tmp_path, teacher, cache, **over) -> str:
    cfg = {"teacher": teacher, "device": "cpu", "per_class": 2, "shard_size": 4, "source": "matched",
           "data": {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": cache},
           "clarid": {"k": 2, "steps": 6, "max_iter": 3, "t_e": 0.3}, **over}
    path = tmp_path / "bank.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_bounds_that_need_the_teacher_are_checked_before_the_first_bank(tmp_path, tiny_teacher, tiny_data_cache,
                                                                         run_cli):
    preset = _bank_preset(tmp_path, tiny_teacher, tiny_data_cache)
    out = tmp_path / "sweep"
    code, _, err = run_cli("bank", "sweep", "-c", preset, "--k", "1,5000", "--t-e", "0.3", "--w", "2",
                           "--per-class", "1", "--out", out, "-q")
    refused(code, err, "exceeds the teacher's latent dimension 3072")
    assert not out.exists()
    code, _, err = run_cli("bank", "build", "-c", preset, "--set", "clarid.k=5000", "--out", out)
    refused(code, err, "clarid.k=5000 exceeds")
    assert not out.exists()


def test_a_batch_larger_than_the_data_is_refused(tmp_path, tiny_data_cache, run_cli):
    out = tmp_path / "teacher"
    code, _, err = run_cli("train-teacher", "--set", f"data.cache_dir={tiny_data_cache}",
                           "--set", "data.benchmark={n_train: 200, n_test: 50}", "--set", "batch_size=201",
                           "--set", "precision=fp32", "--out", out)
    refused(code, err, "batch_size 201 is larger than the data (200 images)")
    assert not out.exists()


# -- 3. an output folder that cannot be written, refused before any work ----------------------------
def _unwritable_places(tmp_path: Path) -> list[Path]:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    places = [blocker / "out"]
    try:  # /sys refuses new entries even to root here; elsewhere it may not exist or be writable
        fd, tmp = tempfile.mkstemp(dir="/sys")
        os.close(fd)
        os.unlink(tmp)
    except OSError:
        places.append(Path("/sys/clareps-out"))
    return places


@pytest.mark.parametrize("verb", [["train-teacher"], ["bank", "build"], ["distill"], ["train-judge"],
                                  ["train-mask-judge"],
                                  ["sample", "--teacher", "nope"], ["bank", "sweep"], ["demo", "-c", "demo-tiny"]])
def test_unwritable_out_is_one_line_before_any_work(verb, tmp_path, run_cli):
    for place in _unwritable_places(tmp_path):
        code, _, err = run_cli(*verb, "--out", place)
        refused(code, err, f"cannot write to {place}")


def test_evaluate_refuses_an_unwritable_results_file_before_evaluating(tmp_path, run_cli):
    student = tmp_path / "student.safetensors"
    student.write_bytes(b"")  # never read: the output is checked first
    place = _unwritable_places(tmp_path)[0]
    code, _, err = run_cli("evaluate", "--student", student, "--out", place / "eval.json")
    refused(code, err, "cannot write to")


# -- 4. refusals that wrote before refusing ---------------------------------------------------------
def test_bank_build_refuses_a_folder_of_other_artifacts(tmp_path, tiny_teacher, tiny_data_cache, run_cli):
    folder = Path(tiny_teacher).parent
    before = snapshot(folder)
    preset = _bank_preset(tmp_path, tiny_teacher, tiny_data_cache)
    code, _, err = run_cli("bank", "build", "-c", preset, "--out", folder, "-q")
    refused(code, err, "not a bank: use a new --out folder")
    assert snapshot(folder) == before


def test_report_refuses_a_folder_that_is_not_a_demo_run(tmp_path, tiny_teacher, run_cli):
    for folder in (tmp_path / "empty", Path(tiny_teacher).parent):
        folder.mkdir(exist_ok=True)
        before = snapshot(folder)
        code, _, err = run_cli("report", folder)
        refused(code, err, "is not a demo run root")
        assert snapshot(folder) == before


def _fake_bank(folder: Path, teacher_sha: str) -> Path:
    n = 4
    meta = {"teacher_sha256": teacher_sha, "data_fingerprint": "d", "t_e": 0.5, "w": 3.0, "tap": "mid", "k": 2}
    save_bank(folder, Bank(images=torch.zeros(n, 3, 8, 8), features=torch.zeros(n, 4), labels=torch.arange(n),
                           source_index=torch.full((n,), -1), latents=torch.zeros(n, 3, 8, 8),
                           singular_values=torch.zeros(n, 2), seconds=torch.ones(n), meta=meta))
    return folder


def test_bank_show_refuses_a_control_of_another_teacher(tmp_path, run_cli):
    canon, ctrl = _fake_bank(tmp_path / "canon", "aaa"), _fake_bank(tmp_path / "ctrl", "bbb")
    before = snapshot(tmp_path)
    code, _, err = run_cli("bank", "show", "--bank", canon, "--control", ctrl)
    refused(code, err, "is not a control of")
    assert "teacher_sha256" in err and snapshot(tmp_path) == before


@pytest.mark.parametrize("make, match", [
    (lambda run: (run / "teacher").mkdir(parents=True) or
     (run / "teacher" / "config.yaml").write_text("config_hash: another\n"), "a teacher trained with another config"),
    (lambda run: (run / "banks" / "canonical").mkdir(parents=True) or
     (run / "banks" / "canonical" / "bank.json").write_text('{"config_hash": "another"}'), "a canonical bank"),
])
def test_demo_refuses_another_configs_run_root_before_writing(make, match, tmp_path, tiny_data_cache, run_cli):
    run = tmp_path / "run"
    make(run)
    (run / "demo.yaml").write_text("old: config\n")
    (run / "demo.json").write_text(json.dumps({"history": [], "built": {}}))
    before = {p: hash_file(p) for p in run.rglob("*") if p.is_file()}
    code, _, err = run_cli("demo", "-c", "demo-tiny", "--out", run, "--set", f"data.cache_dir={tiny_data_cache}", "-q")
    refused(code, err, match)
    assert {p: hash_file(p) for p in run.rglob("*") if p.is_file()} == before


# -- 6. small ones ----------------------------------------------------------------------------------
def test_safetensors_artifacts_are_shared_like_the_others(tmp_path):
    from clareps.io import save_tensors

    path = save_tensors(tmp_path / "a.safetensors", {"x": torch.zeros(2)}, {})
    assert oct(path.stat().st_mode & 0o777) == oct((tmp_path / "a.json").stat().st_mode & 0o777) == "0o644"


def test_a_bare_null_names_the_null_class_where_a_label_is_asked():
    """YAML reads `null` as nothing; `--set loss.target_label=null` still means the null class."""
    from clareps.clarid.canonical import ClaridConfig
    from clareps.config import load_config
    from clareps.distill.config import DistillConfig
    from clareps.errors import ClarepsError
    from clareps.paths import preset

    assert load_config(DistillConfig, preset("distill-default"), ["loss.target_label=null"]).loss.target_label == "null"
    assert ClaridConfig(feature_label=None).feature_label == "null"
    with pytest.raises(ClarepsError, match="loss.head"):  # elsewhere nothing is still refused
        load_config(DistillConfig, preset("distill-default"), ["loss.head=null"])


# -- 7. the second pass: what still got through -----------------------------------------------------
BIG_SEED = str(2**70)


def refused_before_work(code: int, err: str, match: str) -> None:
    """One ``error:`` line, exit 2, no traceback."""
    refused(code, err, match)
    assert code == 2 and "Traceback" not in err, (code, err)


@pytest.mark.parametrize("args, match", [
    (["train-teacher", "--set", f"seed={BIG_SEED}"], "bad value for 'seed': Input should be less than or equal to"),
    (["bank", "build", "--set", f"seed={BIG_SEED}"], "bad value for 'seed'"),
    (["sample", "--seed", BIG_SEED], "bad value for '--seed'"),
    (["teacher-check", "--seed", BIG_SEED], "bad value for '--seed'"),
    (["distill", "--seed", BIG_SEED], "bad value for 'seed'"),
    (["distill-sweep", "--grid", "lr=0.1", "--seeds", f"0,{BIG_SEED}"], "bad --seeds"),
    (["distill", "--method", "ce", "--set", "epochs=true"], "bad value for 'epochs': expected a number, got the bool true"),
    (["train-teacher", "--set", "steps=2.0"], "bad value for 'steps': expected a whole number, got 2.0"),
    (["train-teacher", "--set", "lr=true"], "bad value for 'lr': expected a number, got the bool true"),
    (["bank", "build", "--set", "teacher_classes=[1, true]"], "bad value for 'teacher_classes'"),
    (["sample", "--per-class", "100000000"], "above the limit of 1000 per class; pass --no-limit"),
    (["teacher-check", "--per-class", "5000"], "pass --no-limit"),
    (["train-teacher", "--set", "=5"], "override '=5' names no key"),
    (["train-teacher", "--set", "model..groups=4"], "names no key"),
    (["sample", "--per-class", "abc"], "sample: Invalid value for '--per-class'"),
    (["data", "show", "--per-class", "0"], "data show: Invalid value for '--per-class'"),
    (["sample", "--no-such-option"], "sample: No such option: --no-such-option"),
])
def test_second_pass_refusals_are_one_line_before_any_work(args, match, tmp_path, run_cli):
    out = tmp_path / "out"
    code, _, err = run_cli(*args, *(["--out", out] if args[0] not in ("teacher-check",) else []))
    refused_before_work(code, err, match)
    assert not out.exists()


def test_a_bad_set_value_names_the_command_line_and_a_bad_preset_value_its_file(tmp_path, run_cli):
    code, _, err = run_cli("train-teacher", "--set", "batch_size=-4", "--out", tmp_path / "out")
    refused_before_work(code, err, "error: command line: bad value for 'batch_size'")
    assert "teacher-default.yaml" not in err
    code, _, err = run_cli("bank", "build", "--set", f"seed={BIG_SEED}", "--out", tmp_path / "out")
    refused_before_work(code, err, "error: command line: bad value for 'seed'")
    preset = tmp_path / "teacher.yaml"
    preset.write_text("batch_size: -4\n")
    code, _, err = run_cli("train-teacher", "-c", preset, "--set", "steps=2", "--out", tmp_path / "out")
    refused_before_work(code, err, f"error: {preset}: bad value for 'batch_size'")
    assert not (tmp_path / "out").exists()


def test_a_config_file_of_random_bytes_or_a_folder_is_refused(tmp_path, run_cli):
    import random

    noise = tmp_path / "noise.yaml"
    noise.write_bytes(random.Random(0).randbytes(3000))
    code, _, err = run_cli("train-teacher", "--config", noise, "--out", tmp_path / "out")
    refused_before_work(code, err, "is not text (not UTF-8)")
    code, _, err = run_cli("train-teacher", "--config", tmp_path, "--out", tmp_path / "out")
    refused_before_work(code, err, "is a folder, not a YAML file")
    assert not (tmp_path / "out").exists()


def test_sampling_steps_above_the_teachers_T_are_refused_before_loading_it(tmp_path, tiny_teacher, run_cli):
    out = tmp_path / "samples"
    code, _, err = run_cli("sample", "--teacher", tiny_teacher, "--steps", "100000", "--per-class", "1", "--out", out)
    refused_before_work(code, err, "--steps 100000 is more than the teacher's T = 1000 diffusion steps")
    assert not out.exists()


def test_a_folder_given_for_a_checkpoint_file_says_so(tmp_path, run_cli):
    folder = tmp_path / "not-a-file"
    folder.mkdir()
    code, _, err = run_cli("distill", "--method", "kd", "--kd-teacher", folder, "--out", tmp_path / "out")
    refused_before_work(code, err, f"{folder} is a folder, not a checkpoint file")
    assert "os error" not in err


FOREIGN_OUT = [  # every verb that writes an --out folder, as far as its cheap checks
    ["train-teacher", "--set", "steps=1"], ["distill", "--method", "ce"], ["train-kd-teacher"], ["train-judge"],
    ["train-mask-judge"], ["sample", "--per-class", "1"], ["data", "show"], ["bank", "sweep"],
    ["distill-sweep", "--grid", "lr=0.1"], ["aggregate", "nowhere"], ["bank", "show", "--bank", "nowhere"],
]


@pytest.mark.parametrize("verb", FOREIGN_OUT, ids=lambda v: " ".join(v[:2]))
def test_every_verb_refuses_an_out_folder_of_someone_elses_files(verb, tmp_path, run_cli):
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    before = snapshot(folder)
    code, _, err = run_cli(*verb, "--out", folder)
    refused_before_work(code, err, f"{folder} holds other files (notes.txt), not ")
    assert snapshot(folder) == before


def test_the_out_rule_takes_new_empty_own_and_marked_folders(tmp_path):
    from clareps.errors import ClarepsError
    from clareps.runs import refuse_foreign_folder

    for name, files in (("new", None), ("empty", []), ("hidden", [".DS_Store"]), ("own", ["samples_w3_seed0.png"]),
                        ("marked", ["config.yaml", "notes.txt"])):
        folder = tmp_path / name
        if files is not None:
            folder.mkdir()
            for f in files:
                (folder / f).write_text("x")
        refuse_foreign_folder(folder, "a run", markers=("config.yaml",), own=("samples_*.png",))
    with pytest.raises(ClarepsError, match="holds other files"):
        refuse_foreign_folder(tmp_path / "own", "a run", own=("other_*.png",))


def test_evaluate_refuses_to_write_its_results_over_someone_elses_file(tmp_path, run_cli):
    student = tmp_path / "student.safetensors"
    student.write_bytes(b"")  # never read: the output is checked first
    theirs = tmp_path / "notes.json"
    theirs.write_text('{"mine": 1}\n')
    before = snapshot(tmp_path)
    code, _, err = run_cli("evaluate", "--student", student, "--out", theirs)
    refused_before_work(code, err, "is not an evaluation's results")
    code, _, err = run_cli("evaluate", "--student", student, "--out", tmp_path)
    refused_before_work(code, err, "is a folder: give a results file")
    assert snapshot(tmp_path) == before


def test_bank_compare_of_other_items_is_refused_before_measuring(tmp_path, run_cli, monkeypatch):
    import clareps.studies.bank_compare as bank_compare

    a = _fake_bank(tmp_path / "a", "aaa")
    b = tmp_path / "b"
    save_bank(b, Bank(images=torch.zeros(4, 3, 8, 8), features=torch.zeros(4, 4), labels=torch.tensor([0, 0, 1, 1]),
                      source_index=torch.full((4,), -1), latents=torch.zeros(4, 3, 8, 8),
                      singular_values=torch.zeros(4, 2), seconds=torch.ones(4), meta={"teacher_sha256": "aaa"}))

    def no_work(*args, **kwargs):
        raise AssertionError("measured a bank before refusing")

    monkeypatch.setattr(bank_compare, "item_measures", no_work)
    before = snapshot(tmp_path)
    code, _, err = run_cli("bank", "compare", a, b, "--out", tmp_path / "cmp")
    refused_before_work(code, err, f"{b} holds other items than {a}")
    assert snapshot(tmp_path) == before


def test_a_resumed_teacher_run_says_from_which_step(tmp_path, tiny_data_cache, run_cli):
    out = tmp_path / "teacher"
    args = ["train-teacher", "--set", f"data.cache_dir={tiny_data_cache}",
            "--set", "data.benchmark={n_train: 200, n_test: 50}",
            "--set", "model={base_channels: 8, channel_mult: [1, 2], groups: 4, attn_resolutions: [16]}",
            "--set", "batch_size=8", "--set", "ckpt_every=2", "--set", "precision=fp32", "--set", "warmup=1",
            "--out", out, "-q"]
    code, _, err = run_cli(*args, "--set", "steps=2")
    assert code == 0 and "resuming" not in err, err
    code, _, err = run_cli(*args, "--set", "steps=3")
    assert code == 0 and f"resuming from step 2 of 3 ({out / 'checkpoint.safetensors'})" in err, err
