"""teacher-check end to end on a tiny teacher and judge, on CPU and (where present) CUDA."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]


@pytest.mark.parametrize("device", DEVICES)
def test_teacher_check_writes_metrics_card_and_samples(tiny_teacher, tiny_judge, run_cli, tmp_path, device):
    folder = tmp_path / "teacher"
    shutil.copytree(Path(tiny_teacher).parent, folder)  # the check writes beside the teacher
    code, out, err = run_cli("teacher-check", "--teacher", folder / "teacher.safetensors", "--judge", tiny_judge,
                             "--per-class", 2, "--steps", 3, "--device", device, "-q")
    assert code == 0, err
    check = json.loads((folder / "teacher_check.json").read_text())
    per_class = check["class_consistency_per_class"]
    assert len(per_class) == 10 and all(0 <= v <= 1 for v in per_class)
    assert check["class_consistency"] == pytest.approx(sum(per_class) / 10)  # balanced: 2 samples per class
    assert math.isfinite(check["fid_judge_features"]) and check["fid_judge_features"] >= 0
    assert 0 < check["recon_rmse"] < 1 and check["teacher_step"] == 3
    assert check["settings"]["per_class"] == 2 and device in check["hardware"]
    assert "Checked at step 3" in (folder / "MODEL_CARD.md").read_text() and (folder / "samples.png").exists()
