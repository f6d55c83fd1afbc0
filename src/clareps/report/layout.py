"""Where things live in a demo run root (``clareps demo`` writes it, ``clareps report`` reads it).

    RUN/demo.yaml                   the resolved demo config
    RUN/demo.json                   each invocation's stages, seconds and reuse; the hardware
    RUN/teacher/                    the teacher used: a copy of the given file (with its sidecar, config,
                                    model card and check), or one trained here (tiny runs)
    RUN/banks/{canonical,control,feat-real}/
    RUN/banks/matched/              the canonical bank from matched sources, only when a method reads it
    RUN/banks/oracle/               the oracle bank (true masks, backgrounds replaced), only when a method reads it
    RUN/kd-teacher/kd_teacher.safetensors (timing.json beside it: its training time, kept out of its bytes)
    RUN/students/<method>-s<seed>/  student.safetensors, eval-<mode>.json, eval-<mode>-maps.safetensors
    RUN/results/results.{md,csv,json}
    RUN/report.html
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BANK_KINDS = ("canonical", "control", "feat-real", "matched", "oracle")
# banks built only when a run's methods read them (the others are built always: the report shows them)
ON_DEMAND_BANKS = ("matched", "oracle")


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "demo.yaml"

    @property
    def log(self) -> Path:
        return self.root / "demo.json"

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"

    def bank(self, kind: str) -> Path:
        return self.root / "banks" / kind

    @property
    def kd_teacher(self) -> Path:
        return self.root / "kd-teacher" / "kd_teacher.safetensors"

    @property
    def students(self) -> Path:
        return self.root / "students"

    def student(self, method: str, seed: int) -> Path:
        return self.students / f"{method}-s{seed}"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def cache(self) -> Path:
        """Report-side caches (2-D embeddings)."""
        return self.root / "report-cache"
