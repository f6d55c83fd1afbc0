"""torchrun with 2 CPU processes (gloo): DDP teacher and student steps, resume across world sizes,
and a 2-rank bank. One torchrun launch runs this file as a script (``_worker``); the tests
compare what its ranks left behind with one process doing the same work."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from clareps import distributed
from clareps.bank.build import BankConfig, build_bank
from clareps.config import load_config
from clareps.data.spec import data_fingerprint, load_data
from clareps.diffusion.train import TeacherConfig, TeacherTrainer
from clareps.distill.config import DistillConfig
from clareps.distill.trainer import DistillTrainer
from clareps.errors import ClarepsError
from clareps.io import read_jsonl
from conftest import TINY_UNET, write_tiny_npz


def _configs(job: Path) -> None:
    write_tiny_npz(job / "data.npz", n=40, classes=10, darkest=150)
    data = {"kind": "npz", "path": str(job / "data.npz")}
    teacher = {"data": data, "model": TINY_UNET, "steps": 2, "batch_size": 8, "ckpt_every": 2, "log_every": 1,
               "warmup": 1, "precision": "fp32", "device": "cpu"}
    bank = {"teacher": str(job / "teacher2" / "teacher.safetensors"), "data": data, "per_class": 1,
            "source": "random", "shard_size": 3, "device": "cpu",
            "clarid": {"k": 2, "steps": 10, "max_iter": 3, "t_e": 0.3, "w": 2.0}}
    student = {"method": "cadistill", "data": data, "test_splits": [], "val_fraction": 0.25, "bank": str(job / "bank2"),
               "student": {"name": "small-cnn", "width": 4}, "bank_batch_size": 4, "epochs": 1, "batch_size": 8,
               "precision": "fp32", "device": "cpu", "log_every": 1, "loss": {"proj_hidden": 8}}
    for name, cfg in (("teacher", teacher), ("bank", bank), ("distill", student)):
        (job / f"{name}.yaml").write_text(yaml.safe_dump(cfg))


def _teacher(job: Path, out: Path, *overrides: str) -> TeacherTrainer:
    cfg = load_config(TeacherConfig, job / "teacher.yaml", list(overrides))
    return TeacherTrainer(cfg, load_data(cfg.data), out, data_fingerprint(cfg.data), quiet=True)


def _student_state(trainer: DistillTrainer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.contiguous() for k, v in trainer.model.state_dict().items()}  # (channels-last)
    return dict(state, **{f"proj.{k}": v.contiguous() for k, v in trainer.proj.state_dict().items()})


def _worker(job: Path) -> None:
    """What each torchrun rank runs: the same calls (and CLI verb) as one process would."""
    from clareps.cli import main

    rank = int(os.environ["RANK"])
    teacher = _teacher(job, job / "teacher2")
    teacher.train()
    save_file(teacher.model.state_dict(), str(job / f"teacher-rank{rank}.safetensors"))
    sys.argv = ["clareps", "bank", "build", "-c", str(job / "bank.yaml"), "--out", str(job / "bank2"), "-q"]
    main()
    student = DistillTrainer(load_config(DistillConfig, job / "distill.yaml"), job / "student2", quiet=True)
    result = student.train()
    assert result["step"] == student.total_steps  # every rank gets the final result
    save_file(_student_state(student), str(job / f"student-rank{rank}.safetensors"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    job = tmp_path_factory.mktemp("torchrun")
    _configs(job)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), __file__, str(job)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return job, proc.stdout


def _assert_close(a: dict, b: dict, atol: float, what: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol), f"{what}: {k} differs by " \
            f"{(a[k].float() - b[k].float()).abs().max():.2e}"


def test_ddp_teacher_ranks_agree_and_match_one_process(two_ranks, tmp_path, one_thread):
    job, _ = two_ranks
    rank0, rank1 = (load_file(str(job / f"teacher-rank{r}.safetensors")) for r in (0, 1))
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
    single = _teacher(job, tmp_path / "one")
    single.train()
    _assert_close(single.model.state_dict(), rank0, 1e-6, "teacher")
    assert [r["step"] for r in read_jsonl(job / "teacher2" / "metrics.jsonl")] == [1, 2]  # rank 0 alone wrote
    losses = [r["loss"] for r in read_jsonl(tmp_path / "one" / "metrics.jsonl")]
    assert np.allclose(losses, [r["loss"] for r in read_jsonl(job / "teacher2" / "metrics.jsonl")], rtol=1e-5)


def test_teacher_resumes_on_another_world_size(two_ranks, tmp_path, one_thread):
    job, _ = two_ranks
    shutil.copytree(job / "teacher2", tmp_path / "resumed")  # 2 steps on 2 ranks, then 2 more on one
    resumed = _teacher(job, tmp_path / "resumed", "steps=4")
    resumed.train(resume=True)
    straight = _teacher(job, tmp_path / "straight", "steps=4")
    straight.train()
    assert resumed.step == 4
    _assert_close(straight.model.state_dict(), resumed.model.state_dict(), 1e-6, "model")
    _assert_close(straight.ema.state_dict(), resumed.ema.state_dict(), 1e-6, "ema")


def test_two_rank_bank_equals_one_rank_bank(two_ranks, tmp_path, one_thread):
    job, stdout = two_ranks
    assert stdout.count("bank: ") == 1  # rank 0 reports
    assert sorted(p.name for p in (job / "bank2" / "shards").glob("*.safetensors")) == \
        [f"shard-{i:05d}.safetensors" for i in range(4)]
    one, _ = build_bank(load_config(BankConfig, job / "bank.yaml"), tmp_path / "bank1", quiet=True)
    two = load_file(str(job / "bank2" / "bank.safetensors"))
    for name in ("images", "features", "latents", "singular_values", "labels", "source_index"):
        assert torch.equal(getattr(one, name), two[name]), name


def test_student_ranks_agree_and_match_one_process(two_ranks, tmp_path, one_thread):
    job, _ = two_ranks
    rank0, rank1 = (load_file(str(job / f"student-rank{r}.safetensors")) for r in (0, 1))
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k  # BatchNorm buffers included
    single = DistillTrainer(load_config(DistillConfig, job / "distill.yaml"), tmp_path / "one", quiet=True)
    single.train()
    assert single.total_steps == 3
    _assert_close(_student_state(single), rank0, 1e-4, "student")
    assert (job / "student2" / "student.safetensors").exists()


def test_single_process_helpers_are_no_ops():
    ctx = distributed.context()
    assert (ctx.rank, ctx.world, ctx.main) == (0, 1, True)
    assert ctx.shard(7) == slice(0, 7)
    x = torch.randn(3, requires_grad=True)
    assert distributed.gather(x) is x and distributed.mean(x) is x
    with pytest.raises(ClarepsError, match="does not split evenly over 2 processes"):
        distributed.Context(rank=1, world=2).shard(7, "batch_size")
    assert distributed.Context(rank=1, world=2).shard(8) == slice(4, 8)
    net = distributed.convert_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)))
    assert isinstance(net[1], distributed.GlobalBatchNorm2d)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
