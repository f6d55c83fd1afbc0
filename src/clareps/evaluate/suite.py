"""The evaluation suite: one student checkpoint -> one results dict (and JSON file).

Every block says which split, how many images, how they were picked and with which seed. Subsets
are balanced and nested: each class's images are shuffled once with the eval seed and a subset of
k per class takes the first k, so AutoAttack's images lie inside PGD's, which lie inside the
full set, and every student of a study sees the same images.
"""

from __future__ import annotations

import hashlib
import platform
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_serializer
from torch import nn

from clareps.config import Seed, StrictModel, build_config, override, read_yaml, to_plain
from clareps.data.imageset import ImageSet
from clareps.data.spec import DataSpec, data_fingerprint, load_data
from clareps.device import resolve_device
from clareps.errors import ClarepsError
from clareps.evaluate.background import VARIANTS, background_metrics
from clareps.evaluate.corruptions import CorruptionConfig, evaluate_corruptions, mce
from clareps.evaluate.robustness import RobustnessConfig, evaluate_robustness
from clareps.evaluate.saliency import SaliencyConfig, evaluate_saliency
from clareps.evaluate.summary import checks, skipped, summarize
from clareps.io import hash_file, read_yaml_or_none, save_tensors, write_json
from clareps.progress import progress_bar
from clareps.runs import RunContract, config_hash

FORMAT = "clareps-eval/1"
COMPONENTS = ("clean", "robustness", "corruptions", "saliency")


class CleanConfig(StrictModel):
    variants: list[str] = Field(default_factory=lambda: list(VARIANTS))  # benchmark data; others: ["test"]
    n_images: int | None = Field(None, ge=1)  # None: every image of each variant


class EvalConfig(StrictModel):
    seed: Seed = 0  # picks the subsets, the attacks' random starts and the corruption noise
    device: str = "auto"
    batch_size: int = Field(250, ge=1)
    data: DataSpec | None = None  # None: the data the student was trained on (its run's config.yaml)
    split: str = "test-original"  # what attacks, corruptions and saliency run on ("test" off the benchmark)
    components: list[Literal["clean", "robustness", "corruptions", "saliency"]] = \
        Field(default_factory=lambda: list(COMPONENTS))
    clean: CleanConfig = Field(default_factory=CleanConfig)
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig)
    corruptions: CorruptionConfig = Field(default_factory=CorruptionConfig)
    saliency: SaliencyConfig = Field(default_factory=SaliencyConfig)
    # name -> npz file: more clean-accuracy variants (e.g. a user's own test-mixed-same / -rand / -only-fg)
    variant_files: dict[str, str] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _omit_no_variant_files(self, handler):
        # left out when empty, so the hashes of results made before the field existed still match
        return {k: v for k, v in handler(self).items() if k != "variant_files" or v}


def load_eval_config(path: str | Path, mode: str, overrides: list[str] | None = None) -> EvalConfig:
    """The ``mode`` section of a preset (full, fast, or another it names), with ``key=value``
    overrides applied to that section. Every section must be valid."""
    data = read_yaml(path)
    for name, section in data.items():
        build_config(EvalConfig, section or {}, f"{path} [{name}]")
    if mode not in data:
        raise ClarepsError(f"{path} has no '{mode}' section (it has: {', '.join(data)})")
    section = override(data[mode] or {}, overrides or [])
    return build_config(EvalConfig, section, f"{path} [{mode}]", overrides or [])


def result_name(mode: str) -> str:
    """Where a run directory keeps its results: eval.json for full mode, eval-<mode>.json otherwise."""
    return "eval.json" if mode == "full" else f"eval-{mode}.json"


