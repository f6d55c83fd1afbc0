"""A study of the demo pipeline that goes on over machines that keep only the repository.

The stages of ``clareps demo -c CONFIG --section SECTION``, one student at a time: ``prep`` builds the data,
the teacher, the banks (their shards over processes), their metrics and the held-out banks of the CKA probe;
each ``work`` process claims the next (method, seed) the archive lacks, trains, evaluates, probes and
archives it (``clareps.studies.archive``); ``assemble`` puts the archived students back into a run root and
writes the aggregate and the report. Each unit's bytes are the plain command's. Students are taken in the
order of the pre-registered primary comparisons (``first``): those methods of every seed, then the others.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from clareps.errors import ClarepsError
from clareps.studies.archive import Claims, StudyArchive, unit_order

PROBE_SEED = 1  # the held-out probe banks' seed: never trained on
FIRST = ("ce", "control", "cadistill")  # taken first when a spec names none: those the study has


@dataclass(frozen=True)
class StudySpec:
    """Which study (a demo config and its section, with overrides), its run root and its archive."""

    archive: Path
    config: str = "study-cadistill"
    section: str = "study"
    overrides: tuple[str, ...] = ()
    out: Path | None = None  # None: the config's `out`
    first: tuple[str, ...] | None = None  # None: FIRST
    probe_per_class: int = 20

    def args(self) -> list[str]:
        """The options of ``clareps study run`` that give this spec (for the processes a run starts)."""
        sets = [a for o in self.overrides for a in ("--set", o)]
        return ["-c", self.config, "--section", self.section, *sets, "--archive", str(self.archive),
                *(["--out", str(self.out)] if self.out is not None else []),
                *(["--first", ",".join(self.first)] if self.first is not None else []),
                "--probe-per-class", str(self.probe_per_class)]


def clareps(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clareps", *args], env=env)


def one_thread() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1")


class StudyRun:
    def __init__(self, spec: StudySpec, quiet: bool = True):
        from clareps.demo.pipeline import Pipeline
        from clareps.demo.spec import load_demo_config
        from clareps.paths import resolve_preset

        cfg = load_demo_config(resolve_preset(spec.config, "demo-default"), spec.section, list(spec.overrides))
        first = tuple(m for m in FIRST if m in cfg.methods) if spec.first is None else spec.first
        unknown = [m for m in first if m not in cfg.methods]
        if unknown:
            raise ClarepsError(f"--first names {', '.join(unknown)}, not methods of this study "
                               f"({', '.join(cfg.methods)})")
        self.spec, self.cfg = spec, cfg
        self.p = Pipeline(cfg, spec.out or Path(cfg.out), spec.section, quiet=quiet)
        self.root, self.archive = self.p.run.root, StudyArchive(spec.archive)
        self.claims = Claims(self.root / "claims")
        self.units = unit_order(cfg.methods, cfg.seeds, first)

    # -- prep ---------------------------------------------------------------------------------------
    def prep(self, parts: int = 2) -> None:
        """Data, teacher, the banks (shards over ``parts`` processes of one thread), their metrics, the
        held-out probe banks; this build's bank hashes into the archive."""
        p = self.p
        p.refuse_foreign_root()
        self.root.mkdir(parents=True, exist_ok=True)
        p.data_stage()
        p.teacher_stage()
        self.archive.sync_kd_teacher(p.run.kd_teacher)
        procs = [clareps("study", "run", *self.spec.args(), "--shard", f"{r}/{parts}", env=one_thread())
                 for r in range(parts)]
        if any(proc.wait() for proc in procs):
            raise ClarepsError("a shard process failed; rerun (finished shards are kept)")
        for kind in p.banks:  # merges the shards; each bank's metrics
            p.bank_stage(kind)
        self.probe_banks(serial=parts == 1)
        self.archive.record_banks({kind: p.run.bank(kind) for kind in p.banks},
                                  p.banks["canonical"].clarid.sampler_precision)

    def shard(self, part: str) -> None:
        """One process's share (``rank/world``) of every bank's items."""
        from clareps.bank.build import BankBuilder

        rank, world = (int(x) for x in part.split("/"))
        for kind, bank_cfg in self.p.banks.items():
            builder = BankBuilder(bank_cfg, self.p.run.bank(kind), quiet=rank != 0)
            if not builder.is_complete():
                builder.build(rank, world)

    def probe_banks(self, serial: bool = False) -> None:
        """The held-out banks of the CKA probe: the study's bank settings, another seed, fewer items per class."""
        import yaml

        folder = self.root / "probe-banks"
        folder.mkdir(exist_ok=True)
        config = folder / "config.yaml"
        config.write_text(yaml.safe_dump(json.loads((self.p.run.bank("canonical") / "bank.json").read_text())["config"]))
        procs = []
        for kind in ("canonical", "control"):  # side by side, or one after the other (serial: one thread)
            procs.append(clareps("bank", "build", "-c", str(config), "--out", str(folder / f"{kind}-s{PROBE_SEED}"),
                                 "--teacher", str(self.root / "teacher/teacher.safetensors"),
                                 *(["--control"] if kind == "control" else []), "--set", f"seed={PROBE_SEED}",
                                 "--set", f"per_class={self.spec.probe_per_class}", "--no-metrics", "-q",
                                 env=one_thread()))
            if serial:
                procs[-1].wait()
        if any(proc.wait() for proc in procs):
            raise ClarepsError("a probe bank failed; rerun")

    # -- work ---------------------------------------------------------------------------------------
    def kd_teacher_ready(self) -> bool:
        """The KD teacher exists; else this process trains it if no other is (False: another one is)."""
        from clareps.demo.reuse import kd_teacher_current
        from clareps.distill.methods import KDTeacherConfig

        p = self.p
        if kd_teacher_current(p.run.kd_teacher, KDTeacherConfig.from_distill(p.distill_config("ce", 0))):
            return True
        if not self.claims.take("kd-teacher"):
            return False
        try:
            p.kd_teacher_stage()
            self.archive.sync_kd_teacher(p.run.kd_teacher)
        finally:
            self.claims.release("kd-teacher")
        return True

    def work(self) -> str:
        """Claim, run and archive students until none is left to this process; says why it stopped."""
        while True:
            todo = [u for u in self.units if not self.archived(*u)]
            if not todo:
                return "every student is archived: `clareps study assemble` gives the table and report"
            unit = next(((m, s) for m, s in todo if (self.cfg.base_method(m) != "kd" or self.kd_teacher_ready())
                         and self.claims.take(f"{m}-s{s}")), None)
            if unit is None:
                return "the students left are claimed by other processes"
            try:
                self.run_unit(*unit)
            finally:
                self.claims.release(f"{unit[0]}-s{unit[1]}")

    def archived(self, label: str, seed: int) -> bool:
        return self.archive.archived(label, seed)

    def run_unit(self, label: str, seed: int) -> None:
        p, seconds = self.p, {}
        t0 = time.perf_counter()
        p.student_stage(label, seed)
        seconds["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        p.eval_stage(label, seed)
        seconds["evaluate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        banks = self.root / "probe-banks"
        if clareps("probe", "--student", str(p.run.student(label, seed)), "--bank",
                   f"canonical={banks}/canonical-s{PROBE_SEED}", "--bank", f"control={banks}/control-s{PROBE_SEED}").wait():
            raise ClarepsError(f"the CKA probe of {label}-s{seed} failed")
        seconds["probe"] = time.perf_counter() - t0
        self.archive.keep(p.run.student(label, seed), label, seed, {k: round(v, 1) for k, v in seconds.items()},
                          p.distill_config(label, seed).precision)

    # -- status, assemble ---------------------------------------------------------------------------
    def status(self) -> str:
        return self.archive.status(self.units, list(self.cfg.methods), list(self.cfg.seeds), self.claims.held())

    def assemble(self) -> Path:
        """The archived students into the run root, then the aggregate and the report (its path)."""
        from clareps.evaluate.suite import result_name
        from clareps.report.html import build_report

        missing = [f"{m}-s{s}" for m, s in self.units if not self.archived(m, s)]
        if missing:
            raise ClarepsError(f"not archived yet: {', '.join(missing)}")
        for m, s in self.units:
            folder = self.p.run.student(m, s)
            if not (folder / result_name(self.cfg.evaluate.mode)).exists():
                shutil.copytree(self.archive.unit(m, s), folder, dirs_exist_ok=True)
        self.p.aggregate_stage()
        return build_report(self.root)

    # -- the whole run ------------------------------------------------------------------------------
    def run(self, workers: int = 2, prep_parts: int = 2, prep: bool = True, nice: int = 19) -> int:
        """prep (unless ``prep`` is False), then ``workers`` work processes (one thread each, at ``nice``);
        their largest exit status."""
        if prep:
            self.prep(prep_parts)
        procs = [subprocess.Popen(["nice", "-n", str(nice), sys.executable, "-m", "clareps", "study", "run",
                                   *self.spec.args(), "--worker"], env=one_thread()) for _ in range(workers)]
        return max((proc.wait() for proc in procs), default=0)
