"""clareps study table clarid | selectivity and clareps study selectivity choose | teacher: the bank studies'
tables and steps, on small hand-made files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from clareps.studies.clarid_table import choice
from clareps.studies.selectivity import choose_settings
from clareps.studies.selectivity_table import selectivity_tables


def test_a_bank_is_named_by_what_it_changed():
    ref = "te0.5_k4_w3_plain_tap-mid"
    assert choice(ref, ref) == "jacobian"
    assert choice("te0.5_k0_w3_plain_tap-mid", ref) == "control (k = 0)"
    assert choice("te0.5_k4_w3_plain_low-frequency_tap-mid", ref) == "low-frequency"
    assert choice("te0.5_k4_w3_plain_null_tap-mid", ref) == "jacobian, null-class features"
    assert choice("te0.5_k4_w3_plain_random_tap-up.0.blocks.1", ref) == "random, tap up.0.blocks.1"


def test_the_clarid_table_reads_a_bank_compare_file(tmp_path, run_cli):
    rows = [{"bank": "te0.5_k0_w3_plain_tap-mid", "measure": "shape_iou", "reference": 0.9, "other": 0.95,
             "difference": 0.05, "low": 0.01, "high": 0.09},
            {"bank": "te0.5_k0_w3_plain_tap-mid", "measure": "ami_features", "reference": 0.5, "other": 0.4,
             "difference": -0.1, "low": None, "high": None}]
    path = tmp_path / "te0.5_k4.json"
    path.write_text(json.dumps({"reference": "runs/x/te0.5_k4_w3_plain_tap-mid", "rows": rows}))
    code, out, _ = run_cli("study", "table", "clarid", path)
    assert code == 0
    assert "| measure | jacobian | control (k = 0) |" in out
    assert "| shape IoU | 0.900 | 0.950 (+0.050 [+0.010, +0.090]) |" in out and "| AMI (features) | 0.500 | 0.400 |" in out


def _metrics(folder: Path, cc: float, iou: float, kept: float) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"class_consistency": cc, "shape_iou": iou, "bg_source_kept": kept}))


def test_a_family_setting_qualifies_or_wins_on_its_advantage(tmp_path, run_cli):
    val = tmp_path / "val"
    _metrics(val / "references" / "te0.5_k0_w3_plain_tap-mid", 0.90, 0.95, 0.80)
    _metrics(val / "references" / "te0.5_k16_w3_plain_low-frequency_tap-mid", 0.85, 0.80, 0.60)
    _metrics(val / "references" / "te0.5_k16_w3_plain_tap-mid", 0.85, 0.82, 0.50)
    _metrics(val / "class-contrastive_contrast_eps-3", 0.89, 0.90, 0.40)  # qualifies
    _metrics(val / "class-contrastive_contrast_eps-10", 0.88, 0.86, 0.30)  # qualifies, less kept: chosen
    _metrics(val / "class-contrastive_contrast_eps-30", 0.70, 0.70, 0.10)  # class lost
    _metrics(val / "mask-oracle_mask_threshold-0", 0.80, 0.84, 0.50)  # none qualifies: advantage 0.10 + 0.04
    _metrics(val / "mask-oracle_mask_threshold-0.5", 0.80, 0.70, 0.40)  # advantage 0.20 - 0.10
    chosen = choose_settings(val)["chosen"]
    assert chosen["class-contrastive"] == {"setting": "contrast_eps", "value": "10", "by": "qualifies, least background kept"}
    assert chosen["mask-oracle"]["value"] == "0" and chosen["mask-oracle"]["by"].startswith("largest advantage")
    code, out, _ = run_cli("study", "selectivity", "choose", val, "--out", tmp_path / "chosen.json")
    assert code == 0 and "class-contrastive: contrast_eps=10" in out
    assert json.loads((tmp_path / "chosen.json").read_text())["chosen"] == chosen
    code, _, err = run_cli("study", "selectivity", "choose", tmp_path, "--out", tmp_path / "c.json")
    assert code == 2 and "no reference bank metrics" in err and not (tmp_path / "c.json").exists()


def test_the_selectivity_tables_read_the_archive(tmp_path):
    n, rng = 12, torch.Generator().manual_seed(0)
    for step, quality in ((6000, 0.5), (48800, 0.9)):
        dest = tmp_path / "teachers" / f"step{step}"
        dest.mkdir(parents=True)
        banks = {b: {"measures": {m: torch.rand(n, generator=rng).tolist() for m in
                                  ("class_correct", "shape_iou", "bg_source_kept", "bg_minus_fg_change",
                                   "tint_shift", "texture_change")}} for b in ("jacobian", "low-frequency", "control")}
        (dest / "items.json").write_text(json.dumps({"source_index": list(range(n)), "banks": banks}))
        (dest / "teacher_check.json").write_text(json.dumps({"class_consistency": quality}))
    text = selectivity_tables(tmp_path, tmp_path / "plot.png")
    assert "| measure | step 6000 (0.500) | step 48800 (0.900) | slope per 0.1 |" in text
    assert (tmp_path / "plot.png").stat().st_size > 0
    with pytest.raises(Exception, match="nothing archived"):
        selectivity_tables(tmp_path / "teachers")


def test_a_history_teacher_gets_its_metadata_inside(tmp_path, run_cli):
    from clareps.io import read_meta

    raw = tmp_path / "raw.safetensors"
    save_file({"w": torch.ones(2)}, str(raw))
    (tmp_path / "raw.json").write_text(json.dumps({"kind": "teacher", "step": 6000, "tensors_sha256": "old"}))
    code, out, _ = run_cli("study", "selectivity", "teacher", raw, tmp_path / "raw.json", "--out", tmp_path / "t.safetensors")
    assert code == 0
    meta = read_meta(tmp_path / "t.safetensors")
    assert (meta["kind"], meta["step"]) == ("teacher", 6000) and meta.get("tensors_sha256") != "old"
