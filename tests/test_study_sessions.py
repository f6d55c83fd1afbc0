"""scripts/cadistill_sessions.py: the study's order of students, claims between processes, the archive."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest


def _module(tmp_path: Path, monkeypatch, load_script):
    """The script with its run root and archive in tmp_path (it reads the environment at import)."""
    monkeypatch.setenv("OUT", str(tmp_path / "run"))
    monkeypatch.setenv("ARCHIVE", str(tmp_path / "archive"))
    return load_script("cadistill_sessions")


def test_primary_comparisons_first_for_every_seed(tmp_path, monkeypatch, load_script):
    m = _module(tmp_path, monkeypatch, load_script)
    cfg = SimpleNamespace(methods=["ce", "feat-real", "control", "kd", "cadistill", "cadistill-matched"], seeds=[0, 1])
    order = m.units(cfg)
    assert order[:6] == [("ce", 0), ("control", 0), ("cadistill", 0), ("ce", 1), ("control", 1), ("cadistill", 1)]
    assert sorted(order) == sorted((x, s) for x in cfg.methods for s in cfg.seeds)


def test_a_claim_is_exclusive_until_its_process_is_gone(tmp_path, monkeypatch, load_script):
    m = _module(tmp_path, monkeypatch, load_script)
    assert m.claim("ce-s0")
    assert not m.claim("ce-s0")  # held by this (live) process
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    (m.CLAIMS / "ce-s0" / "owner").write_text(f"{platform.node()} {dead}")
    assert m.claim("ce-s0")  # a dead owner's claim is taken over
    assert (m.CLAIMS / "ce-s0" / "owner").read_text() == f"{platform.node()} {os.getpid()}"
    (m.CLAIMS / "ce-s0" / "owner").write_text(f"another-host {dead}")
    assert not m.claim("ce-s0")  # another machine's claim: its process cannot be checked from here
    m.release("ce-s0")
    assert m.claim("ce-s0")


def test_archive_keeps_the_small_files_and_seed_0_maps(tmp_path, monkeypatch, load_script):
    m = _module(tmp_path, monkeypatch, load_script)
    for seed in (0, 1):
        run = tmp_path / "run" / "students" / f"ce-s{seed}"
        run.mkdir(parents=True)
        for name in ("result.json", "metrics.jsonl", "config.yaml", "eval-standard.json", "probe.json"):
            (run / name).write_text("{}")
        for name in ("student.safetensors", "checkpoint.safetensors", "eval-standard-maps.safetensors"):
            (run / name).write_bytes(b"\0" * 8)
        m.archive(run, "ce", seed, {"train": 1.0})
    kept = {p.name for p in (tmp_path / "archive" / "students" / "ce-s0").iterdir()}
    assert kept == {"result.json", "metrics.jsonl", "config.yaml", "eval-standard.json", "probe.json",
                    "eval-standard-maps.safetensors", "unit.json"}
    assert "eval-standard-maps.safetensors" not in {p.name for p in (tmp_path / "archive" / "students" / "ce-s1").iterdir()}
    unit = json.loads((tmp_path / "archive" / "students" / "ce-s1" / "unit.json").read_text())
    assert (unit["label"], unit["seed"], unit["seconds"]) == ("ce", 1, {"train": 1.0})
    assert m.archived("ce", 1) and not m.archived("ce", 2)
    assert not list((tmp_path / "archive" / "students").glob("*.tmp"))


def test_prep_work_assemble_on_the_tiny_demo(tmp_path, monkeypatch, capsys, load_script):
    """The whole route at toy size: banks over two shard processes, two units archived, a second `work`
    with nothing left, then the aggregate and report from the archive alone (the students' folders gone)."""
    for key, value in {"STUDY_CONFIG": "demo-tiny", "STUDY_SECTION": "demo", "PROBE_PER_CLASS": "2",
                       "STUDY_SET": "seeds=[0] methods=[ce,cadistill]"}.items():
        monkeypatch.setenv(key, value)
    m = _module(tmp_path, monkeypatch, load_script)
    m.prep()
    assert len(list((tmp_path / "archive" / "banks").glob("*.json"))) == 1
    m.work()
    students = tmp_path / "archive" / "students"
    assert sorted(p.name for p in students.iterdir()) == ["cadistill-s0", "ce-s0"]
    for unit in students.iterdir():
        assert {"eval-fast.json", "probe.json", "result.json", "unit.json"} <= {p.name for p in unit.iterdir()}
        assert not list(unit.glob("student*.safetensors"))
    probe = json.loads((students / "cadistill-s0" / "probe.json").read_text())
    assert {k: (b["bank_kind"], b["held_out"], b["seed"]) for k, b in probe["banks"].items()} == {
        "canonical": ("canonical", True, 1), "control": ("control", True, 1)}
    stamp = (students / "ce-s0" / "unit.json").stat().st_mtime_ns
    capsys.readouterr()
    m.status()
    assert "archived 2 of 2 students" in capsys.readouterr().out
    m.work()
    assert "every student is archived" in capsys.readouterr().out
    assert (students / "ce-s0" / "unit.json").stat().st_mtime_ns == stamp
    shutil.rmtree(tmp_path / "run" / "students")
    m.assemble()
    table = (tmp_path / "run" / "results" / "results.md").read_text()
    assert "cadistill" in table and "ce" in table
    assert (tmp_path / "run" / "report.html").exists()


def test_status_counts_the_archive_and_what_is_left(tmp_path, monkeypatch, capsys, load_script):
    m = _module(tmp_path, monkeypatch, load_script)
    for seed, seconds in ((0, {"train": 600.0, "evaluate": 1200.0}), (1, {"train": 300.0, "evaluate": 1500.0})):
        run = tmp_path / "run" / "students" / f"ce-s{seed}"
        run.mkdir(parents=True)
        m.archive(run, "ce", seed, seconds)
    m.status()  # the study's own config: 7 methods x 5 seeds
    out = capsys.readouterr().out
    assert "archived 2 of 35 students" in out
    assert "ce                   seeds [0, 1]" in out
    assert "left: 33 students, ~16.5 worker-hours at the archived mean of 30 min per student" in out


def test_the_kd_teacher_is_archived_once_and_put_back_into_a_run_that_lacks_it(tmp_path, monkeypatch, load_script):
    m = _module(tmp_path, monkeypatch, load_script)
    weights = tmp_path / "run" / "kd-teacher" / "kd_teacher.safetensors"
    p = SimpleNamespace(run=SimpleNamespace(kd_teacher=weights))
    m.kd_teacher_archived(p)  # nothing trained, nothing kept: nothing to do
    assert not (tmp_path / "archive" / "kd-teacher").exists()
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"trained")
    (weights.parent / "kd_teacher.json").write_text("{}")
    m.kd_teacher_archived(p)
    kept = tmp_path / "archive" / "kd-teacher"
    assert sorted(f.name for f in kept.iterdir()) == ["kd_teacher.json", "kd_teacher.safetensors"]
    weights.write_bytes(b"retrained elsewhere")
    m.kd_teacher_archived(p)  # the archive keeps the first one
    assert (kept / "kd_teacher.safetensors").read_bytes() == b"trained"
    shutil.rmtree(tmp_path / "run")  # a new session's machine
    (tmp_path / "run" / "kd-teacher").mkdir(parents=True)  # with a half-made folder, killed before its weights
    m.kd_teacher_archived(p)
    assert weights.read_bytes() == b"trained" and (weights.parent / "kd_teacher.json").exists()
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_a_folder_written_whole_keeps_the_old_one_when_the_writing_fails(tmp_path, monkeypatch, load_script):
    m = _module(tmp_path, monkeypatch, load_script)
    dest = tmp_path / "archive" / "students" / "ce-s0"
    dest.mkdir(parents=True)
    (dest / "result.json").write_text("old")

    def fails(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "result.json").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        m.written_whole(dest, fails)
    assert (dest / "result.json").read_text() == "old"
    m.written_whole(dest, lambda tmp: (tmp.mkdir(), (tmp / "result.json").write_text("new")))
    assert (dest / "result.json").read_text() == "new" and not list(dest.parent.glob("*.tmp"))
