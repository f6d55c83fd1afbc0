"""docs/guides/cifar10.md, run as written at toy size on a CIFAR-10-format fixture.

The commands come from the guide's ```bash / ```console blocks, so the guide and this test cannot
drift. What the test changes, and nothing else:

- the data: a CIFAR-10-format folder (pickled python batches ``data_batch_1..5``, ``test_batch``,
  ``batches.meta``; 60 training and 30 test images of 32x32, 10 classes) written at the guide's
  ``data/cifar-10-batches-py`` inside a fresh working folder, where ``configs`` links to the
  shipped presets and ``models/cifar10-unet2d`` holds a tiny random diffusers ``UNet2DModel``; the
  guide's data set-up lines (``mkdir``, ``tar``) are not run;
- each ``clareps`` line gets the toy overrides of its verb appended (``TOY``): a 2-step teacher,
  banks of 2 items per class, width-4 students for 1 epoch;
- ``--mode full`` becomes ``--mode fast`` (with tiny budgets) in ``evaluate`` and ``aggregate``;
- a ``for seed in ...`` loop runs its first two seeds (two seeds already give paired intervals);
- ``report`` draws the feature embedding with PCA (``--embedding pca``) instead of UMAP.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shlex
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "guides" / "cifar10.md"
METHODS = ("ce", "kd", "feat-real", "control", "cadistill")
SEEDS_RUN = 2
SETUP = ("mkdir", "tar")  # the data set-up lines: the fixture writes the data instead

DISTILL = ["--set", "epochs=1", "--set", "student.width=4", "--set", "batch_size=20", "--set", "bank_batch_size=5",
           "--set", "loss.proj_hidden=8", "--set", "precision=fp32", "--set", "kd.teacher_width=4",
           "--set", "kd.teacher_epochs=1", "-q"]
TOY = {
    "train-teacher": ["--set", "model.base_channels=8", "--set", "model.channel_mult=[1, 2]", "--set",
                      "model.num_res_blocks=1", "--set", "model.groups=4", "--set", "model.attn_resolutions=[16]",
                      "--set", "steps=2", "--set", "batch_size=16", "--set", "warmup=1", "--set", "precision=fp32",
                      "--set", "ckpt_every=2", "-q"],
    "bank build": ["--set", "per_class=2", "--set", "shard_size=10", "--set", "clarid.k=1", "--set", "clarid.steps=4",
                   "--set", "clarid.max_iter=2", "--set", "clarid.t_e=0.3", "--set", "clarid.sampler_precision=fp32",
                   "-q"],
    "bank show": ["--per-class", "2"],
    "train-kd-teacher": DISTILL,
    "distill": DISTILL,
    "evaluate": ["--device", "cpu", "-q", "--set", "robustness.budgets_255=[8]", "--set", "robustness.n_images=10",
                 "--set", "robustness.slow_n_images=10", "--set", "robustness.pgd_steps=2", "--set",
                 "robustness.cw_steps=2", "--set", "robustness.apgd_steps=2", "--set", "robustness.aa_steps=2",
                 "--set", "robustness.aa_square_queries=5", "--set", "corruptions.types=[gaussian_noise,contrast]",
                 "--set", "corruptions.severities=[1,3]", "--set", "corruptions.n_images=10",
                 "--set", "saliency.n_images=10"],
    "aggregate": [],
    "report": ["--embedding", "pca"],  # UMAP's first call compiles for seconds; 20 points need no more than PCA
}


# -- the guide as a program -------------------------------------------------------------------------
def guide_lines() -> list[str]:
    """The shell lines of the guide's bash and console blocks, continuations joined, comments dropped."""
    lines = []
    for kind, body in re.findall(r"```(bash|console)\n(.*?)```", GUIDE.read_text(), re.S):
        for line in re.sub(r"\\\n\s*", "", body).splitlines():
            line = line.strip()
            if kind == "console":
                if not line.startswith("$ "):
                    continue  # printed output
                line = line[2:]
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def program(lines: list[str]) -> list[tuple[str | None, list[str], list[str]]]:
    """(loop variable or None, its values as written, body lines): one-level ``for ... do ... done``."""
    steps, i = [], 0
    while i < len(lines):
        loop = re.fullmatch(r"for (\w+) in (.+); do", lines[i])
        if loop:
            end = lines.index("done", i)
            steps.append((loop.group(1), loop.group(2).split(), lines[i + 1:end]))
            i = end + 1
        else:
            steps.append((None, [], [lines[i]]))
            i += 1
    return steps


def verb(args: list[str]) -> str:
    return " ".join(args[:2]) if args[0] == "bank" else args[0]


