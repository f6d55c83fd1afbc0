"""The bank verbs end to end on a tiny teacher: build + metrics, show, sweep."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clareps.bank.metrics import METRICS_VERSION
from clareps.io import load_tensors


def _preset(tmp_path, teacher, cache) -> str:
    cfg = {"teacher": teacher, "device": "cpu", "per_class": 2, "shard_size": 10, "source": "matched",
           "data": {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": cache},
           "clarid": {"k": 2, "steps": 6, "max_iter": 3, "t_e": 0.3}}
    path = tmp_path / "bank.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _run(*args):
    proc = subprocess.run([sys.executable, "-m", "clareps", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_build_show_sweep_and_compare(tiny_teacher, tiny_data_cache, tiny_judge, tiny_mask_judge, tmp_path,
                                      run_cli):
    preset = _preset(tmp_path, tiny_teacher, tiny_data_cache)
    judges = ["--judge", tiny_judge, "--mask-judge", tiny_mask_judge]
    out = _run("bank", "build", "-c", preset, "--out", str(tmp_path / "canon"), *judges, "-q")
    assert "20 items" in out
    metrics = json.loads((tmp_path / "canon" / "metrics.json").read_text())
    assert (tmp_path / "canon" / "items.safetensors").is_file()  # the per-item measures behind them
    for key in ("class_consistency", "nmi_features", "nmi_input_features", "bg_change", "bg_source_kept",
                "ami_features", "probe_features_shuffled", "ami_input_features", "removed_share", "engine_iterations",
                "engine_energy", "shape_iou", "tint_shift", "texture_change", "bg_source_kept_correlated",
                "bg_source_kept_other", "bg_correlated", "bg_correlated_train"):
        assert key in metrics
    assert metrics["metrics_version"] == METRICS_VERSION
    assert metrics["bg_correlated_train"] == pytest.approx(0.55, abs=0.1)
    _run("bank", "build", "-c", preset, "--control", "--out", str(tmp_path / "ctrl"), *judges, "-q")
    out = _run("bank", "show", "--bank", str(tmp_path / "canon"), "--control", str(tmp_path / "ctrl"), *judges)
    assert out.count("(reused)") == 2 and "shape IoU (mask judge vs source mask)" in out
    assert "engine converged" in out and "captured energy" in out
    moved = []  # the same judges in another folder (a moved checkout): the same judges, metrics reused
    for i, path in enumerate((tiny_judge, tiny_mask_judge)):
        dest = tmp_path / f"moved{i}" / Path(path).name
        dest.parent.mkdir()
        for src in Path(path).parent.glob(Path(path).stem + ".*"):
            shutil.copy(src, dest.parent / src.name)
        moved += [dest]
    out = _run("bank", "show", "--bank", str(tmp_path / "canon"), "--judge", str(moved[0]), "--mask-judge",
               str(moved[1]))
    assert out.count("(reused)") == 1
    assert "judge" not in load_tensors(tmp_path / "canon" / "items.safetensors")[1]
    assert (tmp_path / "canon" / "comparison.png").stat().st_size > 0
    assert (tmp_path / "canon" / "spectra.png").stat().st_size > 0

    # a bank measured by an older version gets the new measures from the bank itself, not rebuilt
    bank_file = tmp_path / "canon" / "bank.safetensors"
    built = bank_file.stat().st_mtime_ns
    old = {k: v for k, v in metrics.items() if k not in ("shape_iou", "metrics_version")}
    (tmp_path / "canon" / "metrics.json").write_text(json.dumps(old))
    out = _run("bank", "build", "-c", preset, "--out", str(tmp_path / "canon"), *judges, "-q")
    assert "reused, " in out and "(reused)" not in out  # the bank reused, its metrics recomputed
    again = json.loads((tmp_path / "canon" / "metrics.json").read_text())
    assert again["shape_iou"] == metrics["shape_iou"] and bank_file.stat().st_mtime_ns == built
    out = _run("bank", "show", "--bank", str(tmp_path / "canon"), "--judge", tiny_judge)  # another mask judge
    assert "(computed)" in out

    out = _run("bank", "sweep", "-c", preset, "--t-e", "0.3", "--k", "1", "--w", "2", "--variants", "plain,norm",
               "--directions", "jacobian,low-frequency", "--per-class", "1", *judges,
               "--out", str(tmp_path / "sweep"), "-q")
    rows = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["rows"]
    assert all(r["shape_iou"] is not None and r["tint_shift"] is not None for r in rows)
    assert [(r["k"], r["variant"], r["directions"]) for r in rows] == [
        (0, "plain", "jacobian"), (1, "plain", "jacobian"), (1, "plain", "low-frequency"),
        (1, "norm", "jacobian"), (1, "norm", "low-frequency")]
    assert (tmp_path / "sweep" / "te0.3_k1_w2_plain").is_dir()  # the older folder names are kept
    assert (tmp_path / "sweep" / "te0.3_k1_w2_plain_low-frequency").is_dir()
    assert "| t_e |" in out

    # banks of one sweep, item by item against the k = 0 control; a bank against itself differs by 0
    sweep = tmp_path / "sweep"
    ctrl, jac, low = (sweep / n for n in ("te0.3_k0_w2_plain", "te0.3_k1_w2_plain", "te0.3_k1_w2_plain_low-frequency"))
    out = _run("bank", "compare", str(ctrl), str(jac), str(low), str(ctrl), *judges, "--out", str(tmp_path / "te0.3_k1"))
    rows = json.loads((tmp_path / "te0.3_k1.json").read_text())["rows"]
    measured = {(r["bank"], r["measure"]) for r in rows}
    assert {(jac.name, m) for m in ("class_correct", "shape_iou", "bg_source_kept", "bg_minus_fg_change")} <= measured
    for r in rows:
        assert r["difference"] == pytest.approx(r["other"] - r["reference"], abs=1e-6)
        if r["bank"] == ctrl.name:
            assert r["difference"] == 0 and r["verdict"].startswith(("no detectable difference", "bank-level"))
    assert "| bank | measure |" in out and (tmp_path / "te0.3_k1.md").is_file()
    assert (tmp_path / "te0.3_k1.png").stat().st_size > 0
    code, _, err = run_cli("bank", "compare", ctrl, tmp_path / "canon", *judges)
    assert code == 2 and "holds other items" in err

    # the same banks' per-item measures as one file (study selectivity items), and the wide table (study table clarid)
    _run("study", "selectivity", "items", "--out", str(tmp_path / "items.json"), f"control={ctrl}", f"jacobian={jac}",
         *judges)
    items = json.loads((tmp_path / "items.json").read_text())
    assert list(items["banks"]) == ["control", "jacobian"] and len(items["labels"]) == len(items["source_index"])
    shape = next(r for r in rows if r["bank"] == jac.name and r["measure"] == "shape_iou")
    iou = items["banks"]["jacobian"]["measures"]["shape_iou"]
    assert sum(iou) / len(iou) == pytest.approx(shape["other"], abs=1e-6)
    code, _, err = run_cli("study", "selectivity", "items", "--out", tmp_path / "x.json", f"a={ctrl}",
                           f"b={tmp_path / 'canon'}", *judges)
    assert code == 2 and "holds other items" in err and not (tmp_path / "x.json").exists()
    table = _run("study", "table", "clarid", str(tmp_path / "te0.3_k1.json"))
    assert table.startswith(f"`{ctrl.name}` against each other choice") and "| shape IoU |" in table


def test_bank_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clareps", "bank", "show", "--bank", str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no bank at" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "clareps", "bank", "show", "--bank", str(tmp_path),
                           "--mask-judge", str(tmp_path / "none.safetensors")], capture_output=True, text=True)
    assert proc.returncode == 2 and "--mask-judge" in proc.stderr and "Traceback" not in proc.stderr


def test_sweep_refuses_a_tap_the_forward_never_calls_before_any_bank(tiny_teacher, tiny_data_cache, tmp_path,
                                                                     run_cli):
    """`down.1` is a level whose blocks the U-Net calls one by one: its hook never fires."""
    preset = _preset(tmp_path, tiny_teacher, tiny_data_cache)
    code, _, err = run_cli("bank", "sweep", "-c", preset, "--t-e", "0.3", "--k", "1", "--w", "2", "--variants",
                           "plain", "--tap", "mid,down.1", "--per-class", "1", "--out", tmp_path / "sweep", "-q")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "tap 'down.1' did not fire" in err and "down.1.blocks.0" in err
    assert not any((tmp_path / "sweep").glob("*/bank.safetensors"))
