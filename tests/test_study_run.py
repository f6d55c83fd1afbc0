"""clareps study run | status | assemble (clareps.demo.study over clareps.studies.archive): the study's order
of students, claims between processes, the archive."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import pytest

from clareps.demo.study import StudyRun, StudySpec
from clareps.studies.archive import Claims, StudyArchive, unit_order, written_whole


def test_primary_comparisons_first_for_every_seed():
    methods = ["ce", "feat-real", "control", "kd", "cadistill", "cadistill-matched"]
    order = unit_order(methods, [0, 1], ("ce", "control", "cadistill"))
    assert order[:6] == [("ce", 0), ("control", 0), ("cadistill", 0), ("ce", 1), ("control", 1), ("cadistill", 1)]
    assert sorted(order) == sorted((x, s) for x in methods for s in (0, 1))


def test_a_claim_is_exclusive_until_its_process_is_gone(tmp_path):
    claims = Claims(tmp_path / "claims")
    assert claims.take("ce-s0")
    assert not claims.take("ce-s0")  # held by this (live) process
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    (claims.folder / "ce-s0" / "owner").write_text(f"{platform.node()} {dead}")
    assert claims.take("ce-s0")  # a dead owner's claim is taken over
    assert (claims.folder / "ce-s0" / "owner").read_text() == f"{platform.node()} {os.getpid()}"
    (claims.folder / "ce-s0" / "owner").write_text(f"another-host {dead}")
    assert not claims.take("ce-s0")  # another machine's claim: its process cannot be checked from here
    assert claims.held() == ["ce-s0"]
    claims.release("ce-s0")
    assert claims.take("ce-s0")


def test_archive_keeps_the_small_files_and_seed_0_maps(tmp_path):
    archive = StudyArchive(tmp_path / "archive")
    for seed in (0, 1):
        run = tmp_path / "run" / "students" / f"ce-s{seed}"
        run.mkdir(parents=True)
        for name in ("result.json", "metrics.jsonl", "config.yaml", "eval-standard.json", "probe.json"):
            (run / name).write_text("{}")
        for name in ("student.safetensors", "checkpoint.safetensors", "eval-standard-maps.safetensors"):
            (run / name).write_bytes(b"\0" * 8)
        archive.keep(run, "ce", seed, {"train": 1.0})
    kept = {p.name for p in (tmp_path / "archive" / "students" / "ce-s0").iterdir()}
    assert kept == {"result.json", "metrics.jsonl", "config.yaml", "eval-standard.json", "probe.json",
                    "eval-standard-maps.safetensors", "unit.json"}
    assert "eval-standard-maps.safetensors" not in {p.name for p in (tmp_path / "archive" / "students" / "ce-s1").iterdir()}
    unit = json.loads((tmp_path / "archive" / "students" / "ce-s1" / "unit.json").read_text())
    assert (unit["label"], unit["seed"], unit["seconds"]) == ("ce", 1, {"train": 1.0})
    assert archive.archived("ce", 1) and not archive.archived("ce", 2)
    assert not list((tmp_path / "archive" / "students").glob("*.tmp"))


def _tiny(tmp_path: Path, **kwargs) -> StudyRun:
    spec = StudySpec(tmp_path / "archive", "demo-tiny", "demo", ("seeds=[0]", "methods=[ce,cadistill]"),
                     tmp_path / "run", probe_per_class=2, **kwargs)
    return StudyRun(spec)


def test_prep_work_assemble_on_the_tiny_demo(tmp_path, monkeypatch, run_cli):
    """The whole route at toy size: banks over two shard processes, two units archived, a second `work`
    with nothing left, then the aggregate and report from the archive alone (the students' folders gone)."""
    m = _tiny(tmp_path)
    m.prep()
    assert len(list((tmp_path / "archive" / "banks").glob("*.json"))) == 1
    assert m.work().startswith("every student is archived")
    students = tmp_path / "archive" / "students"
    assert sorted(p.name for p in students.iterdir()) == ["cadistill-s0", "ce-s0"]
    for unit in students.iterdir():
        assert {"eval-fast.json", "probe.json", "result.json", "unit.json"} <= {p.name for p in unit.iterdir()}
        assert not list(unit.glob("student*.safetensors"))
    probe = json.loads((students / "cadistill-s0" / "probe.json").read_text())
    assert {k: (b["bank_kind"], b["held_out"], b["seed"]) for k, b in probe["banks"].items()} == {
        "canonical": ("canonical", True, 1), "control": ("control", True, 1)}
    stamp = (students / "ce-s0" / "unit.json").stat().st_mtime_ns
    common = ["-c", "demo-tiny", "--section", "demo", "--set", "seeds=[0]", "--set", "methods=[ce,cadistill]",
              "--archive", tmp_path / "archive", "--out", tmp_path / "run"]
    code, out, _ = run_cli("study", "status", *common)
    assert code == 0 and "archived 2 of 2 students" in out
    code, out, _ = run_cli("study", "run", *common, "--no-prep", "--workers", "1")  # a worker with nothing left
    assert code == 0 and "archived 2 of 2 students" in out
    assert (students / "ce-s0" / "unit.json").stat().st_mtime_ns == stamp
    shutil.rmtree(tmp_path / "run" / "students")
    code, out, _ = run_cli("study", "assemble", *common)
    assert code == 0 and "report:" in out
    table = (tmp_path / "run" / "results" / "results.md").read_text()
    assert "cadistill" in table and "ce" in table
    assert (tmp_path / "run" / "report.html").exists()


def test_status_counts_the_archive_and_what_is_left(tmp_path):
    m = StudyRun(StudySpec(tmp_path / "archive", out=tmp_path / "run"))  # the CaDistill study: 7 methods x 5 seeds
    for seed, seconds in ((0, {"train": 600.0, "evaluate": 1200.0}), (1, {"train": 300.0, "evaluate": 1500.0})):
        run = tmp_path / "run" / "students" / f"ce-s{seed}"
        run.mkdir(parents=True)
        m.archive.keep(run, "ce", seed, seconds)
    out = m.status()
    assert "archived 2 of 35 students" in out
    assert "ce                   seeds [0, 1]" in out
    assert "left: 33 students, ~16.5 worker-hours at the archived mean of 30 min per student" in out


def test_the_kd_teacher_is_archived_once_and_put_back_into_a_run_that_lacks_it(tmp_path):
    archive = StudyArchive(tmp_path / "archive")
    weights = tmp_path / "run" / "kd-teacher" / "kd_teacher.safetensors"
    archive.sync_kd_teacher(weights)  # nothing trained, nothing kept: nothing to do
    assert not (tmp_path / "archive" / "kd-teacher").exists()
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"trained")
    (weights.parent / "kd_teacher.json").write_text("{}")
    archive.sync_kd_teacher(weights)
    kept = tmp_path / "archive" / "kd-teacher"
    assert sorted(f.name for f in kept.iterdir()) == ["kd_teacher.json", "kd_teacher.safetensors"]
    weights.write_bytes(b"retrained elsewhere")
    archive.sync_kd_teacher(weights)  # the archive keeps the first one
    assert (kept / "kd_teacher.safetensors").read_bytes() == b"trained"
    shutil.rmtree(tmp_path / "run")  # a new session's machine
    (tmp_path / "run" / "kd-teacher").mkdir(parents=True)  # with a half-made folder, killed before its weights
    archive.sync_kd_teacher(weights)
    assert weights.read_bytes() == b"trained" and (weights.parent / "kd_teacher.json").exists()
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_a_folder_written_whole_keeps_the_old_one_when_the_writing_fails(tmp_path):
    dest = tmp_path / "archive" / "students" / "ce-s0"
    dest.mkdir(parents=True)
    (dest / "result.json").write_text("old")

    def fails(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "result.json").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        written_whole(dest, fails)
    assert (dest / "result.json").read_text() == "old"
    written_whole(dest, lambda tmp: (tmp.mkdir(), (tmp / "result.json").write_text("new")))
    assert (dest / "result.json").read_text() == "new" and not list(dest.parent.glob("*.tmp"))


