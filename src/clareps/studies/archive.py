"""A study's archive in the repository, for machines that keep only the repository between runs.

Every finished student of a study is archived as soon as it is evaluated: its small files (results,
metrics, CKA probe, config; seed 0's saliency maps, which the report draws), not its weights, with a
``unit.json`` that records its seconds, the commit and the CPU. The one set of weights kept is the KD
teacher's, which every kd student reads, so that they learn from the same bytes on any machine. A later
run goes on with the students the archive lacks; processes share the work through claims, one folder
each. ``clareps study run | status | assemble`` (``clareps.demo.study``) drive the stages around this.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

from clareps.io import write_json

UNIT_FILE = "unit.json"
KEPT_SUFFIXES = (".json", ".jsonl", ".yaml")  # and seed 0's "*-maps.safetensors"


def machine(precision: str | None = None) -> dict:
    """The machine as every timing records it (``clareps.device.hardware``), with its host name."""
    import torch

    from clareps.device import hardware

    return dict(hardware(torch.device("cpu"), precision), host=platform.node())


def commit() -> str:
    """The commit of the working folder's repository (``unknown`` outside one)."""
    out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def written_whole(dest: Path, fill: Callable[[Path], object]) -> None:
    """``fill(tmp)`` builds a folder beside ``dest`` that then replaces it: ``dest`` is whole or absent,
    and a ``fill`` that fails leaves the old ``dest`` as it was."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fill(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def unit_order(methods: Iterable[str], seeds: Iterable[int], first: Iterable[str]) -> list[tuple[str, int]]:
    """(method, seed) in the order a study takes them: the ``first`` methods (its pre-registered primary
    comparisons) of every seed, then the others of every seed."""
    methods, seeds, first = list(methods), list(seeds), set(first)
    groups = ([m for m in methods if m in first], [m for m in methods if m not in first])
    return [(m, s) for group in groups for s in seeds for m in group]


class Claims:
    """Work shared by processes, one claim folder per unit: ``take`` is atomic (``mkdir``), and a claim
    whose process is gone (on this host) is taken over."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def take(self, name: str) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        try:
            path.mkdir()
        except FileExistsError:
            try:
                host, pid = (path / "owner").read_text().split()
            except (OSError, ValueError):
                return False  # being written this moment
            if host != platform.node() or Path(f"/proc/{pid}").exists():
                return False  # alive, or on another machine, where it cannot be checked from here
            shutil.rmtree(path, ignore_errors=True)
            return self.take(name)
        (path / "owner").write_text(f"{platform.node()} {os.getpid()}")
        return True

    def release(self, name: str) -> None:
        shutil.rmtree(self.folder / name, ignore_errors=True)

    def held(self) -> list[str]:
        return sorted(c.name for c in self.folder.iterdir()) if self.folder.is_dir() else []


class StudyArchive:
    """ARCHIVE/students/<label>-s<seed>/ (one per finished student), ARCHIVE/kd-teacher/ and
    ARCHIVE/banks/<date>-<host>.json (each build's bank hashes and metrics)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def unit(self, label: str, seed: int) -> Path:
        return self.root / "students" / f"{label}-s{seed}"

    def archived(self, label: str, seed: int) -> bool:
        return (self.unit(label, seed) / UNIT_FILE).exists()

    def seconds(self, label: str, seed: int) -> float:
        """The seconds the archived student took, all its steps together."""
        return sum(json.loads((self.unit(label, seed) / UNIT_FILE).read_text())["seconds"].values())

    def keep(self, folder: Path, label: str, seed: int, seconds: dict, precision: str | None = None) -> Path:
        """A finished student's small files (not the weights; seed 0 keeps its saliency maps), written whole
        or not at all, with its ``unit.json``."""
        def fill(tmp: Path) -> None:
            tmp.mkdir(parents=True)
            for f in sorted(folder.iterdir()):
                maps = seed == 0 and f.name.endswith("-maps.safetensors")
                if f.is_file() and (f.suffix in KEPT_SUFFIXES or maps):
                    shutil.copy2(f, tmp / f.name)
            write_json(tmp / UNIT_FILE, {"label": label, "seed": seed, "seconds": seconds, "commit": commit(),
                                         "machine": machine(precision),
                                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

        dest = self.unit(label, seed)
        written_whole(dest, fill)
        return dest

    def sync_kd_teacher(self, weights: Path) -> None:
        """The KD teacher kept in ARCHIVE/kd-teacher once trained (the first one stays), and put back into a
        run that lacks it (``weights``: the run's KD teacher file): every kd student of the study learns from
        the same bytes, on any kind of CPU (fp32 rounds differently on another vector ISA). The run's reuse
        check still decides whether it fits. A run's folder without the weights (killed mid-way) is replaced."""
        run, kept = weights.parent, self.root / "kd-teacher"
        if kept.is_dir() and not weights.exists():
            src, dest = kept, run
        elif weights.exists() and not kept.is_dir():
            src, dest = run, kept
        else:
            return
        written_whole(dest, lambda tmp: shutil.copytree(src, tmp))

    def record_banks(self, banks: dict[str, Path], precision: str | None) -> Path:
        """This build's banks (their hashes differ across CPU kinds) into ARCHIVE/banks/<date>-<host>.json."""
        record = {}
        for kind, folder in banks.items():
            meta = json.loads((folder / "bank.json").read_text())
            metrics = folder / "metrics.json"
            record[kind] = {"tensors_sha256": meta.get("tensors_sha256"), "size": meta.get("size"),
                            "metrics": json.loads(metrics.read_text()) if metrics.exists() else None}
        out = self.root / "banks" / f"{time.strftime('%Y-%m-%dT%H%M', time.gmtime())}-{platform.node()}.json"
        write_json(out, {"machine": machine(precision), "commit": commit(), "banks": record})
        return out

    def status(self, units: list[tuple[str, int]], methods: list[str], seeds: list[int], claimed: list[str]) -> str:
        """What the archive holds of ``units``, what is claimed, and a rough guide to what is left."""
        done = [u for u in units if self.archived(*u)]
        lines = [f"archived {len(done)} of {len(units)} students in {self.root}"]
        lines += [f"  {m:<20} seeds {[s for s in seeds if self.archived(m, s)]}" for m in methods]
        lines.append(f"claimed now: {', '.join(claimed) or 'none'}")
        spent = [self.seconds(*u) for u in done]
        if spent and len(done) < len(units):  # a rough guide: kd and the CaDistill labels cost more than ce
            mean, left = sum(spent) / len(spent), len(units) - len(done)
            lines.append(f"left: {left} students, ~{left * mean / 3600:.1f} worker-hours at the archived mean of "
                         f"{mean / 60:.0f} min per student (+ ~25 min for the KD teacher)")
        return "\n".join(lines)
