"""The own-data guide's npz walk, run as written (at toy size) on npz files with masks, and the
advice of evaluate's npz error, run as written (issue 18, item 7)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from clareps.data.benchmark import BenchmarkConfig, read_split_arrays, build_benchmark

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "own-data.md"
FILES = {"train.npz": "train", "test.npz": "test-original", "mixed-same.npz": "test-mixed-same",
         "mixed-rand.npz": "test-mixed-rand", "only-fg.npz": "test-only-fg"}
# toy sizes appended to each command (the guide's commands are for real data)
TINY = {
    "train-teacher": ["--set", "model={base_channels: 8, channel_mult: [1, 2], groups: 4, attn_resolutions: [16]}",
                      "--set", "steps=2", "--set", "batch_size=16", "--set", "warmup=1", "--set", "precision=fp32",
                      "--set", "ckpt_every=2", "-q"],
    "bank": ["--set", "per_class=1", "--set", "shard_size=10", "-q",
             "--set", "clarid={k: 1, steps: 4, max_iter: 2, t_e: 0.3, sampler_precision: fp32}"],
    "distill": ["--set", "epochs=1", "--set", "student.width=4", "--set", "batch_size=20", "--set", "bank_batch_size=5",
                "--set", "loss.proj_hidden=8", "--set", "precision=fp32", "-q"],
    "evaluate": ["--set", "components=[clean]", "--device", "cpu", "-q"],
}


def readme_commands() -> list[list[str]]:
    section = GUIDE.read_text().split("## npz files", 1)[1].split("\n## ", 1)[0]
    block = re.sub(r"\\\n\s*", "", section)  # join continued lines
    return [shlex.split(line.strip())[1:] for line in block.splitlines() if line.startswith("    clareps ")]


@pytest.fixture(scope="module")
def own_files(tmp_path_factory, tiny_data_cache) -> Path:
    """The tiny benchmark's splits saved as a user's own npz files, with masks."""
    folder = tmp_path_factory.mktemp("own")
    bench = build_benchmark(BenchmarkConfig(n_train=200, n_test=50), tiny_data_cache, progress=False)
    for name, split in FILES.items():
        arrays, _ = read_split_arrays(bench, split)
        np.savez(folder / name, images=arrays["images"], labels=arrays["labels"], masks=arrays["masks"])
    return folder


def localised(args: list[str], root: Path) -> list[str]:
    out = []
    for arg in args:
        for name in FILES:
            arg = re.sub(rf"(?<![\w.-]){re.escape(name)}", str(root / name), arg)
        out.append(arg.replace("runs/", f"{root}/runs/"))
    return out


def test_the_readme_walk_runs_as_written(own_files, run_cli):
    commands = readme_commands()
    assert [c[0] for c in commands] == ["train-teacher", "bank", "distill", "evaluate"]
    for args in commands:
        code, out, err = run_cli(*localised(args, own_files), *TINY[args[0]])
        assert code == 0, (args, err)
    student = own_files / "runs" / "my-student"
    final = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["final"] and 0 <= final["test_acc/test"] <= 1
    results = json.loads((student / "eval-fast.json").read_text())
    assert set(results["clean"]["variants"]) == {"test", "test-mixed-same", "test-mixed-rand", "test-only-fg"}
    assert "bg_gap" in results["clean"] and results["summary"]["bg/gap"] == results["clean"]["bg_gap"]


def test_evaluates_npz_advice_works_as_written(own_files, tmp_path, run_cli):
    from clareps.config import build_config
    from clareps.distill.config import DistillConfig
    from clareps.distill.trainer import DistillTrainer

    student = tmp_path / "ce-s0"
    cfg = build_config(DistillConfig, {"method": "ce", "data": {"kind": "npz", "path": str(own_files / "train.npz")},
                                       "test_splits": [], "student": {"width": 4}, "epochs": 1, "batch_size": 20,
                                       "precision": "fp32", "device": "cpu"})
    DistillTrainer(cfg, student, quiet=True).train()
    out = tmp_path / "advice.json"
    code, _, err = run_cli("evaluate", "--student", student, "--out", out, *TINY["evaluate"])
    assert code == 2 and "--set data.kind=npz --set data.path=TEST.npz" in err
    advice = re.search(r"with (--set \S+ --set \S+)", err).group(1).replace("TEST.npz", str(own_files / "test.npz"))
    code, _, err = run_cli("evaluate", "--student", student, "--out", out, *advice.split(), *TINY["evaluate"])
    assert code == 0, err
    assert json.loads(out.read_text())["clean"]["variants"]["test"]["n"] == 50
