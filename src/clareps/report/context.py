"""What the report reads from a run root, loaded lazily; a missing input raises ``Missing``,
which the page turns into a sentence instead of a failure."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from clareps.io import read_json, read_jsonl, read_yaml_or_none
from clareps.report.layout import BANK_KINDS, RunLayout


class Missing(Exception):
    """An input of a section is absent; the message says which and how to make it."""


class ReportContext:
    def __init__(self, run_root: str | Path):
        self.run = RunLayout(Path(run_root))
        self._banks: dict = {}
        self._splits: dict = {}

    # -- files of the run root ----------------------------------------------------------------------
    @cached_property
    def cfg(self) -> dict:
        return read_yaml_or_none(self.run.config) or {}

    @cached_property
    def log(self) -> dict:
        return read_json(self.run.log) if self.run.log.exists() else {}

    @cached_property
    def agg(self) -> dict | None:
        path = self.run.results / "results.json"
        return read_json(path) if path.exists() else None

    def need_agg(self) -> dict:
        if self.agg is None:
            raise Missing(f"no aggregated results yet ({self.run.results / 'results.json'}): the demo has not "
                          "evaluated every student, or stopped before aggregating them")
        return self.agg

    @property
    def latest(self) -> dict:
        history = self.log.get("history") or [{}]
        return history[-1]

    def built(self, stage: str) -> dict | None:
        return (self.log.get("built") or {}).get(stage)

    # -- banks and data -------------------------------------------------------------------------------
    def bank(self, kind: str):
        from clareps.bank.format import load_bank

        if kind not in self._banks:
            folder = self.run.bank(kind)
            if not (folder / "bank.safetensors").exists():
                raise Missing(f"no {kind} bank at {folder}")
            self._banks[kind] = load_bank(folder)
        return self._banks[kind]

    def bank_metas(self) -> list[dict]:
        """The bank.json of every bank present."""
        sides = [self.run.bank(kind) / "bank.json" for kind in BANK_KINDS]
        return [read_json(side) for side in sides if side.exists()]

    def bank_metrics(self, kind: str, current: bool = False) -> dict | None:
        """The bank's metrics.json; with ``current``, only when measured after the bank was last written."""
        path = self.run.bank(kind) / "metrics.json"
        if not path.exists():
            return None
        if current and path.stat().st_mtime < (self.run.bank(kind) / "bank.json").stat().st_mtime:
            return None
        return read_json(path)

    @cached_property
    def data_spec(self):
        from clareps.config import build_config
        from clareps.data.spec import DataSpec

        data = self.cfg.get("data")
        if data is None:
            for kind in ("canonical", "control", "feat-real"):
                side = self.run.bank(kind) / "bank.json"
                if side.exists():
                    data = read_json(side)["config"]["data"]
                    break
        if data is None:
            raise Missing(f"no data spec: neither {self.run.config} nor a bank records which data the run used")
        return build_config(DataSpec, data, str(self.run.config))

    def split(self, name: str | None = None):
        from clareps.data.spec import load_data

        key = name or self.data_spec.split
        if key not in self._splits:
            self._splits[key] = load_data(self.data_spec, key)
        return self._splits[key]

    @property
    def class_names(self) -> list[str]:
        for kind in ("control", "canonical", "feat-real"):
            side = self.run.bank(kind) / "bank.json"
            if side.exists() and read_json(side).get("class_names"):
                return list(read_json(side)["class_names"])
        return list(self.split().class_names)

    # -- the teacher --------------------------------------------------------------------------------
    @cached_property
    def teacher_path(self) -> Path | None:
        stage = (self.latest.get("stages") or {}).get("teacher") or {}
        if stage.get("path"):
            return Path(stage["path"])
        side = self.run.bank("canonical") / "bank.json"
        if side.exists():
            return Path(read_json(side)["teacher"])
        return None

    def teacher_state(self) -> dict:
        """Step reached vs planned, teacher-check results (if any) and the demo's own measurement."""
        path = self.teacher_path
        if path is None:
            raise Missing("the run records no teacher")
        folder = path.parent
        side = folder / path.name.replace(".safetensors", ".json")
        meta = read_json(side) if side.exists() else {}
        plan = (read_yaml_or_none(folder / "config.yaml") or {}).get("steps")
        check = read_json(folder / "teacher_check.json") if (folder / "teacher_check.json").exists() else None
        info = read_json(folder / "train_info.json") if (folder / "train_info.json").exists() else None
        log = folder / "metrics.jsonl"
        logged = logged_seconds(read_jsonl(log)) if log.exists() else None
        control = self.bank_metrics("control")
        source = ((self.latest.get("stages") or {}).get("teacher") or {}).get("source")
        return {"path": path, "source": source, "step": meta.get("step"), "planned": plan, "check": check,
                "train_info": info,
                "seconds": (info or {}).get("wall_seconds"), "seconds_logged": logged,
                "card": (folder / "MODEL_CARD.md").exists(),
                "control_consistency": (control or {}).get("class_consistency"),
                "control_items": (control or {}).get("items"), "sha256": meta.get("tensors_sha256")}

    def kd_teacher_meta(self) -> dict | None:
        side = self.run.kd_teacher.with_suffix(".json")
        return read_json(side) if side.exists() else None


def logged_seconds(rows: list[dict]) -> float:
    """Training time from a metrics.jsonl with ``sec_per_step`` at logged steps: each row covers the
    steps since the previous one (an estimate: resumed sessions and checkpoint writes are left out)."""
    total, last = 0.0, 0
    for r in rows:
        if "sec_per_step" in r and "step" in r:
            total += r["sec_per_step"] * max(0, r["step"] - last)
            last = r["step"]
    return total