# -- the student ----------------------------------------------------------------------------------
def resolve_student(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "student.safetensors"
    if not path.is_file():
        raise ClarepsError(f"no student checkpoint at {path} (give a distill run directory or a .safetensors file)")
    return path


def load_student(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """A classifier checkpoint (or a run dir holding one) as a frozen model in eval mode, and its metadata.

    Its weights are channels-last: the same function, and on CPU a forward 1.4-2.3x and a forward +
    backward 1.15-1.4x faster (benchmarks/student_forward.py), the calls every attack is made of."""
    from clareps.classifiers.checkpoint import load_classifier

    model, meta = load_classifier(resolve_student(path), device)
    return model.to(memory_format=torch.channels_last), meta


def evaluation_data(path: Path, cfg: EvalConfig) -> tuple[DataSpec, str]:
    """The data a student (its .safetensors ``path``) is evaluated on, and where that choice came from: the
    eval config's ``data``, else the data of the run config.yaml beside the student, else the default
    benchmark. An npz-trained student without test data given is refused (an npz file has no test split)."""
    if cfg.data is not None:
        return cfg.data, "eval config"
    run_cfg = read_yaml_or_none(path.parent / "config.yaml")
    if run_cfg is None or "data" not in run_cfg:
        return DataSpec(), "default benchmark (no run config.yaml beside the student)"
    spec = build_config(DataSpec, run_cfg["data"], f"{path.parent / 'config.yaml'}: data")
    if spec.kind == "npz":
        raise ClarepsError(f"{path} was trained on an npz file, which has no test split: pass the test data "
                           "with --set data.kind=npz --set data.path=TEST.npz (and variants of it with "
                           "--variant NAME=FILE.npz)")
    return spec, str(path.parent / "config.yaml")


# -- image selection ------------------------------------------------------------------------------
def class_ranks(labels: torch.Tensor, num_classes: int, seed: int) -> np.ndarray:
    """Each image's position in a seeded shuffle of its class."""
    rng = np.random.default_rng([seed, 7])
    y = labels.numpy()
    rank = np.zeros(len(y), np.int64)
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        rank[members[rng.permutation(len(members))]] = np.arange(len(members))
    return rank


def select(data: ImageSet, n: int | None, seed: int, split: str) -> tuple[np.ndarray, dict]:
    """Indices of a balanced subset of about ``n`` images (all when None), and their description."""
    if n is None or n >= len(data):
        idx = np.arange(len(data))
        how = {"selection": "all"}
    else:
        k = max(1, n // data.num_classes)
        idx = np.flatnonzero(class_ranks(data.labels, data.num_classes, seed) < k)
        how = {"selection": f"balanced: the first {k} per class of a shuffle seeded with {seed}", "per_class": k}
    sha = hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest()[:16]
    return idx, dict(how, split=split, n=len(idx), of=len(data), seed=seed, index_sha256=sha)


# -- the suite ------------------------------------------------------------------------------------
def evaluate_student(student: str | Path, cfg: EvalConfig, mode: str = "full", reference: dict | None = None,
                     maps_path: str | Path | None = None, quiet: bool = False) -> dict:
    """Evaluate one student; ``reference`` (a ``ce`` student's results) adds mCE."""
    path = resolve_student(student)
    device = resolve_device(cfg.device)
    model, meta = load_student(path, device)
    spec, spec_from = evaluation_data(path, cfg)
    bench = spec.kind == "benchmark"
    variants = (cfg.clean.variants if bench else ["test"]) + list(cfg.variant_files)
    split = cfg.split if bench else "test"
    seed, bs, t_all = cfg.seed, cfg.batch_size, time.perf_counter()
    sets = {v: load_data(DataSpec(kind="npz", path=cfg.variant_files[v], num_classes=spec.num_classes))
            if v in cfg.variant_files else load_data(spec, v) for v in dict.fromkeys([*variants, split])}
    main = sets[split]
    if main.num_classes != meta["num_classes"]:
        raise ClarepsError(f"{path} has {meta['num_classes']} classes, the data {main.num_classes}")
    fp = data_fingerprint(spec, split)
    train_fp = meta.get("data_fingerprint")
    results: dict = {
        "format": FORMAT, "mode": mode, "eval_seed": seed,
        "method": meta.get("method"), "train_seed": (meta.get("metrics") or {}).get("seed"),
        "student": {"path": str(path), "sha256": hash_file(path), "arch": meta["arch"], "width": meta.get("width"),
                    "method": meta.get("method"), "config_hash": meta.get("config_hash"), "role": meta.get("role")},
        "data": {"spec": to_plain(spec), "from": spec_from, "fingerprint": fp,
                 "matches_student": None if train_fp is None else (train_fp.split(":")[0] == fp.split(":")[0] if bench
                                                                   else train_fp == data_fingerprint(spec, "train"))},
        "config": to_plain(cfg), "config_hash": config_hash(to_plain(cfg)),
        "device": str(device), "hardware": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "seconds": {},
    }

    def timed(name, fn):
        t0 = time.perf_counter()
        value = fn()
        results["seconds"][name] = round(time.perf_counter() - t0, 2)
        return value

    if "clean" in cfg.components:
        def clean():
            subsets, images = {}, {}
            for v in variants:
                idx, images[v] = select(sets[v], cfg.clean.n_images, seed, v)
                subsets[v] = sets[v].subset(idx)
            out = background_metrics(model, subsets, bs)
            return dict(out, images=images)
        results["clean"] = timed("clean", clean)

    if "robustness" in cfg.components:
        rc = cfg.robustness
        idx, images = select(main, rc.n_images, seed, split)
        data = main.subset(idx)
        slow_idx, slow_images = select(main, rc.slow_n_images, seed, split)
        slow = torch.from_numpy(np.isin(idx, slow_idx))
        total = sum(int(slow.sum()) if a == "autoattack" else len(data) for a in rc.attacks) * len(rc.budgets_255)
        with progress_bar("attacks", total=total, quiet=quiet) as advance:
            out = timed("robustness", lambda: evaluate_robustness(
                model, data.images, data.labels, data.num_classes, rc, seed, slow, advance))
        results["robustness"] = dict(out, images=images, slow_images=slow_images)

    if "corruptions" in cfg.components:
        cc = cfg.corruptions
        idx, images = select(main, cc.n_images, seed, split)
        data = main.subset(idx)
        from clareps.data.benchmark import default_cache_dir
        cache = Path(spec.cache_dir or default_cache_dir()) / "corruptions"
        released = None
        if spec.corruption_files is not None:  # released CIFAR-10-C files: the test images' rows at idx
            from clareps.evaluate.released_corruptions import released_source
            released = released_source(spec.corruption_files, main.images, main.labels, idx)
        with progress_bar("corruptions", total=len(cc.types) * len(cc.severities), quiet=quiet) as advance:
            out = timed("corruptions", lambda: evaluate_corruptions(
                model, data.images, data.labels, cc, seed, cache, bs, advance, released))
        if reference is not None and reference.get("corruptions"):
            out.update(mce(out, reference["corruptions"]), mce_reference=reference.get("student", {}).get("path"))
        results["corruptions"] = dict(out, images=images)

    if "saliency" in cfg.components:
        sc = cfg.saliency
        if main.masks is None:
            results["saliency"] = {"skipped": f"split {split} has no foreground masks (the share of attribution "
                                              "on the foreground needs them)"}
        else:
            idx, images = select(main, sc.n_images, seed, split)
            data = main.subset(idx)
            with progress_bar("saliency", total=len(data) * len(sc.methods), quiet=quiet) as advance:
                out, maps = timed("saliency", lambda: evaluate_saliency(
                    model, data.images, data.labels, data.masks, data.num_classes, sc, advance))
            results["saliency"] = dict(out, images=images)
            if maps_path is not None and sc.save_maps:
                k = min(sc.save_maps, len(data))
                tensors = {f"maps.{m}": v for m, v in maps.items()}
                tensors.update(images=data.images[:k], masks=data.masks[:k], labels=data.labels[:k],
                               indices=torch.from_numpy(idx[:k]))
                save_tensors(maps_path, tensors, {"kind": "clareps-saliency-maps", "split": split,
                                                  "student": str(path), "eval_seed": seed})
                results["saliency"]["maps_file"] = str(maps_path)

    results["seconds"]["total"] = round(time.perf_counter() - t_all, 2)
    results["skipped"] = skipped(results)
    results["checks"] = checks(results)
    results["summary"] = summarize(results)
    return results


def write_results(results: dict, out: str | Path) -> Path:
    return write_json(out, results)


def maps_path(out: str | Path) -> Path:
    """Where the saliency maps of a results file go: beside it."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".json") + "-maps.safetensors")


def results_current(out: str | Path, student: str | Path, cfg: EvalConfig, need_mce: bool = False) -> bool:
    """Whether `out` already holds this student's results under these settings (so they can be reused)."""
    out = Path(out)
    contract = RunContract(out.parent, "an evaluation", to_plain(cfg), record=out.name)
    if not contract.matches():
        return False
    old = contract.stored()
    return (old.get("student", {}).get("sha256") == hash_file(resolve_student(student))
            and (not need_mce or old.get("corruptions", {}).get("mce") is not None))
