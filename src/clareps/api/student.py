"""``Student`` (train, load, evaluate) and ``Evaluation``: a student's results with typed fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clareps.api.settings import build
from clareps.errors import ClarepsError


@dataclass
class Evaluation:
    """What ``clareps evaluate`` measures, as fields (fractions in [0, 1]; None where not measured):

    - ``clean_accuracy``: accuracy on the clean test images (``test-original`` on the default benchmark);
    - ``accuracy``: accuracy per clean variant (e.g. ``test-only-fg``, ``test-mixed-rand``);
    - ``background_gap``: accuracy on ``test-mixed-same`` minus ``test-mixed-rand`` (reliance on background);
    - ``robust_accuracy``: worst-case accuracy over the attacks, per budget (``"2/255"``: accuracy);
    - ``corruption_accuracy``: mean accuracy over the corruptions and severities; ``mce``: mean
      corruption error relative to a ``ce`` student (when given one);
    - ``saliency_fg_share``: per saliency method, the share of attribution on the foreground;
    - ``summary``: every figure above as the flat ``metric -> value`` map the tables read;
    - ``results``: the whole results document; ``path``: where it was written.
    """

    mode: str
    clean_accuracy: float | None
    accuracy: dict[str, float] = field(default_factory=dict)
    background_gap: float | None = None
    robust_accuracy: dict[str, float] = field(default_factory=dict)
    corruption_accuracy: float | None = None
    mce: float | None = None
    saliency_fg_share: dict[str, float] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    results: dict = field(default_factory=dict, repr=False)
    path: Path | None = None

    @classmethod
    def from_results(cls, results: dict, path: Path | None = None) -> "Evaluation":
        s = results.get("summary") or {}
        accuracy = {k.removeprefix("clean/"): v for k, v in s.items() if k.startswith("clean/")}
        return cls(mode=results.get("mode", ""), clean_accuracy=accuracy.get("test-original", accuracy.get("test")),
                   accuracy=accuracy, background_gap=s.get("bg/gap"),
                   robust_accuracy={k.split("@", 1)[1]: v for k, v in s.items() if k.startswith("robust/worst@")},
                   corruption_accuracy=s.get("corr/mean"), mce=s.get("corr/mce"),
                   saliency_fg_share={k.removeprefix("saliency/"): v for k, v in s.items()
                                      if k.startswith("saliency/")},
                   summary=dict(s), results=results, path=path)

    def to_markdown(self) -> str:
        from clareps.tables import markdown_table

        rows = [{"metric": k, "value": v} for k, v in self.summary.items()]
        return markdown_table(rows, ("metric", "value"))

    def to_frame(self):
        """The summary as a pandas DataFrame (metric, value); needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ClarepsError("to_frame needs pandas (pip install pandas); to_markdown() needs nothing") from None
        return pd.DataFrame({"metric": list(self.summary), "value": list(self.summary.values())})


class Student:
    """A trained student: its checkpoint ``path`` and metadata (method, architecture, data fingerprint)."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = path, meta

    def __repr__(self) -> str:
        return f"Student({self.meta.get('method')}, {self.path})"

    @classmethod
    def train(cls, method: str, out: str | Path, bank: str | Path | None = None, seed: int = 0,
              config: Any = None, quiet: bool = True, **settings: Any) -> "Student":
        """``clareps distill``: train a student by ``method`` (ce, feat-real, control, kd, cadistill) into
        ``out`` (reused when complete, resumed when partial). ``config``: a ``DistillConfig``, a YAML file or a
        preset name (default: ``distill-default``); ``settings``: its keys (``epochs=2``, ``**{"student.width": 16}``)."""
        from clareps.distill.config import DistillConfig
        from clareps.distill.trainer import DistillTrainer
        from clareps.paths import resolve_preset

        base = config if isinstance(config, DistillConfig) else resolve_preset(config, "distill-default")
        extra = {"method": method, "seed": seed, **({"bank": str(getattr(bank, "path", bank))} if bank else {})}
        cfg = build(DistillConfig, base, {**extra, **settings})
        trainer = DistillTrainer(cfg, out, quiet=quiet)
        if not trainer.train():
            raise ClarepsError(f"{out}: training stopped at step {trainer.step} of {trainer.total_steps}")
        return cls.load(trainer.student_path)

    @classmethod
    def load(cls, path: str | Path) -> "Student":
        """A student checkpoint, or the run folder holding ``student.safetensors``."""
        from clareps.evaluate.suite import resolve_student
        from clareps.io import read_meta

        path = resolve_student(path)
        return cls(path, read_meta(path))

    @property
    def model(self):
        """The classifier, frozen, in eval mode (loaded on each access)."""
        from clareps.evaluate.suite import load_student

        return load_student(self.path)[0]

    def evaluate(self, mode: str = "fast", config: Any = None, quiet: bool = True, **settings: Any) -> Evaluation:
        """``clareps evaluate``: clean, background, robustness, corruption and saliency results (``mode``: a
        section of the evaluation preset: fast, demo, full), written beside the student and returned."""
        from clareps.evaluate import suite
        from clareps.evaluate.suite import EvalConfig
        from clareps.paths import resolve_preset

        cfg = suite.load_eval_config(resolve_preset(config, "evaluate-default"), mode)
        cfg = build(EvalConfig, cfg, settings, f"evaluate [{mode}]") if settings else cfg
        results = suite.evaluate_student(self.path, cfg, mode=mode, quiet=quiet)
        out = suite.write_results(results, self.path.parent / suite.result_name(mode))
        return Evaluation.from_results(results, out)