def test_bad_study_options_are_refused_before_any_work(tmp_path, run_cli):
    code, _, err = run_cli("study", "run", "--archive", tmp_path / "archive", "--out", tmp_path / "run",
                           "--first", "ce,cadistil")
    assert code == 2 and "--first names cadistil, not methods of this study" in err
    code, _, err = run_cli("study", "status", "--out", tmp_path / "run")
    assert code == 2 and "--archive" in err
    code, _, err = run_cli("study", "assemble", "--archive", tmp_path / "archive", "--out", tmp_path / "run")
    assert code == 2 and err.startswith("error: not archived yet: ce-s0, control-s0, cadistill-s0")
    assert not (tmp_path / "run").exists() and not (tmp_path / "archive").exists()


def test_a_spec_gives_the_options_that_rebuild_it(tmp_path):
    """The processes a run starts (shards, workers, a detached run) read the study from these options."""
    from clareps.demo.study_cli import _spec

    spec = StudySpec(tmp_path / "a", "demo-tiny", "demo", ("seeds=[0]", "methods=[ce]"), tmp_path / "r", ("ce",), 3)
    args = dict(zip(spec.args()[::2], spec.args()[1::2]))
    sets = [v for k, v in zip(spec.args()[::2], spec.args()[1::2]) if k == "--set"]
    assert spec == _spec(Path(args["--archive"]), args["-c"], args["--section"], sets, Path(args["--out"]),
                         args["--first"], int(args["--probe-per-class"]))
