"""``clareps demo``: the whole pipeline in one run root.

data -> teacher (shipped, or a tiny one trained here) -> canonical, control and feat-real banks (and
the matched-source canonical bank and the oracle bank when a method reads them) ->
KD classifier teacher -> students (methods x seeds, each evaluated as soon as it exists) ->
aggregation -> HTML report. Every stage is the library's own function, which reuses a complete
artifact with the same config hash, so a rerun only re-reads; each stage's seconds and whether it
was reused go to RUN/demo.json (see ``clareps.report.layout``). The config is in ``demo.spec``,
the run root's reuse and refusals in ``demo.reuse``, the command in ``demo.cli``.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import typer
import yaml

from clareps.adapters.loading import is_external
from clareps.config import build_config, override, read_yaml, to_plain
from clareps.demo.reuse import kd_teacher_current, refuse_foreign_root, snapshot_teacher
from clareps.demo.spec import DemoConfig
from clareps.device import hardware, resolve_device, resolve_precision
from clareps.distill.methods import METHODS
from clareps.errors import ClarepsError
from clareps.io import read_json, write_json, write_text
from clareps.paths import TEACHER_FILE, default_judge, default_teacher, preset, resolve_preset, teacher_file
from clareps.report.layout import BANK_KINDS, ON_DEMAND_BANKS, RunLayout

# the bank config keys a run root's bank kind sets (the others: kind = its own name)
BANK_SETTINGS = {"matched": {"kind": "canonical", "source": "matched"}}


class Pipeline:
    """Runs the stages in order, timing each. Every stage's config is built (so validated) in
    ``__init__``, before any work: a typo fails at once, not twenty minutes in."""

    def __init__(self, cfg: DemoConfig, root: str | Path, mode: str, quiet: bool = False):
        from clareps.distill.config import DistillConfig
        from clareps.evaluate.suite import load_eval_config

        self.cfg, self.mode, self.quiet = cfg, mode, quiet
        self.run = RunLayout(Path(root))
        self.judge = Path(cfg.judge) if cfg.judge else default_judge()
        self.teacher_cfg = self._teacher_config()
        self.source = None if self.teacher_cfg else teacher_file(cfg.teacher.path) if cfg.teacher.path else default_teacher()
        # the run uses a copy of a given teacher file (a folder teacher is read where it is), so a teacher
        # that goes on training elsewhere cannot mix two versions into one run
        external = self.source is not None and is_external(self.source)
        self.teacher = self.source if external else self.run.teacher_dir / TEACHER_FILE
        needed = {METHODS[cfg.base_method(m)].bank for m in cfg.methods}
        self.banks = {kind: self._bank_config(kind) for kind in BANK_KINDS
                      if kind not in ON_DEMAND_BANKS or kind in needed}
        self.distill_base = override(read_yaml(resolve_preset(cfg.distill_preset, "distill-default")), cfg.distill)
        self.distill_base.update(data=to_plain(cfg.data), device=cfg.device)
        build_config(DistillConfig, self.distill_base, "demo config [distill]")
        for name in cfg.variants:
            build_config(DistillConfig, self._distill_data(name), f"demo config [variants.{name}]")
        self.eval_cfg = load_eval_config(resolve_preset(cfg.evaluate.preset, "evaluate-default"), cfg.evaluate.mode,
                                         cfg.evaluate.overrides + [f"device={cfg.device}"])
        device = resolve_device(cfg.device)
        requested = {"teacher": self.teacher_cfg.precision if self.teacher_cfg else None,
                     "banks": self.banks["canonical"].clarid.sampler_precision,
                     "students": self.distill_base.get("precision", "auto")}
        self.hardware = dict(hardware(device), precision={
            stage: resolve_precision(p, device) for stage, p in requested.items() if p is not None})
        self.stages: dict[str, dict] = {}
        self.finished = False
        self.t0, self.started = time.perf_counter(), _now()

    # -- configs ------------------------------------------------------------------------------------
    def _teacher_config(self):
        from clareps.diffusion.train import TeacherConfig

        if self.cfg.teacher.train is None:
            return None
        if self.cfg.teacher.path is not None:
            raise ClarepsError("demo config: give teacher.path or teacher.train, not both")
        data = override(read_yaml(preset("teacher-default")), self.cfg.teacher.train)
        data.update(data=to_plain(self.cfg.data), device=self.cfg.device)
        return build_config(TeacherConfig, data, "demo config [teacher.train]")

    def _bank_config(self, kind: str):
        from clareps.bank.build import BankConfig

        data = override(read_yaml(preset("bank-default")), self.cfg.bank)
        if kind != "oracle":  # the section's oracle settings (background, pass) are the oracle bank's alone
            data.pop("oracle", None)
        data.update(teacher=str(self.teacher), data=to_plain(self.cfg.data), device=self.cfg.device,
                    **BANK_SETTINGS.get(kind, {"kind": kind}))
        return build_config(BankConfig, data, f"demo config [bank] ({kind})")

    def _distill_data(self, label: str) -> dict:
        """The run's distill settings, with a variant's own overrides merged in."""
        variant = self.cfg.variants.get(label)
        return override(self.distill_base, variant.distill) if variant else self.distill_base

    def distill_config(self, label: str, seed: int):
        """The distill config of the method label ``label`` (cadistill-matched: the cadistill method
        on the matched bank, which it refuses to be of another source; a variant: its method's with its
        overrides)."""
        from clareps.adapters.loading import teacher_fingerprint
        from clareps.distill.config import DistillConfig

        method = METHODS[self.cfg.base_method(label)]
        data = override(self._distill_data(label), {"method": method.trains_as or method.name, "seed": seed})
        if method.bank is not None:
            kind = method.bank
            data.update(bank=str(self.run.bank(kind)), expect_teacher=teacher_fingerprint(self.teacher))
            if "source" in BANK_SETTINGS.get(kind, {}):
                data["bank_source"] = BANK_SETTINGS[kind]["source"]
        if method.kd:
            data = override(data, {"kd.teacher": str(self.run.kd_teacher)})
        return build_config(DistillConfig, data, f"demo config [distill] ({label})")

    # -- bookkeeping --------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if not self.quiet:
            typer.echo(text)

    @contextmanager
    def stage(self, name: str):
        """Time a stage; the body sets ``info["reused"]`` (and anything else worth keeping)."""
        info: dict = {"reused": False}
        t0 = time.perf_counter()
        try:
            yield info
        except ClarepsError as err:
            raise ClarepsError(f"demo stage {name}: {err}") from None
        info["seconds"] = round(time.perf_counter() - t0, 2)
        info["ended"] = _now()
        self.stages[name] = info
        self.say(f"  {name}: {'reused' if info['reused'] else 'done'} in {info['seconds']:.1f} s")
        self._write_log(finished=self.finished)

    def _write_log(self, finished: bool) -> None:
        path = self.run.log
        log = read_json(path) if path.exists() else {"history": [], "built": {}}
        entry = {"started": self.started, "mode": self.mode, "command": " ".join(["clareps"] + sys.argv[1:]),
                 "hardware": self.hardware, "stages": self.stages, "finished": finished,
                 "wall_seconds": round(time.perf_counter() - self.t0, 2)}
        history = [h for h in log["history"] if h.get("started") != self.started]
        log["history"] = history + [entry]
        for name, info in self.stages.items():  # what it cost to make each artifact, kept across reruns
            if not info["reused"]:
                log["built"][name] = {"seconds": info["seconds"], "when": info["ended"], "hardware": entry["hardware"]}
        write_json(path, log)

    # -- stages -------------------------------------------------------------------------------------
    def refuse_foreign_root(self) -> None:
        """The refusals a later stage would make, made before the run root is touched."""
        refuse_foreign_root(self.run, self.teacher_cfg, self.source, self.teacher, self.banks)

    def run_all(self) -> tuple[Path, dict]:
        self.refuse_foreign_root()
        self.run.root.mkdir(parents=True, exist_ok=True)
        write_text(self.run.config, yaml.safe_dump(dict(to_plain(self.cfg), mode=self.mode), sort_keys=False))
        self.say(f"demo ({self.mode}) in {self.run.root}")
        self.data_stage()
        self.teacher_stage()
        for kind in self.banks:
            self.bank_stage(kind)
        if any(METHODS[self.cfg.base_method(m)].kd for m in self.cfg.methods):
            self.kd_teacher_stage()
        for seed in self.cfg.seeds:  # seed-major: an interrupted demo still has every method of seed 0
            for method in self.cfg.methods:
                self.student_stage(method, seed)
                self.eval_stage(method, seed)
        agg = self.aggregate_stage()
        self._write_log(finished=True)  # the report reads the run's log: complete but for itself
        self.finished = True
        with self.stage("report"):
            from clareps.report.html import build_report
            report = build_report(self.run.root)
        return report, agg

    def data_stage(self) -> None:
        from clareps.data.spec import load_data

        with self.stage("data") as info:
            if self.cfg.data.kind == "benchmark":
                from clareps.data.benchmark import build_benchmark, default_cache_dir, fingerprint

                bench, cache = self.cfg.data.benchmark, self.cfg.data.cache_dir
                info["reused"] = (Path(cache or default_cache_dir()) / f"animals-{fingerprint(bench)}" /
                                  "meta.json").exists()
                info["folder"] = str(build_benchmark(bench, cache, progress=not self.quiet))
            else:
                info["images"] = len(load_data(self.cfg.data))

    def teacher_stage(self) -> None:
        from clareps.adapters.loading import teacher_fingerprint

        with self.stage("teacher") as info:
            if self.teacher_cfg is not None:
                from clareps.data.spec import data_fingerprint, load_data
                from clareps.diffusion.train import TeacherTrainer, teacher_finished

                done = teacher_finished(self.teacher_cfg, self.run.teacher_dir)
                if not done:
                    TeacherTrainer(self.teacher_cfg, load_data(self.cfg.data), self.run.teacher_dir,
                                   data_fingerprint(self.cfg.data), quiet=self.quiet).train()
                info["reused"] = done
            elif self.source == self.teacher:
                info["reused"] = True  # a folder teacher (diffusers / DiT): read where it is
            else:
                info["reused"] = snapshot_teacher(self.source, self.teacher, self.run.root)
            info.update(path=str(self.teacher), sha256=teacher_fingerprint(self.teacher),
                        source=str(self.source or self.teacher))

    def bank_stage(self, kind: str) -> None:
        from clareps.bank.build import build_bank
        from clareps.bank.views import ensure_metrics

        folder = self.run.bank(kind)
        with self.stage(f"bank/{kind}") as info:
            bank, info["reused"] = build_bank(self.banks[kind], folder, quiet=self.quiet)
            info["items"] = len(bank)
        if kind == "feat-real" or (self.cfg.data.kind != "benchmark" and self.cfg.judge is None):
            return  # feat-real's features are measured in the report; the judge knows the benchmark only
        with self.stage(f"bank-metrics/{kind}") as info:  # recomputed when stale: new measures, judges
            info["reused"] = ensure_metrics(folder, self.judge)[1]

    def kd_teacher_stage(self) -> None:
        from clareps.distill.methods import KDTeacherConfig, train_kd_teacher

        cfg = self.distill_config("ce", 0)  # the shared parts: data, carve-out, kd.teacher_*, precision
        tcfg = KDTeacherConfig.from_distill(cfg)
        with self.stage("kd-teacher") as info:
            info["reused"] = kd_teacher_current(self.run.kd_teacher, tcfg)
            if not info["reused"]:
                train_kd_teacher(tcfg, self.run.kd_teacher.parent, quiet=self.quiet)

    def student_stage(self, method: str, seed: int) -> None:
        from clareps.distill.trainer import DistillTrainer

        with self.stage(f"distill/{method}-s{seed}") as info:
            trainer = DistillTrainer(self.distill_config(method, seed), self.run.student(method, seed),
                                     quiet=self.quiet)
            result = trainer.train()
            info.update(reused=trainer.reused, val_acc=result.get("val_acc"), steps=trainer.total_steps)

    def eval_stage(self, method: str, seed: int) -> None:
        from clareps.evaluate.suite import evaluate_student, maps_path, result_name, results_current, write_results

        run = self.run.student(method, seed)
        out = run / result_name(self.cfg.evaluate.mode)
        with self.stage(f"evaluate/{method}-s{seed}") as info:
            info["reused"] = results_current(out, run, self.eval_cfg)
            if not info["reused"]:
                results = evaluate_student(run, self.eval_cfg, mode=self.cfg.evaluate.mode, maps_path=maps_path(out),
                                           quiet=self.quiet)
                # the method label is what the aggregate groups by; results["student"]["method"] keeps
                # the distill method (cadistill for cadistill-matched)
                write_results(dict(results, method=method), out)

    def aggregate_stage(self) -> dict:
        from clareps.evaluate.aggregate import aggregate, find_results, load_runs, write_tables

        with self.stage("aggregate"):
            runs = [self.run.student(m, s) for s in self.cfg.seeds for m in self.cfg.methods]
            agg = aggregate(load_runs(find_results(runs, self.cfg.evaluate.mode)))
            write_tables(agg, self.run.results)
        return agg


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
