"""The CaDistill study over sessions that do not keep their files (issue 17 §3).

A session's machine, and with it RUN (runs/studies/cadistill), can be gone by the next session; only
git survives. So every finished student is archived into the repository as soon as it is evaluated
(its results, metrics, CKA probe and config, not its weights; the one set of weights kept is the KD
teacher's, which every kd student reads), and a new session rebuilds the banks (deterministic; ~20 min on
two cores) and goes on with the students the archive lacks:

  python scripts/cadistill_sessions.py start       # prep, then two `work` processes, in the background
  python scripts/cadistill_sessions.py prep [N]    # data, teacher, the four banks (shards over N=2 processes),
                                                   # their metrics, the held-out probe banks
  python scripts/cadistill_sessions.py work &      # start two: each claims the next student not archived,
  python scripts/cadistill_sessions.py work &      # trains, evaluates, probes and archives it; repeat
  python scripts/cadistill_sessions.py status      # what the archive holds, what is claimed
  python scripts/cadistill_sessions.py assemble    # once all are archived: RUN/students from the archive,
                                                   # the aggregate and the report (RUN/results, RUN/report.html)

Run it from a checkout of the study's commit (the library it imports is the one on PYTHONPATH); the archive
goes to ARCHIVE (default docs/studies/data/cadistill beside this script). Students are taken in order of the
pre-registered primary comparisons: ce, control and cadistill of every seed first, then the other methods.
Each unit is one (method, seed) through the stages of `clareps demo -c study-cadistill --section study`, so
its bytes are the plain command's; unit.json records its seconds, the commit and the CPU.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from clareps.io import write_json

RUN = Path(os.environ.get("OUT", "runs/studies/cadistill"))
ARCHIVE = Path(os.environ.get("ARCHIVE", Path(__file__).resolve().parents[1] / "docs/studies/data/cadistill"))
CONFIG, SECTION = os.environ.get("STUDY_CONFIG", "study-cadistill"), os.environ.get("STUDY_SECTION", "study")
OVERRIDES = os.environ.get("STUDY_SET", "").split()  # e.g. "seeds=[0]": as `clareps demo --set`
PRIMARY = tuple(os.environ.get("STUDY_FIRST", "ce control cadistill").split())  # the units taken first
PROBE_SEED, PROBE_PER_CLASS = 1, int(os.environ.get("PROBE_PER_CLASS", "20"))  # as scripts/cadistill_probe.sh
CLAIMS = RUN / "claims"


def pipeline(quiet: bool = True):
    from clareps.demo.pipeline import Pipeline
    from clareps.demo.spec import load_demo_config
    from clareps.paths import resolve_preset

    cfg = load_demo_config(resolve_preset(CONFIG, "demo-default"), SECTION, OVERRIDES)
    return Pipeline(cfg, RUN, SECTION, quiet=quiet)


def clareps(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "clareps", *args], check=True)


def machine(precision: str | None = None) -> dict:
    """The machine as every timing records it (clareps.device.hardware), with its host name."""
    import torch

    from clareps.device import hardware

    return dict(hardware(torch.device("cpu"), precision), host=platform.node())


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


# -- prep ---------------------------------------------------------------------------------------------
def prep(parts: int | str = 2) -> None:
    parts = int(parts)
    p = pipeline()
    p.refuse_foreign_root()
    RUN.mkdir(parents=True, exist_ok=True)
    p.data_stage()
    p.teacher_stage()
    kd_teacher_archived(p)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, __file__, "shards", f"{r}/{parts}"], env=env) for r in range(parts)]
    if any(proc.wait() for proc in procs):
        sys.exit("a shard process failed; rerun prep (finished shards are kept)")
    for kind in p.banks:  # merges the shards; each bank's metrics
        p.bank_stage(kind)
    probe_banks(env, serial=parts == 1)
    record_banks(p)


def shards(part: str) -> None:
    from clareps.clarid.bank import BankBuilder

    rank, world = (int(x) for x in part.split("/"))
    p = pipeline()
    for kind in p.banks:
        builder = BankBuilder(p.banks[kind], p.run.bank(kind), quiet=rank != 0)
        if not builder.is_complete():
            builder.build(rank, world)


def probe_banks(env: dict, serial: bool = False) -> None:
    """The held-out banks of the CKA probe: the study's bank settings, another seed, 20 items per class."""
    import yaml

    folder = RUN / "probe-banks"
    folder.mkdir(exist_ok=True)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(json.loads((RUN / "banks/canonical/bank.json").read_text())["config"]))
    procs = []
    for kind in ("canonical", "control"):  # side by side, or one after the other (serial: one thread)
        procs.append(subprocess.Popen([sys.executable, "-m", "clareps", "bank", "build", "-c", str(config),
                                       "--out", str(folder / f"{kind}-s{PROBE_SEED}"),
                                       "--teacher", str(RUN / "teacher/teacher.safetensors"),
                                       *(["--control"] if kind == "control" else []), "--set", f"seed={PROBE_SEED}",
                                       "--set", f"per_class={PROBE_PER_CLASS}", "--no-metrics", "-q"], env=env))
        if serial:
            procs[-1].wait()
    if any(proc.wait() for proc in procs):
        sys.exit("a probe bank failed; rerun prep")


