"""``clareps study run | status | assemble``: a demo-config study, archived one student at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from clareps.demo.study import StudyRun, StudySpec
from clareps.errors import ClarepsError, interrupt_note
from clareps.io import check_writable

ARCHIVE_HELP = "the study's archive in the repository (e.g. docs/studies/data/cadistill)"


def _spec(archive: Path, config: str, section: str, set_: list[str], out: Optional[Path], first: Optional[str],
          probe_per_class: int) -> StudySpec:
    names = None if first is None else tuple(m.strip() for m in first.split(",") if m.strip())
    if probe_per_class < 1:
        raise ClarepsError(f"--probe-per-class must be at least 1, got {probe_per_class}")
    return StudySpec(archive, config, section, tuple(set_), out, names, probe_per_class)


# the options every verb shares: which study, where it runs, where it is archived
ARCHIVE = typer.Option(..., "--archive", "-a", help=ARCHIVE_HELP)
CONFIG = typer.Option("study-cadistill", "--config", "-c", help="demo preset name or YAML path")
SECTION = typer.Option("study", "--section", help="the config's section")
SETS = typer.Option([], "--set", "-s", help="override: key.sub=value (as for `clareps demo`)")
OUT = typer.Option(None, "--out", "-o", help="run root (default: the config's 'out')")
FIRST = typer.Option(None, "--first", help="methods taken first, every seed, comma-separated (default: those of "
                                            "ce, control, cadistill the study has)")
PROBE = typer.Option(20, "--probe-per-class", help="items per class of the held-out CKA probe banks")


def run_cmd(archive: Path = ARCHIVE, config: str = CONFIG, section: str = SECTION, set_: list[str] = SETS,
            out: Optional[Path] = OUT, first: Optional[str] = FIRST, probe_per_class: int = PROBE,
            workers: int = typer.Option(2, "--workers", "-w", min=0,
                                        help="work processes after prep, one thread each (0: prep only)"),
            prep_parts: int = typer.Option(2, "--prep-parts", min=1, help="processes that share the banks' items"),
            no_prep: bool = typer.Option(False, "--no-prep", help="only the workers (prep done, e.g. a worker more)"),
            nice: int = typer.Option(19, "--nice", min=0, max=19, help="the workers' niceness"),
            detach: bool = typer.Option(False, "--detach",
                                        help="run in the background, detached from this shell; log RUN/study.log"),
            shard: Optional[str] = typer.Option(None, "--shard", hidden=True),
            worker: bool = typer.Option(False, "--worker", hidden=True)) -> None:
    """Prep (data, teacher, banks, their metrics, held-out probe banks), then the students the archive
    lacks, each archived as soon as it is evaluated. Resumable, here or on a new machine."""
    spec = _spec(archive, config, section, set_, out, first, probe_per_class)
    study = StudyRun(spec, quiet=shard is not None or not worker)
    if shard is not None:
        return study.shard(shard)
    if worker:
        return typer.echo(study.work())
    check_writable(study.root)
    check_writable(spec.archive)
    if detach:
        study.root.mkdir(parents=True, exist_ok=True)
        log = study.root / "study.log"
        again = [*spec.args(), "--workers", str(workers), "--prep-parts", str(prep_parts), "--nice", str(nice),
                 *(["--no-prep"] if no_prep else [])]
        with open(log, "a") as fh:
            subprocess.Popen([sys.executable, "-m", "clareps", "study", "run", *again], stdout=fh,
                             stderr=subprocess.STDOUT, start_new_session=True)
        return typer.echo(f"started: {'' if no_prep else 'prep, then '}{workers} worker(s); log {log}; "
                          "`clareps study status` shows the archive")
    _yield_session(nice)
    interrupt_note(f"archived students are kept in {spec.archive}; rerun the same command to go on")
    code = study.run(workers, prep_parts, prep=not no_prep, nice=nice)
    typer.echo(study.status())
    if code:
        raise typer.Exit(code)


def _yield_session(nice: int) -> None:
    """A process that leads its session (``--detach``, ``setsid``): its scheduling group too yields to
    other sessions (with autogroup, ``nice`` alone does not). A terminal's group is left alone."""
    if os.getsid(0) == os.getpid() and os.access("/proc/self/autogroup", os.W_OK):
        try:
            Path("/proc/self/autogroup").write_text(str(nice))
        except OSError:
            pass


def status_cmd(archive: Path = ARCHIVE, config: str = CONFIG, section: str = SECTION, set_: list[str] = SETS,
               out: Optional[Path] = OUT) -> None:
    """What the archive holds, what is claimed now, and a guide to the time left."""
    typer.echo(StudyRun(_spec(archive, config, section, set_, out, None, 20)).status())


def assemble_cmd(archive: Path = ARCHIVE, config: str = CONFIG, section: str = SECTION, set_: list[str] = SETS,
                 out: Optional[Path] = OUT) -> None:
    """Once every student is archived: them into the run root, the aggregate (RUN/results) and the report."""
    study = StudyRun(_spec(archive, config, section, set_, out, None, 20), quiet=False)
    check_writable(study.root)
    report = study.assemble()
    typer.echo(f"table: {study.p.run.results / 'results.md'}\nreport: {report}")


def register(study: typer.Typer) -> None:
    study.command("run")(run_cmd)
    study.command("status")(status_cmd)
    study.command("assemble")(assemble_cmd)