def toy(args: list[str]) -> list[str]:
    """The guide's arguments at toy size (the substitutions of the module docstring)."""
    args = ["fast" if a == "full" and i and args[i - 1] == "--mode" else a for i, a in enumerate(args)]
    return args + TOY[verb(args)]


# -- the fixture ------------------------------------------------------------------------------------
def write_cifar10(folder: Path, per_batch: int = 12, n_test: int = 30) -> None:
    """CIFAR-10's python batches: dicts of uint8 (N, 3072) rows (1024 red, green, blue values) and labels,
    pickled as the official files are (bytes keys, protocol 2); each class tints one channel."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n: int, offset: int) -> dict:
        labels = (np.arange(n) + offset) % 10
        x = rng.integers(0, 120, (n, 3, 32, 32), dtype=np.uint8)
        x[np.arange(n), labels % 3] += (60 + 12 * (labels // 3)).astype(np.uint8)[:, None, None]
        return {b"batch_label": b"batch", b"data": x.reshape(n, 3072), b"labels": [int(v) for v in labels],
                b"filenames": [f"img{i}.png".encode() for i in range(n)]}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch, i), protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test, 0), protocol=2))
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                  "truck")]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))


def write_unet2d(folder: Path) -> None:
    """A tiny random class-conditional UNet2DModel (10 classes and the null class) at 32x32."""
    import torch

    torch.manual_seed(0)
    diffusers.UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=11, attention_head_dim=8).save_pretrained(folder)


diffusers = pytest.importorskip("diffusers")


def clareps(root: Path, args: list[str]) -> tuple[int, str, str]:
    """``clareps ARGS`` in-process, in ``root``; (exit code, stdout, stderr)."""
    from clareps.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(err):
        mp.chdir(root)
        mp.setenv("CLAREPS_CACHE", str(root / "cache"))
        mp.setattr(sys, "argv", ["clareps", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """The guide run in order in a fresh working folder; (root, [(guide args, code, stdout, stderr)])."""
    root = tmp_path_factory.mktemp("cifar10-guide")
    write_cifar10(root / "data" / "cifar-10-batches-py")
    (root / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    write_unet2d(root / "models" / "cifar10-unet2d")
    done = []

    def globbed(words: list[str]) -> list[str]:  # as the shell expands a pattern
        return [w for word in words for w in (sorted(os.path.relpath(p, root) for p in root.glob(word))
                                              if "*" in word else [word])]

    for var, values, body in program(guide_lines()):
        expanded = globbed(values)
        for value in (expanded[:SEEDS_RUN] if var == "seed" else expanded) if var else [None]:
            for line in body:
                if var:
                    line = re.sub(rf"\$\{{?{var}\}}?", value, line)
                argv = globbed(shlex.split(line))
                if argv[0] in SETUP:
                    continue
                assert argv[0] == "clareps", f"the guide runs something other than clareps: {line}"
                code, out, err = clareps(root, toy(argv[1:]))
                assert code == 0, f"{line}\n{err}"
                done.append((argv[1:], code, out, err))
    return root, done


# -- the tests --------------------------------------------------------------------------------------
def test_the_guide_runs_in_order(walk):
    root, done = walk
    seq = [verb(args) for args, *_ in done]
    assert seq == (["train-teacher"] + ["bank build"] * 6 + ["bank show", "train-kd-teacher"]
                   + ["distill"] * 5 * SEEDS_RUN + ["evaluate"] * 5 * SEEDS_RUN + ["aggregate", "report"])
    raw = [shlex.split(line) for line in guide_lines() if line.startswith("clareps ")]
    assert all("--mode" in a for a in raw if a[1] in ("evaluate", "aggregate")), "evaluate/aggregate state the mode"
    assert all("--out" in a for a in raw if a[1] in ("distill", "train-teacher", "train-kd-teacher", "bank")
               and a[2] != "show")
    distilled = {(a[a.index("--method") + 1], a[a.index("--seed") + 1]) for a, *_ in done if a[0] == "distill"}
    assert distilled == {(m, str(s)) for m in METHODS for s in range(SEEDS_RUN)}


def test_each_stage_wrote_what_the_guide_says(walk):
    root, _ = walk
    run = root / "runs" / "cifar10"
    named = set(re.findall(r"`(runs/[^`\s]+)`", GUIDE.read_text()))
    assert {"runs/cifar10/teacher/teacher.safetensors", "runs/cifar10/results/results.md",
            "runs/cifar10/report.html"} <= named
    for path in named:
        assert (root / path).exists(), path
    kinds = {}
    for base in ("cifar10", "cifar10-diffusers"):
        for kind in ("canonical", "control", "feat-real"):
            meta = json.loads((root / "runs" / base / "banks" / kind / "bank.json").read_text())
            kinds[base, kind] = (meta["bank_kind"], meta["k"], meta["source"])
            assert meta["teacher"].startswith("diffusers:") == (base == "cifar10-diffusers")
    for base in ("cifar10", "cifar10-diffusers"):
        assert kinds[base, "canonical"] == ("canonical", 1, "random")
        assert kinds[base, "control"] == ("control", 0, "random")
        assert kinds[base, "feat-real"] == ("feat-real", 0, "matched")
    assert (run / "banks" / "canonical" / "comparison.png").is_file()
    assert (run / "banks" / "canonical" / "spectra.png").is_file()
    assert (run / "kd-teacher" / "kd_teacher.safetensors").is_file()
    for m in METHODS:
        for s in range(SEEDS_RUN):
            student = run / "students" / f"{m}-s{s}"
            for name in ("student.safetensors", "config.yaml", "metrics.jsonl", "result.json", "eval-fast.json"):
                assert (student / name).is_file(), student / name
            final = [json.loads(r) for r in (student / "metrics.jsonl").read_text().splitlines()][-1]
            assert final["final"] and 0 <= final["test_acc/test"] <= 1


def test_what_is_skipped_without_masks_is_stated(walk):
    root, done = walk
    run = root / "runs" / "cifar10"
    for m in METHODS:
        results = json.loads((run / "students" / f"{m}-s0" / "eval-fast.json").read_text())
        assert results["mode"] == "fast" and results["data"]["matches_student"] is True
        assert set(results["skipped"]) == {"background", "saliency"}
        assert "foreground masks" in results["skipped"]["saliency"]
        assert "test-mixed-same" in results["skipped"]["background"]
        assert set(results["clean"]["variants"]) == {"test"} and "bg_gap" not in results["clean"]
        assert not any(k.startswith(("bg/", "saliency/")) for k in results["summary"])
        assert {"clean/test", "corr/mean", "robust/worst@8/255"} <= set(results["summary"])
    said = [out for args, _, out, _ in done if args[0] == "evaluate"]
    assert all("skipped: background tests:" in out and "skipped: saliency:" in out for out in said)
    assert not any("other data" in out for out in said)
    md = (run / "results" / "results.md").read_text()
    assert "Not measured: background tests" in md and "Not measured: saliency" in md
    html = (run / "report.html").read_text()
    assert 'class="error"' not in html
    assert "no foreground masks" in html and "no test variants with the background changed" in html


def test_aggregate_gives_paired_intervals(walk):
    root, done = walk
    agg = json.loads((root / "runs" / "cifar10" / "results" / "results.json").read_text())
    assert agg["methods"] == ["ce", "feat-real", "control", "kd", "cadistill"]
    assert agg["eval"]["mode"] == "fast" and set(agg["skipped"]) == {"background", "saliency"}
    for baseline in ("ce", "control"):
        d = agg["paired"][f"cadistill-vs-{baseline}"]["clean/test"]
        assert d["n"] == SEEDS_RUN and d["low"] is not None and d["low"] <= d["mean"] <= d["high"]
    printed = next(out for args, _, out, _ in done if args[0] == "aggregate")
    assert "cadistill − ce, 95 % CI" in printed and "cadistill − control, 95 % CI" in printed
    html = (root / "runs" / "cifar10" / "report.html").read_text()
    assert all(f">{m}<" in html for m in agg["methods"])


def test_outputs_holding_other_files_are_refused(walk):
    root, _ = walk
    run = Path("runs") / "cifar10"
    bank = root / run / "banks" / "control"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in bank.iterdir())
    code, _, err = clareps(root, ["distill", "-c", "configs/cifar10-distill.yaml", "--method", "ce", "--out",
                                  str(run / "banks" / "control"), *DISTILL])
    assert code == 2 and "holds other files" in err and "not a distill run" in err
    code, _, err = clareps(root, ["train-kd-teacher", "-c", "configs/cifar10-distill.yaml", "--out",
                                  str(run / "students" / "ce-s0"), *DISTILL])
    assert code == 2 and "not a KD teacher" in err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in bank.iterdir()) == before
    # the guide's own line again: its folder holds that run, so it is reused, not refused
    code, out, _ = clareps(root, ["distill", "-c", "configs/cifar10-distill.yaml", "--method", "ce", "--seed", "0",
                                  "--out", str(run / "students" / "ce-s0"), *DISTILL])
    assert code == 0 and "reused" in out