def record_banks(p) -> None:
    """This session's banks (their hashes differ across CPU kinds) into ARCHIVE/banks/<date>-<host>.json."""
    banks = {}
    for kind in p.banks:
        meta = json.loads((p.run.bank(kind) / "bank.json").read_text())
        metrics = p.run.bank(kind) / "metrics.json"
        banks[kind] = {"tensors_sha256": meta.get("tensors_sha256"), "size": meta.get("size"),
                       "metrics": json.loads(metrics.read_text()) if metrics.exists() else None}
    out = ARCHIVE / "banks" / f"{time.strftime('%Y-%m-%dT%H%M', time.gmtime())}-{platform.node()}.json"
    write_json(out, {"machine": machine(p.banks["canonical"].clarid.sampler_precision), "commit": commit(),
                     "banks": banks})


# -- work ---------------------------------------------------------------------------------------------
def units(cfg) -> list[tuple[str, int]]:
    first = [m for m in cfg.methods if m in PRIMARY]
    rest = [m for m in cfg.methods if m not in PRIMARY]
    return [(m, s) for group in (first, rest) for s in cfg.seeds for m in group]


def archived(label: str, seed: int) -> bool:
    return (ARCHIVE / "students" / f"{label}-s{seed}" / "unit.json").exists()


def claim(name: str) -> bool:
    """Atomically claim ``name`` for this process; a claim whose process is gone is taken over."""
    CLAIMS.mkdir(parents=True, exist_ok=True)
    path = CLAIMS / name
    try:
        path.mkdir()
    except FileExistsError:
        owner = path / "owner"
        try:
            host, pid = owner.read_text().split()
        except (OSError, ValueError):
            return False  # being written this moment
        if host != platform.node() or Path(f"/proc/{pid}").exists():
            return False
        shutil.rmtree(path, ignore_errors=True)
        return claim(name)
    (path / "owner").write_text(f"{platform.node()} {os.getpid()}")
    return True


def release(name: str) -> None:
    shutil.rmtree(CLAIMS / name, ignore_errors=True)


def kd_teacher_ready(p) -> bool:
    """The KD teacher exists; else this process trains it if no other is (False: another one is)."""
    from clareps.demo.reuse import kd_teacher_current
    from clareps.distill.methods import KDTeacherConfig

    if kd_teacher_current(p.run.kd_teacher, KDTeacherConfig.from_distill(p.distill_config("ce", 0))):
        return True
    if not claim("kd-teacher"):
        return False
    try:
        p.kd_teacher_stage()
        kd_teacher_archived(p)
    finally:
        release("kd-teacher")
    return True


def kd_teacher_archived(p) -> None:
    """The KD teacher (4.6 MB) kept in ARCHIVE/kd-teacher once trained, and put back into a RUN that lacks
    it: every kd student of the study learns from the same bytes, in any session, on any kind of CPU (fp32
    rounds differently on another vector ISA). The run's reuse check still decides whether it fits."""
    run, kept = p.run.kd_teacher.parent, ARCHIVE / "kd-teacher"
    if kept.is_dir() and not p.run.kd_teacher.exists():
        src, dest = kept, run
    elif p.run.kd_teacher.exists() and not kept.is_dir():
        src, dest = run, kept
    else:
        return
    # (replacing a RUN/kd-teacher without its weights: a run killed mid-way)
    written_whole(dest, lambda tmp: shutil.copytree(src, tmp))


