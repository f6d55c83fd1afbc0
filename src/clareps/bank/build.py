"""Building a canonical bank: items planned per class, processed in shards, merged.

Every item's randomness (its noise latent and the engine's start vectors) is keyed by
(seed, item index), and shards have a fixed size, so a bank does not depend on how the
shards were scheduled: one process, a resumed run, or several ranks give the same bytes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field, model_serializer, model_validator

from clareps import distributed
from clareps.adapters import teacher_fingerprint
from clareps.bank.format import RECORD, Bank, load_bank, save_bank
from clareps.clarid.canonical import (ClaridConfig, canonicalize, feature_labels, feature_map, features,
                                      matched_latents, random_latents, timestep)
from clareps.clarid.directions import ControlInputs, donors, engine_k, no_removal
from clareps.clarid.oracle import OracleConfig, OracleImages
from clareps.config import Seed, StrictModel, to_plain
from clareps.data.imageset import ImageSet
from clareps.data.spec import DataSpec, data_fingerprint, load_data
from clareps.device import hardware, resolve_precision
from clareps.diffusion.teacher import pixel_shape
from clareps.adapters.loading import load_teacher_any
from clareps.errors import ClarepsError
from clareps.io import load_tensors, read_json, save_tensors
from clareps.paths import default_teacher
from clareps.progress import progress_bar
from clareps.runs import RunContract, refuse_foreign_folder, without

BankKind = Literal["canonical", "control", "feat-real", "oracle"]


class BankConfig(StrictModel):
    teacher: str | None = None  # a clareps .safetensors or a diffusers folder (see adapters); default: shipped
    # an external teacher's label for each data class (a subset)
    teacher_classes: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1)
    data: DataSpec = Field(default_factory=DataSpec)
    kind: BankKind = "canonical"
    fraction: float = Field(0.1, gt=0, le=1)
    per_class: int | None = Field(None, ge=1)  # overrides fraction: this many items per class
    source: Literal["random", "matched"] = "random"
    clarid: ClaridConfig = Field(default_factory=ClaridConfig)
    seed: Seed = 0
    shard_size: int = Field(10, ge=1)
    device: str = "auto"
    oracle: OracleConfig | None = None  # kind oracle: which background, which pass (None: the defaults)

    @model_validator(mode="after")
    def _oracle_only_for_oracle(self):
        if self.oracle is not None and self.kind != "oracle":
            raise ValueError(f"oracle settings apply to kind: oracle only (this bank is kind: {self.kind})")
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_oracle(self, handler):
        # left out unless set, so the configs and hashes of the other kinds do not change
        return {k: v for k, v in handler(self).items() if k != "oracle" or v is not None}


def resolved(cfg: BankConfig) -> BankConfig:
    """Apply what the kind implies: control means k = 0; feat-real and oracle mean matched, k = 0."""
    update: dict = {"teacher": cfg.teacher or str(default_teacher())}
    if cfg.kind in ("control", "feat-real", "oracle"):
        update["clarid"] = cfg.clarid.model_copy(update={"k": 0})
    if cfg.kind in ("feat-real", "oracle"):
        update["source"] = "matched"
    if cfg.kind == "oracle":
        update["oracle"] = cfg.oracle or OracleConfig()
    return cfg.model_copy(update=update)


BANK_MARKERS = ("bank.json", "shards")  # a folder with either holds (part of) a bank
NOT_HASHED = ("device", "teacher")  # where it runs; the teacher counts by its content hash, not its path


def bank_contract(cfg: BankConfig, out: str | Path, teacher_sha: str, data_fp: str) -> RunContract:
    """A bank folder's contract, kept in bank.json: the config, the teacher's and the data's hashes."""
    def as_hashed(meta: dict) -> dict:
        return {"cfg": without(meta.get("config") or {}, NOT_HASHED), "teacher": meta.get("teacher_sha256"),
                "data": meta.get("data_fingerprint")}

    hashed = {"cfg": without(to_plain(cfg), NOT_HASHED), "teacher": teacher_sha, "data": data_fp}
    return RunContract(out, "a bank", hashed, record="bank.json", as_hashed=as_hashed,
                       differs_in="config, teacher or data")


