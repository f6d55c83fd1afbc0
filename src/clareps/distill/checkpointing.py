"""The distillation trainer's run folder: its checkpoint (student, projection head, optimizer, step)
and how a run folder is prepared: refused when another config made it, resumed, or started afresh."""

from __future__ import annotations

import sys

from clareps import distributed
from clareps.errors import ClarepsError
from clareps.io import load_tensors, read_jsonl, save_tensors, write_jsonl
from clareps.state import restore_training, training_tensors


def save_checkpoint(trainer) -> None:
    if not trainer.dist.main:
        return
    tensors, groups = training_tensors(trainer.modules(), trainer.opt)
    save_tensors(trainer.ckpt_path, tensors, dict(trainer._meta(), param_groups=groups))


def load_checkpoint(trainer) -> None:
    tensors, meta = load_tensors(trainer.ckpt_path)
    restore_training(tensors, meta["param_groups"], trainer.modules(), trainer.opt, trainer.device,
                     str(trainer.ckpt_path))
    trainer.step = int(meta["step"])


def prepare_run_dir(trainer, resume: bool) -> None:
    """Refuse a run dir of another config or bank; resume a partial run when asked."""
    ckpt, run_dir = trainer.ckpt_path, trainer.run_dir
    if ckpt.exists():
        dim = load_tensors(ckpt)[1].get("feature_dim")
        if dim is not None and trainer.proj is not None and dim != trainer.teacher_dim:
            raise ClarepsError(f"bank {trainer.cfg.bank} has {trainer.teacher_dim}-dim target features; the "
                               f"projection head in {run_dir} maps to {dim}: it does not fit the head")
    trainer.contract.refuse_other()
    metrics = run_dir / "metrics.jsonl"
    if ckpt.exists() and resume:
        load_checkpoint(trainer)
        if trainer.dist.main and trainer.step < trainer.total_steps:
            print(f"resuming from step {trainer.step} of {trainer.total_steps} ({ckpt})", file=sys.stderr)
        rows = [r for r in read_jsonl(metrics) if r.get("step", 0) <= trainer.step and not r.get("final")] \
            if metrics.exists() else []
        if trainer.dist.main:
            write_jsonl(metrics, rows)
    elif ckpt.exists():
        raise ClarepsError(f"{run_dir} already holds a checkpoint; pass --resume or use a new --out")
    elif metrics.exists() and trainer.dist.main:
        metrics.unlink()
    if trainer.dist.main:
        trainer.contract.write()
    distributed.barrier()
