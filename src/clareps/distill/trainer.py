"""The distillation trainer: real batches (CE + cano), canonical batches from the bank (align + cka), each
term weighted by ``loss.weights``, or logit KD; exact resume; the teacher CDM is never called.

The data order and augmentation are pure functions of (seed, step), identical for every
method, so resuming needs no sampler state and the methods see the same real batches.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path

import torch

from clareps import distributed
from clareps.bank.format import load_bank
from clareps.config import to_plain
from clareps.data.spec import DataSpec, data_fingerprint, load_data
from clareps.classifiers.checkpoint import save_classifier
from clareps.classifiers.students import STUDENTS, make_student, spatial_path, training_memory_format
from clareps.classifiers.training import accuracy, augment
from clareps.device import autocast, resolve_precision
from clareps.distill import losses
from clareps.distill.checkpointing import prepare_run_dir, save_checkpoint
from clareps.distill.config import RUN_CONTROL_KEYS, DistillConfig, StudentConfig, recorded_before, recorded_now
from clareps.distill.methods import (carve_validation, check_bank, get_method, load_kd_teacher,
                                     select_bank, teacher_targets)
from clareps.distill.terms import StepTensors, terms_for, total
from clareps.errors import ClarepsError
from clareps.io import append_jsonl, read_json, write_json
from clareps.progress import progress_bar
from clareps.runs import RunContract, config_hash, without
from clareps.taps import get_module, tap


def _student_width(cfg: StudentConfig) -> int:
    if cfg.width is not None:
        return cfg.width
    return inspect.signature(STUDENTS[cfg.name]).parameters["width"].default


class DistillTrainer:
    def __init__(self, cfg: DistillConfig, run_dir: str | Path, quiet: bool = False):
        self.cfg, self.quiet, self.run_dir = cfg, quiet, Path(run_dir)
        self.method = get_method(cfg.method)
        if cfg.student.name not in STUDENTS:
            make_student(cfg.student.name, 1)  # raises the one-line error
        self.dist, self.device = distributed.setup(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.dist.shard(cfg.batch_size, "batch_size")  # the global batch must split over the processes
        if cfg.test_splits and cfg.data.kind == "npz":
            raise ClarepsError("data.kind=npz has no splits: give test files by name instead "
                               "(distill --test NAME=TEST.npz), or set test_splits=[]")
        missing = [p for p in cfg.test_data.values() if not Path(p).is_file()]
        if missing:
            raise ClarepsError(f"test file not found: {missing[0]}")
        if cfg.data.split in cfg.test_splits:
            raise ClarepsError(f"test_splits names the training split '{cfg.data.split}'")
        full = load_data(cfg.data)
        self.data_fingerprint = data_fingerprint(cfg.data)
        train_idx, val_idx = carve_validation(full, cfg.val_fraction, cfg.val_seed)
        self.train_set, self.val_set = full.subset(train_idx), full.subset(val_idx)
        self.num_classes = full.num_classes
        self.steps_per_epoch = len(self.train_set) // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ClarepsError(f"batch_size {cfg.batch_size} exceeds the {len(self.train_set)} training images")
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.x = self.train_set.images.to(self.device)
        self.y = self.train_set.labels.to(self.device)
        self.hashes = {"data": self.data_fingerprint}
        self.bank = None
        bank = load_bank(cfg.bank) if cfg.bank is not None else None
        if bank is not None and cfg.loss.target_label != "bank":
            bank = bank.read_with(cfg.loss.target_label)
        check_bank(self.method, bank, str(cfg.bank), full, self.data_fingerprint, cfg.expect_teacher,
                   cfg.bank_source)
        if bank is not None:
            self.hashes["bank"] = bank.meta.get("tensors_sha256", "")
            self.bank = select_bank(bank, val_idx, cfg.bank_fraction, len(full), cfg.seed)
            self._setup_bank()
            self.dist.shard(min(len(self.bank), cfg.bank_batch_size), "the canonical batch")
        torch.manual_seed(cfg.seed)  # the same student init for every method
        model = make_student(cfg.student.name, self.num_classes, width=cfg.student.width,
                             in_channels=full.images.shape[1])
        self.model = model.to(self.device, memory_format=training_memory_format(model))
        if self.dist.world > 1:  # BatchNorm over the global batch, as in one process
            self.model = distributed.convert_batchnorm(self.model)
        self.feature_path = cfg.student.feature_path or self.model.feature_path
        if self.method.distill and cfg.loss.align_on == "spatial":
            self.feature_path = spatial_path(self.model)
        get_module(self.model, self.feature_path)
        params = list(self.model.parameters())
        self.proj = None
        if self.method.distill:
            with torch.no_grad(), tap(self.model, self.feature_path) as store:
                self.model.eval()(self.x[:1])
            self.model.train()
            self.student_dim = self._pool(store["out"]).shape[1]
            self.proj = self._head(store["out"]).to(self.device)
            params += list(self.proj.parameters())
        self.terms = terms_for(self.method, cfg.loss, cfg.kd, cfg.label_smoothing)
        self.kd_teacher = None
        if self.method.kd:
            if cfg.kd.teacher is None:
                raise ClarepsError("method kd needs a classifier teacher: pass --kd-teacher PATH "
                                   "(train one with `clareps train-kd-teacher`)")
            self.kd_teacher, self.hashes["kd_teacher"] = load_kd_teacher(
                cfg.kd.teacher, self.data_fingerprint, cfg.val_fraction, cfg.val_seed, self.device)
        self.params, o = params, cfg.optim
        self.opt = (torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                                    weight_decay=o.weight_decay) if o.name == "sgd"
                    else torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay))
        self.step, self.reused = 0, False
        self.contract = self._contract()

    def _setup_bank(self) -> None:
        cfg = self.cfg
        need = 4 if cfg.loss.cka == "unbiased" else 2
        if self.method.distill and min(len(self.bank), cfg.bank_batch_size) < need:
            raise ClarepsError(f"L_cka ({cfg.loss.cka}) needs canonical batches of at least {need} items; "
                               f"bank has {len(self.bank)}, bank_batch_size is {cfg.bank_batch_size}")
        feats, protos = teacher_targets(self.bank, self.num_classes, cfg.loss.teacher_pool, cfg.loss.teacher_norm)
        self.teacher_dim = feats.shape[1]
        self.bank_x = self.bank.images.float().to(self.device)
        self.bank_y = self.bank.labels.to(self.device)
        self.bank_f, self.protos = feats.to(self.device), protos.to(self.device)

    def _contract(self) -> RunContract:
        """Its hash covers what changes the result: the config less run control and unused sections, and
        the content hashes of the data, bank and KD teacher (not their paths)."""
        unused = set(RUN_CONTROL_KEYS)
        if self.method.bank_ce and not self.method.distill:  # the bank's images as data: its batches count
            unused.add("loss")
        elif not self.method.distill:
            unused |= {"loss", "bank_fraction", "bank_source", "bank_batch_size"}
        if not self.method.kd:
            unused.add("kd")
        plain = to_plain(self.cfg)
        before = config_hash(recorded_before(plain), unused, self.hashes)  # a run folder made before loss.weights
        return RunContract(self.run_dir, "a distill run", plain, leave_out=unused, inputs=self.hashes,
                           differs_in="config or bank", accepts=[before],
                           as_hashed=lambda stored: without(recorded_now(stored), unused))

    # -- one step -------------------------------------------------------------------------------
    def _gen(self, stream: int, step: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + step) * 8 + stream)

    def _indices(self, n: int, bs: int, step: int, stream: int) -> torch.Tensor:
        per_epoch = max(1, n // bs)
        epoch, pos = divmod(step, per_epoch)
        perm = torch.randperm(n, generator=self._gen(stream, epoch))
        return perm[pos * bs:(pos + 1) * bs].to(self.device)

    def lr_at(self, step: int) -> float:
        warm = int(round(self.cfg.optim.warmup_epochs * self.steps_per_epoch))
        if step < warm:
            return self.cfg.optim.lr * (step + 1) / warm
        progress = (step - warm) / max(1, self.total_steps - warm)
        return self.cfg.optim.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    @staticmethod
    def _pool(feats: torch.Tensor) -> torch.Tensor:
        return feats.float().mean((2, 3)) if feats.dim() == 4 else feats.float().flatten(1)

    def _head(self, example: torch.Tensor) -> torch.nn.Module:
        lc = self.cfg.loss
        hidden = lc.proj_hidden if lc.head == "mlp" else 0
        if lc.align_on == "pooled":
            return losses.ProjectionHead(self.student_dim, self.teacher_dim, hidden)
        shape = self.bank.meta.get("feature_shape")
        if example.dim() != 4 or lc.teacher_pool != "none" or not shape or len(shape) != 3:
            raise ClarepsError("loss.align_on=spatial needs a student feature map, teacher_pool=none and a bank "
                               f"whose features are a (C, H, W) map (its feature_shape is {shape!r})")
        return losses.SpatialHead(example.shape[1], tuple(shape), hidden)

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg, step = self.cfg, self.step
        aug = cfg.augment
        # Every rank draws the global batches (and their augmentation) and keeps its own slice.
        idx = self._indices(len(self.y), cfg.batch_size, step, stream=0)
        mine = self.dist.shard(len(idx))
        x, y = augment(self.x[idx], self._gen(1, step), aug.crop_pad, aug.flip)[mine], self.y[idx][mine]
        b = x.shape[0]
        if self.bank is not None:  # every method with a bank: CaDistill's losses, or its images as data
            bidx = self._indices(len(self.bank_x), cfg.bank_batch_size, step, stream=2)
            xb = self.bank_x[bidx]
            if aug.bank:
                xb = augment(xb, self._gen(3, step), aug.crop_pad, aug.flip)
            bmine = self.dist.shard(len(bidx), "the canonical batch")
            x = torch.cat([x, xb[bmine]])
        with autocast(self.device, self.precision), tap(self.model, self.feature_path) as store:
            out = self.model(x).float()
        s = StepTensors(logits=out[:b], labels=y)
        if self.bank is not None and self.proj is None:
            s.bank_logits, s.bank_labels = out[b:], self.bank_y[bidx][bmine]
        if self.proj is not None:
            mapped = store["out"] if cfg.loss.align_on == "spatial" else self._pool(store["out"])
            with autocast(self.device, self.precision):
                z = self.proj(mapped).float()
            feats = self._pool(store["out"])
            s.bank_logits, s.bank_labels = out[b:], self.bank_y[bidx][bmine]
            s.z_real, s.z_bank, s.targets, s.prototypes = z[:b], z[b:], self.bank_f[bidx][bmine], self.protos
            s.feats_bank_all, s.targets_all = distributed.gather(feats[b:]), self.bank_f[bidx]
        if self.kd_teacher is not None:
            with torch.no_grad(), autocast(self.device, self.precision):
                s.teacher_logits = self.kd_teacher(x).float()
        loss, terms = total(self.terms, s)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.params)
        self.opt.step()
        self.step += 1
        return dict({k: v.detach() for k, v in terms.items()}, loss=loss.detach())

    # -- artifacts ------------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.safetensors"

    @property
    def student_path(self) -> Path:
        return self.run_dir / "student.safetensors"

    def _meta(self) -> dict:
        return {"config_hash": self.contract.hash, "step": self.step, "method": self.method.name,
                "data_fingerprint": self.data_fingerprint,
                "feature_dim": getattr(self, "teacher_dim", None)}

    def modules(self) -> dict[str, torch.nn.Module]:
        """What a checkpoint holds besides the optimizer: the student and its projection head."""
        return {"model": self.model} if self.proj is None else {"model": self.model, "proj": self.proj}

    def train(self, resume: bool = True) -> dict:
        """Train to the end (or to ``stop_at``); returns the final metrics (empty when stopped early)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        done = self.run_dir / "result.json"
        if self.contract.complete(done.name, self.student_path.name):
            self.reused = True
            return read_json(done)
        prepare_run_dir(self, resume)
        cfg, sums, n_since, t0 = self.cfg, {}, 0, time.time()
        end = min(self.total_steps, cfg.stop_at if cfg.stop_at is not None else self.total_steps)
        self.model.train()
        with progress_bar(f"distill {self.method.name}", total=self.total_steps, completed=self.step,
                          quiet=self.quiet or not self.dist.main) as advance:
            while self.step < end:
                for k, v in self.train_step().items():
                    sums[k] = sums.get(k, 0.0) + v
                n_since += 1
                advance(1)
                if self.step % cfg.log_every == 0 or self.step == end:
                    means = {k: distributed.mean(v / n_since).item() for k, v in sums.items()}
                    if self.dist.main:
                        append_jsonl(self.run_dir / "metrics.jsonl", dict(
                            means, step=self.step, epoch=self.step / self.steps_per_epoch,
                            lr=self.lr_at(self.step - 1), sec_per_step=(time.time() - t0) / n_since))
                    sums, n_since, t0 = {}, 0, time.time()
                epoch_end = self.step % self.steps_per_epoch == 0
                if epoch_end and len(self.val_set) and self.dist.main:
                    append_jsonl(self.run_dir / "metrics.jsonl", {
                        "step": self.step, "epoch": self.step // self.steps_per_epoch,
                        "val_acc": accuracy(self.model, self.val_set)})
                    self.model.train()
                if epoch_end or self.step == end or (cfg.ckpt_every and self.step % cfg.ckpt_every == 0):
                    save_checkpoint(self)
        if self.step < self.total_steps:
            return {}
        result = self._finish() if self.dist.main else {}
        distributed.barrier()  # every rank returns once the artifacts exist
        return result or read_json(done)

    def _finish(self) -> dict:
        cfg = self.cfg
        result = {"method": self.method.name, "seed": cfg.seed, "step": self.step, "precision": self.precision,
                  "val_acc": accuracy(self.model, self.val_set) if len(self.val_set) else None}
        for split in cfg.test_splits:
            result[f"test_acc/{split}"] = accuracy(self.model, load_data(cfg.data, split))
        for name, path in cfg.test_data.items():
            spec = DataSpec(kind="npz", path=path, num_classes=cfg.data.num_classes)
            result[f"test_acc/{name}"] = accuracy(self.model, load_data(spec))
        meta = {"role": "student", "arch": cfg.student.name,
                "width": _student_width(cfg.student), "in_channels": self.x.shape[1],
                "num_classes": self.num_classes, "feature_path": self.feature_path, "method": self.method.name,
                "config_hash": self.contract.hash, "inputs": self.hashes, "metrics": result,
                "data_fingerprint": self.data_fingerprint}
        save_classifier(self.student_path, self.model, meta)
        append_jsonl(self.run_dir / "metrics.jsonl", dict(result, final=True))
        write_json(self.run_dir / "result.json", result)
        return result
