"""Teacher training: eps-prediction with label dropout, EMA, AdamW, exact resume."""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field

from clareps import distributed
from clareps.config import Seed, StrictModel, to_plain
from clareps.data.imageset import ImageSet
from clareps.data.spec import DataSpec
from clareps.device import Precision, autocast, cpu_capability, cpu_model, resolve_precision
from clareps.diffusion.checkpoint import save_teacher
from clareps.diffusion.schedule import Schedule
from clareps.diffusion.teacher import from_images
from clareps.diffusion.unet import UNet, UNetConfig
from clareps.errors import ClarepsError
from clareps.io import append_jsonl, load_tensors, read_json, read_jsonl, save_tensors, write_json, write_jsonl
from clareps.paths import TEACHER_FILE
from clareps.progress import progress_bar
from clareps.runs import RunContract
from clareps.state import restore_training, training_tensors

RUN_CONTROL_KEYS = ("steps", "ckpt_every", "log_every", "device")


class TeacherConfig(StrictModel):
    data: DataSpec = Field(default_factory=DataSpec)
    model: UNetConfig = Field(default_factory=UNetConfig)
    T: int = Field(1000, ge=2)
    steps: int = Field(20000, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(4e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup: int = Field(500, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    label_dropout: float = Field(0.1, ge=0, lt=1)
    ema_decay: float = Field(0.9995, ge=0, lt=1)
    hflip: bool = True
    precision: Precision = "auto"
    seed: Seed = 0
    ckpt_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)
    device: str = "auto"


def teacher_contract(cfg: TeacherConfig, run_dir: str | Path, record: str = "config.yaml") -> RunContract:
    """The teacher run's contract: its hash covers everything that changes the result (not how long or
    where it runs). The teacher's sidecar (``record="teacher.json"``) keeps the hash too, with the step."""
    return RunContract(run_dir, "a teacher run", to_plain(cfg), leave_out=RUN_CONTROL_KEYS, record=record)


def teacher_finished(cfg: TeacherConfig, run_dir: str | Path) -> bool:
    """``run_dir`` holds this config's teacher, trained to its last step."""
    sidecar = teacher_contract(cfg, run_dir, record="teacher.json")
    return sidecar.matches() and sidecar.stored().get("step", 0) >= cfg.steps


class TeacherTrainer:
    def __init__(self, cfg: TeacherConfig, data: ImageSet, run_dir: str | Path,
                 data_fingerprint: str = "", quiet: bool = False):
        if data.num_classes != cfg.model.num_classes:
            raise ClarepsError(f"data has {data.num_classes} classes, model.num_classes is "
                               f"{cfg.model.num_classes}")
        if tuple(data.images.shape[1:]) != (cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size):
            raise ClarepsError(f"images of shape {tuple(data.images.shape[1:])} do not fit the model "
                               f"(in_channels={cfg.model.in_channels}, image_size={cfg.model.image_size})")
        if cfg.batch_size > len(data.labels):
            raise ClarepsError(f"batch_size {cfg.batch_size} is larger than the data ({len(data.labels)} images)")
        self.cfg, self.quiet = cfg, quiet
        self.run_dir = Path(run_dir)
        self.contract = teacher_contract(cfg, self.run_dir)
        self.dist, self.device = distributed.setup(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)  # this machine's, recorded per device
        self.dist.shard(cfg.batch_size, "batch_size")  # refuses a global batch that does not split
        self.labels = data.labels.to(self.device)
        self.data_fingerprint = data_fingerprint
        torch.manual_seed(cfg.seed)
        self.model = UNet(cfg.model, Schedule.cosine(cfg.T)).to(self.device)
        self.images = from_images(self.model, data.images.to(self.device))
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.net = distributed.wrap_ddp(self.model, self.device)  # the model itself in one process
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0

    # -- batches ---------------------------------------------------------------------------
    def _batch_indices(self, step: int) -> torch.Tensor:
        """The data order is a pure function of (seed, step), so resume needs no saved sampler."""
        n, bs = len(self.labels), self.cfg.batch_size
        per_epoch = max(1, n // bs)
        epoch, pos = divmod(step, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch))
        return perm[pos * bs:(pos + 1) * bs]

    def _train_step(self) -> float:
        cfg = self.cfg
        idx = self._batch_indices(self.step)
        b = idx.shape[0]
        # Every rank draws the global batch's randomness and keeps its own slice of it.
        t = torch.randint(0, cfg.T, (b,), generator=self.gen)
        noise = torch.randn((b, *self.images.shape[1:]), generator=self.gen)
        drop = torch.rand(b, generator=self.gen) < cfg.label_dropout
        flip = torch.rand(b, generator=self.gen) < 0.5 if cfg.hflip else torch.zeros(b, dtype=torch.bool)
        mine = self.dist.shard(b)
        idx, t, noise, drop, flip = idx[mine], t[mine], noise[mine], drop[mine], flip[mine]
        x0, y = self.images[idx.to(self.device)], self.labels[idx.to(self.device)].clone()
        t, noise, drop, flip = (v.to(self.device) for v in (t, noise, drop, flip))
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        y[drop] = self.model.null_class
        xt = self.model.schedule.add_noise(x0, t, noise)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (self.step + 1) / max(1, cfg.warmup))
        with autocast(self.device, self.precision):
            loss = F.mse_loss(self.net(xt, t, y).float(), noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        decay = min(cfg.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.model.parameters()), 1 - decay)
        self.step += 1
        return loss.detach()

    # -- artifacts ---------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.safetensors"

    @property
    def teacher_path(self) -> Path:
        return self.run_dir / TEACHER_FILE

    def _meta(self) -> dict:
        return {"config_hash": self.contract.hash, "step": self.step,
                "data_fingerprint": self.data_fingerprint}

    def save_checkpoint(self) -> None:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise ClarepsError(f"the weights became NaN/inf by step {self.step}; nothing was saved, the "
                               "last good checkpoint is kept (lower lr or use precision fp32)")
        if not self.dist.main:
            return
        tensors, groups = training_tensors({"model": self.model, "ema": self.ema}, self.opt)
        tensors["rng"] = self.gen.get_state()
        save_tensors(self.ckpt_path, tensors, dict(self._meta(), param_groups=groups))
        save_teacher(self.teacher_path, self.ema, self._meta())
        self._record_train_info()

    def load_checkpoint(self) -> None:
        tensors, meta = load_tensors(self.ckpt_path)
        if meta.get("config_hash") != self.contract.hash:
            raise ClarepsError(f"checkpoint {self.ckpt_path} was made with another config; "
                               "use a new --out directory")
        restore_training(tensors, meta["param_groups"], {"model": self.model, "ema": self.ema}, self.opt,
                         self.device, str(self.ckpt_path))
        self.gen.set_state(tensors["rng"])
        self.step = int(meta["step"])

    def prepare_run_dir(self, resume: bool) -> None:
        """Refuse a run dir holding another config; resume a partial run when asked."""
        self.contract.refuse_other("use a new --out directory, or --set those keys as the run has them")
        if self.ckpt_path.exists() and resume:
            self.load_checkpoint()
            if self.dist.main and self.step < self.cfg.steps:
                print(f"resuming from step {self.step} of {self.cfg.steps} ({self.ckpt_path})", file=sys.stderr)
            rows = [r for r in read_jsonl(self.run_dir / "metrics.jsonl") if r.get("step", 0) <= self.step] \
                if (self.run_dir / "metrics.jsonl").exists() else []
            if self.dist.main:
                write_jsonl(self.run_dir / "metrics.jsonl", rows)
        elif self.ckpt_path.exists():
            raise ClarepsError(f"{self.run_dir} already holds a checkpoint at step "
                               f"{load_tensors(self.ckpt_path)[1]['step']}; pass --resume or use a new --out")
        if self.dist.main:
            self.contract.write()
        distributed.barrier()

    def train(self, resume: bool = True) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.prepare_run_dir(resume)
        cfg, losses, t0 = self.cfg, [], time.time()
        self._clock, self._clock_step = t0, self.step
        self.model.train()
        with progress_bar("teacher", total=cfg.steps, completed=self.step,
                          quiet=self.quiet or not self.dist.main) as advance:
            while self.step < cfg.steps:
                losses.append(self._train_step())
                advance(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    loss = distributed.mean(torch.stack(losses).mean()).item()
                    if self.dist.main:
                        append_jsonl(self.run_dir / "metrics.jsonl", {
                            "step": self.step, "loss": loss, "lr": self.opt.param_groups[0]["lr"],
                            "sec_per_step": (time.time() - t0) / len(losses)})
                    losses, t0 = [], time.time()
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
        if not self.teacher_path.exists():
            self.save_checkpoint()
        distributed.barrier()  # every rank returns once the artifacts exist
        return self.teacher_path

    def _record_train_info(self) -> None:
        """Accumulate wall time and steps up to each checkpoint, per device, across resumed sessions."""
        now = time.time()
        seconds, self._clock = now - getattr(self, "_clock", now), now
        steps, self._clock_step = self.step - getattr(self, "_clock_step", self.step), self.step
        path = self.run_dir / "train_info.json"
        info = read_json(path) if path.exists() else {"wall_seconds": 0.0}
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else \
            f"CPU ({cpu_model()}, {cpu_capability()}, {os.cpu_count()} cores)"
        by_device = info.setdefault("by_device", {})
        entry = by_device.setdefault(name, {"seconds": 0.0, "steps": 0})
        entry["seconds"] += seconds
        entry["steps"] = entry.get("steps", 0) + steps
        entry["precision"] = self.precision
        command = " ".join(["clareps"] + sys.argv[1:])
        commands = info.get("commands") or ([info["command"]] if "command" in info else [])
        info["commands"] = commands if commands[-1:] == [command] else commands + [command]
        info.update(wall_seconds=info["wall_seconds"] + seconds, command=command,
                    device=name, processes=self.dist.world, torch=torch.__version__, steps=self.step,
                    threads=torch.get_num_threads(), parameters=sum(p.numel() for p in self.model.parameters()))
        write_json(path, info)