def plan(data: ImageSet, cfg: BankConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, source_index) of every item: ``fraction`` of each class, -1 for random items."""
    gen = torch.Generator().manual_seed(cfg.seed)
    labels, sources = [], []
    for c in range(data.num_classes):
        members = (data.labels == c).nonzero().flatten()
        n = cfg.per_class or max(1, round(cfg.fraction * len(members)))
        if n > len(members) and cfg.source == "matched":
            raise ClarepsError(f"class {c} has {len(members)} images, fewer than the {n} asked for")
        labels.append(torch.full((n,), c, dtype=torch.long))
        if cfg.source == "matched":
            sources.append(members[torch.randperm(len(members), generator=gen)[:n]])
        else:
            sources.append(torch.full((n,), -1, dtype=torch.long))
    return torch.cat(labels), torch.cat(sources)


def _item_noise(seed: int, item: int, shape: tuple, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + item)
    return torch.randn(shape, generator=gen), torch.randn((k, *shape), generator=gen)


class BankBuilder:
    def __init__(self, cfg: BankConfig, out: str | Path, quiet: bool = False):
        self.cfg = resolved(cfg)
        self.out, self.quiet = Path(out), quiet
        refuse_foreign_folder(self.out, "a bank", markers=BANK_MARKERS)
        self.dist, self.device = distributed.setup(self.cfg.device)
        self.sampler_precision = resolve_precision(self.cfg.clarid.sampler_precision, self.device)
        self.teacher_path = self.cfg.teacher
        self.model, self.teacher_meta = load_teacher_any(self.teacher_path, self.device, self.cfg.teacher_classes)
        self.data = load_data(self.cfg.data)
        self.oracle = OracleImages(self.cfg.data, self.data, self.cfg.oracle) if self.cfg.kind == "oracle" else None
        if self.data.num_classes != self.model.cfg.num_classes:
            raise ClarepsError(f"data has {self.data.num_classes} classes, the teacher "
                               f"{self.model.cfg.num_classes} (set teacher_classes to pick a subset)")
        if tuple(self.data.images.shape[1:]) != pixel_shape(self.model):
            raise ClarepsError(f"images of shape {tuple(self.data.images.shape[1:])} do not fit the teacher, "
                               f"which makes {pixel_shape(self.model)}")
        latent_dim = self.model.cfg.in_channels * self.model.cfg.image_size ** 2
        if self.cfg.clarid.k > latent_dim:
            raise ClarepsError(f"clarid.k={self.cfg.clarid.k} exceeds the teacher's latent dimension {latent_dim}")
        self.teacher_sha = teacher_fingerprint(self.teacher_path)
        self.data_fp = data_fingerprint(self.cfg.data)
        self.contract = bank_contract(self.cfg, self.out, self.teacher_sha, self.data_fp)
        self.hash = self.contract.hash
        self.labels, self.sources = plan(self.data, self.cfg)
        if self.cfg.clarid.directions == "mask-oracle" and self.cfg.clarid.k > 0 and \
                (self.cfg.source != "matched" or self.data.masks is None):
            raise ClarepsError("directions 'mask-oracle' needs matched sources from data with masks")
        self.donors = donors(self.labels) if self.cfg.clarid.directions == "shuffled" else None
        self._tap_shapes: dict[str, list[int]] = {}  # tap -> one item's output shape there

    def meta(self) -> dict:
        c = self.cfg
        return {"config": to_plain(c), "config_hash": self.hash, "teacher": str(self.teacher_path),
                "teacher_sha256": self.teacher_sha, "data_fingerprint": self.data_fp,
                "class_names": self.data.class_names, "num_classes": self.data.num_classes,
                "bank_kind": c.kind, "source": c.source, "k": c.clarid.k, "t_e": c.clarid.t_e,
                "w": c.clarid.w, "tap": c.clarid.tap, "size": len(self.labels),
                "sampler_precision_resolved": self.sampler_precision,
                "feature_shape": self.feature_shape(),
                **({"oracle": to_plain(c.oracle)} if c.oracle is not None else {})}

    def feature_shape(self, tap: str | None = None) -> list[int]:
        """Shape of one item's output at ``tap`` (default: the config's) before flattening, e.g. [64, 8, 8]
        for ``mid``; a tap the forward never reaches is refused here. Known without a forward once this
        builder has built a shard; else one forward on a zero latent (no image to encode)."""
        tap = tap or self.cfg.clarid.tap
        if tap not in self._tap_shapes:
            m = self.model.cfg
            x = torch.zeros(1, m.in_channels, m.image_size, m.image_size, device=self.device)
            self._tap_shapes[tap] = list(feature_map(self.model, x, 0, self.labels[:1].to(self.device), tap).shape[1:])
        return self._tap_shapes[tap]

    def shard_ranges(self) -> list[range]:
        n, s = len(self.labels), self.cfg.shard_size
        return [range(i, min(i + s, n)) for i in range(0, n, s)]

    def _shard_path(self, index: int) -> Path:
        return self.out / "shards" / f"shard-{index:05d}.safetensors"

    def _shard_done(self, index: int) -> bool:
        side = self._shard_path(index).with_suffix(".json")
        return side.exists() and read_json(side).get("config_hash") == self.hash

    def finished_shards(self) -> list[tuple[range, dict[str, torch.Tensor]]]:
        """The shards of this config built so far (a build stopped early, or one under way): each one's
        items and tensors, in item order."""
        return [(r, load_tensors(self._shard_path(i))[0]) for i, r in enumerate(self.shard_ranges())
                if self._shard_done(i)]

    def build_shard(self, index: int, items: range) -> None:
        c, idx = self.cfg, torch.tensor(list(items))
        y = self.labels[idx].to(self.device)
        m = self.model.cfg
        shape = (m.in_channels, m.image_size, m.image_size)  # the space the teacher diffuses in
        n_init = engine_k(c.clarid.directions, c.clarid.k)
        noise, init = zip(*(_item_noise(c.seed, i, shape, n_init) for i in items))
        start = time.perf_counter()
        x_te, real = self._latents(idx, torch.stack(noise))
        t = timestep(self.model, c.clarid)
        if c.kind == "feat-real" or (self.oracle is not None and c.oracle.oracle_pass == "image"):
            # f(x_te): no projection, no decoding; the images are the (edited) real ones
            f_te = features(self.model, x_te, t, feature_labels(self.model, y, c.clarid), c.clarid.tap)
            # a copy: safetensors refuses two entries that share storage
            out = {"latents": x_te, "images": real, "features": f_te.clone(), "input_features": f_te,
                   "singular_values": x_te.new_zeros(len(idx), 0), "record": no_removal(len(idx))}
        else:  # canonicalize hands back f(x_te) too, read by the engine's own forward where one ran at x_te
            init_t = torch.stack(init).to(self.device) if c.clarid.k > 0 else None
            out = canonicalize(self.model, x_te, y, c.clarid, init=init_t, controls=self._controls(idx, shape))
        other = c.clarid.model_copy(update={"feature_label": "null" if c.clarid.feature_label == "class" else "class"})
        other_map = feature_map(self.model, out["latents"], t, feature_labels(self.model, y, other), c.clarid.tap)
        self._tap_shapes.setdefault(c.clarid.tap, list(other_map.shape[1:]))  # meta's feature_shape, for free
        seconds = torch.full((len(idx),), (time.perf_counter() - start) / len(idx))
        tensors = {"images": out["images"], "features": out["features"],
                   "other_features": other_map.flatten(1).float(), "labels": y,
                   "source_index": self.sources[idx], "latents": out["latents"],
                   "singular_values": out["singular_values"], "seconds": seconds,
                   "input_features": out["input_features"], **out["record"]}
        save_tensors(self._shard_path(index), tensors, {"config_hash": self.hash, "shard": index,
                                                        "items": [items.start, items.stop]})

    def _latents(self, idx: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x_te of the items idx (and their real images, matched source); noise: their Gaussian draws."""
        c, y = self.cfg, self.labels[idx].to(self.device)
        if c.source == "matched":
            src = self.sources[idx]
            real = (self.oracle.edit(src) if self.oracle is not None else self.data.images[src]).to(self.device)
            return matched_latents(self.model, real, y, c.clarid), real
        return random_latents(self.model, y, c.clarid, noise.to(self.device)), None

    def _controls(self, idx: torch.Tensor, shape: tuple) -> ControlInputs:
        """Seeds for random directions; for shuffled ones, each donor's x_te, labels and start vectors."""
        c = self.cfg
        seeds = torch.tensor([c.seed * 1_000_003 + int(i) for i in idx])
        if c.clarid.directions == "mask-oracle" and c.clarid.k > 0:
            return ControlInputs(item_seeds=seeds, masks=self.data.masks[self.sources[idx]].to(self.device))
        if self.donors is None or c.clarid.k == 0:
            return ControlInputs(item_seeds=seeds)
        d = self.donors[idx]
        noise, init = zip(*(_item_noise(c.seed, int(i), shape, c.clarid.k) for i in d))
        x_d, _ = self._latents(d, torch.stack(noise))
        return ControlInputs(item_seeds=seeds, donor_latents=x_d, donor_init=torch.stack(init).to(self.device),
                             donor_labels=feature_labels(self.model, self.labels[d].to(self.device), c.clarid))

    def build(self, rank: int = 0, world: int = 1) -> list[int]:
        """Build this rank's missing shards (shard i belongs to rank i % world)."""
        self.contract.refuse_other("use a new --out folder")
        mine = [(i, r) for i, r in enumerate(self.shard_ranges()) if i % world == rank]
        todo = [(i, r) for i, r in mine if not self._shard_done(i)]
        with progress_bar("bank", total=sum(len(r) for _, r in mine),
                          completed=sum(len(r) for i, r in mine if (i, r) not in todo),
                          quiet=self.quiet or rank != 0) as advance:
            for i, r in todo:
                self.build_shard(i, r)
                advance(len(r))
        return [i for i, _ in mine]

    def merge(self, timing: dict | None = None) -> Bank:
        """Concatenate all shards into bank.safetensors (written last, atomically); the items'
        seconds go to timing.json, with ``timing``."""
        parts = []
        for i, _ in enumerate(self.shard_ranges()):
            if not self._shard_done(i):
                raise ClarepsError(f"shard {i} of {self.out} is missing; rerun `clareps bank build`")
            parts.append(load_tensors(self._shard_path(i))[0])
        # shards made before the engine record existed lack it: a resumed bank keeps what all share
        cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0] if all(k in p for p in parts)}
        input_features = cat.pop("input_features")
        record = {k: cat.pop(k) for k in RECORD if k in cat}
        bank = Bank(**cat, record=record, meta=self.meta())
        save_tensors(self.out / "input_features.safetensors", {"input_features": input_features},
                     {"config_hash": self.hash})
        save_bank(self.out, bank, timing)
        return bank

    def is_complete(self) -> bool:
        return self.contract.matches()


def build_bank(cfg: BankConfig, out: str | Path, quiet: bool = False) -> tuple[Bank, bool]:
    """Build (or reuse, or resume) a bank; returns it and whether it was reused.

    Under torchrun each rank builds its shards (shard i on rank i % world), then rank 0 merges.
    """
    builder = BankBuilder(cfg, out, quiet)
    if builder.is_complete():
        return load_bank(out), True
    ctx = builder.dist
    builder.build(ctx.rank, ctx.world)
    distributed.barrier()
    if ctx.main:
        hw = hardware(builder.device, builder.cfg.clarid.sampler_precision)
        bank = builder.merge({"device": str(builder.device), "processes": ctx.world, "hardware": hw})
    distributed.barrier()
    return (bank if ctx.main else load_bank(out)), False