def written_whole(dest: Path, fill) -> None:
    """``fill(tmp)`` builds a folder beside ``dest`` that then replaces it: ``dest`` is whole or absent."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fill(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def work() -> None:
    p = pipeline(quiet=False)
    while True:
        todo = [(m, s) for m, s in units(p.cfg) if not archived(m, s)]
        if not todo:
            print("every student is archived: run `assemble`")
            return
        unit = next(((m, s) for m, s in todo
                     if (p.cfg.base_method(m) != "kd" or kd_teacher_ready(p)) and claim(f"{m}-s{s}")), None)
        if unit is None:
            print("the students left are claimed by other processes")
            return
        try:
            run_unit(p, *unit)
        finally:
            release(f"{unit[0]}-s{unit[1]}")


def run_unit(p, label: str, seed: int) -> None:
    seconds = {}
    t0 = time.perf_counter()
    p.student_stage(label, seed)
    seconds["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    p.eval_stage(label, seed)
    seconds["evaluate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    banks = RUN / "probe-banks"
    clareps("probe", "--student", str(p.run.student(label, seed)),
            "--bank", f"canonical={banks}/canonical-s{PROBE_SEED}", "--bank", f"control={banks}/control-s{PROBE_SEED}")
    seconds["probe"] = time.perf_counter() - t0
    archive(p.run.student(label, seed), label, seed, {k: round(v, 1) for k, v in seconds.items()},
            p.distill_config(label, seed).precision)


def archive(folder: Path, label: str, seed: int, seconds: dict, precision: str | None = None) -> None:
    """The unit's small files (not the weights; seed 0 keeps its saliency maps, which the report draws)
    into ARCHIVE/students/<label>-s<seed>, written whole or not at all."""
    def fill(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        for f in sorted(folder.iterdir()):
            keep = f.suffix in (".json", ".jsonl", ".yaml") or (seed == 0 and f.name.endswith("-maps.safetensors"))
            if f.is_file() and keep:
                shutil.copy2(f, tmp / f.name)
        write_json(tmp / "unit.json", {"label": label, "seed": seed, "seconds": seconds, "commit": commit(),
                                       "machine": machine(precision),
                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    written_whole(ARCHIVE / "students" / f"{label}-s{seed}", fill)


# -- status, assemble ---------------------------------------------------------------------------------
def status() -> None:
    p = pipeline()
    rows = units(p.cfg)
    done = [u for u in rows if archived(*u)]
    print(f"archived {len(done)} of {len(rows)} students in {ARCHIVE}")
    for m in p.cfg.methods:
        print(f"  {m:<20} seeds {[s for s in p.cfg.seeds if archived(m, s)]}")
    claims = sorted(c.name for c in CLAIMS.iterdir()) if CLAIMS.is_dir() else []
    print(f"claimed now: {', '.join(claims) or 'none'}")
    spent = [sum(json.loads((ARCHIVE / "students" / f"{m}-s{s}" / "unit.json").read_text())["seconds"].values())
             for m, s in done]
    if spent and len(done) < len(rows):  # a rough guide: kd and the other CaDistill labels cost more than ce
        mean = sum(spent) / len(spent)
        print(f"left: {len(rows) - len(done)} students, ~{(len(rows) - len(done)) * mean / 3600:.1f} worker-hours "
              f"at the archived mean of {mean / 60:.0f} min per student (+ ~25 min for the KD teacher)")


def assemble() -> None:
    p = pipeline(quiet=False)
    missing = [f"{m}-s{s}" for m, s in units(p.cfg) if not archived(m, s)]
    if missing:
        sys.exit(f"not archived yet: {', '.join(missing)}")
    from clareps.evaluate.suite import result_name

    for m, s in units(p.cfg):
        folder = p.run.student(m, s)
        if not (folder / result_name(p.cfg.evaluate.mode)).exists():
            shutil.copytree(ARCHIVE / "students" / f"{m}-s{s}", folder, dirs_exist_ok=True)
    p.aggregate_stage()
    from clareps.report.html import build_report
    print(build_report(p.run.root))


def start(workers: int | str = 2) -> None:
    """prep, then ``workers`` work processes (one thread each, nice 19), detached from this shell: the
    session's one command. Logs: RUN/session.log."""
    RUN.mkdir(parents=True, exist_ok=True)
    log = open(RUN / "session.log", "a")
    subprocess.Popen([sys.executable, __file__, "session", str(workers)], stdout=log, stderr=subprocess.STDOUT,
                     start_new_session=True)
    print(f"started: prep, then {workers} workers; log {RUN / 'session.log'}; `status` shows the archive")


def session(workers: str) -> None:
    prep(os.environ.get("PREP_PARTS", 2))  # PREP_PARTS=1: the banks in one process
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(["nice", "-n", "19", sys.executable, __file__, "work"], env=env)
             for _ in range(int(workers))]
    sys.exit(max(proc.wait() for proc in procs))


COMMANDS = {"start": start, "prep": prep, "work": work, "status": status, "assemble": assemble,
            "shards": shards, "session": session}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {Path(__file__).name} {{{'|'.join(c for c in COMMANDS if c not in ('shards', 'session'))}}}")
    COMMANDS[sys.argv[1]](*sys.argv[2:])
