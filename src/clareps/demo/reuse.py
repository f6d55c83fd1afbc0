"""What ``clareps demo`` reuses and refuses in a run root: the stages' own contracts checked before
anything is written, a consistent copy of a teacher file, and the reuse checks of the stages whose
artifact is not a run folder of its own (bank metrics, the KD teacher)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from clareps.config import to_plain
from clareps.errors import ClarepsError
from clareps.io import read_json
from clareps.paths import TEACHER_FILE
from clareps.report.layout import RunLayout


def refuse_foreign_root(run: RunLayout, teacher_cfg, source: Path | None, teacher: Path, banks: dict) -> None:
    """The refusals a later stage would make, made before the run root is touched: a teacher or
    a bank there that another config (or another version of the teacher) made."""
    from clareps.adapters.loading import teacher_fingerprint
    from clareps.bank.build import bank_contract, resolved
    from clareps.data.spec import data_fingerprint
    from clareps.diffusion.train import teacher_contract
    from clareps.io import hash_file

    why = None
    if teacher_cfg is not None:
        diff = teacher_contract(teacher_cfg, run.teacher_dir).other()
        if diff is not None:
            why = f"a teacher trained with another config ({diff})"
    elif source != teacher and teacher.exists() and source.is_file() \
            and hash_file(teacher) != hash_file(source):
        why = f"a copy of another version of the teacher {source}"
    for kind, cfg in banks.items():
        if why is not None or not (run.bank(kind) / "bank.json").exists():
            continue
        diff = bank_contract(resolved(cfg), run.bank(kind), teacher_fingerprint(teacher),
                             data_fingerprint(cfg.data)).other() if teacher.exists() else "but no teacher"
        if diff is not None:
            why = f"a {kind} bank of another config, teacher or data ({diff})"
    if why:
        raise ClarepsError(f"{run.root} holds {why}: use a new --out, or delete {run.root}")


def snapshot_teacher(src: Path, teacher: Path, root: Path) -> bool:
    """Copy a teacher file with its sidecar and model-card inputs to ``teacher`` (in the run root
    ``root``); True when the run root already holds this very teacher. A run root made from another
    version of it is refused."""
    from clareps.io import atomic_write, hash_file, load_tensors, sidecar_path

    if not src.is_file() or not sidecar_path(src).is_file():
        raise ClarepsError(f"teacher not found: {src} (with its sidecar {sidecar_path(src).name})")
    if teacher.exists():
        then, now = hash_file(teacher), hash_file(src)
        if then != now:
            raise ClarepsError(f"the teacher {src} has changed since {root} was made from it "
                               f"({then} then, {now} now): use a new --out, or delete {root}")
        return True
    files = {src.parent / n: n for n in ("config.yaml", "train_info.json", "teacher_check.json",
                                         "MODEL_CARD.md", "samples.png", "metrics.jsonl")}
    files.update({sidecar_path(src): "teacher.json", src: TEACHER_FILE})  # the weights last
    for _ in range(5):  # a training job may replace the file between our copies of it and its sidecar
        for path, name in files.items():
            if path.is_file():
                atomic_write(teacher.parent / name, lambda p, path=path: shutil.copyfile(path, p))
        try:
            load_tensors(teacher)  # checks the copy against its sidecar's hash
            return False
        except ClarepsError:
            teacher.unlink()
            time.sleep(2)
    raise ClarepsError(f"could not take a consistent copy of {src}: it keeps changing")


def kd_teacher_current(path: Path, cfg) -> bool:
    """``path`` holds the KD teacher of this ``KDTeacherConfig`` (its sidecar records the config)."""
    side = path.with_suffix(".json")
    return side.exists() and read_json(side).get("config") == to_plain(cfg)
