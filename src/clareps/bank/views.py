"""What a built bank looks like: its metrics (metrics.json) and figures, written beside it by
``bank build | show | sweep``."""

from __future__ import annotations

from pathlib import Path

import torch

from clareps.bank.format import BANK_FILE, Bank, load_bank
from clareps.bank.metrics import METRICS_VERSION, bank_measures
from clareps.config import build_config
from clareps.data.spec import DataSpec, load_data
from clareps.errors import ClarepsError
from clareps.classifiers.background_judge import train_background_judge
from clareps.classifiers.mask_judge import load_mask_judge
from clareps.classifiers.shape_judge import load_judge
from clareps.io import hash_file, load_tensors, read_json, save_tensors, sidecar_path, write_json
from clareps.grids import save_grid
from clareps.paths import default_mask_judge

METRICS_FILE = "metrics.json"
ITEMS_FILE = "items.safetensors"  # the per-item measures behind metrics.json


def bank_data_spec(meta: dict, folder: str | Path) -> DataSpec:
    """The data a bank was built from, as its bank.json (``meta``) records it."""
    return build_config(DataSpec, meta["config"]["data"], f"{folder}/bank.json")


def mask_judge_for(path: str | Path | None, spec: DataSpec) -> Path | None:
    """The mask judge to use: the one given, else the shipped one for the default benchmark (if present)."""
    if path is not None:
        return Path(path)
    shipped = default_mask_judge()
    fits = spec.kind == "benchmark" and spec.benchmark.size % 4 == 0  # the net pools twice
    return shipped if fits and shipped.is_file() else None


def _weights_id(path: Path | None) -> str | None:
    """The hash of a judge's weights file (from its sidecar when there is one)."""
    if path is None:
        return None
    side = sidecar_path(path)
    recorded = read_json(side).get("tensors_sha256") if side.exists() else None
    return recorded or hash_file(path)


def _judges(judge_path: str | Path, mask_path: Path | None) -> dict:
    """Which judges measured a bank, by their weights' hashes (a moved checkout is the same judge)."""
    return {"metrics_version": METRICS_VERSION, "judge_sha256": _weights_id(Path(judge_path)),
            "mask_judge_sha256": _weights_id(mask_path)}


def _judge_paths(judge_path: str | Path, mask_path: Path | None) -> dict:
    """Where the judges were, for people reading metrics.json (not in items.safetensors: its bytes
    must not depend on where the checkout lies)."""
    return {"judge": str(judge_path), "mask_judge": None if mask_path is None else str(mask_path)}


def measure_bank(folder: str | Path, judge_path: str | Path, mask_judge_path: str | Path | None = None) -> dict:
    """Compute the bank's metrics against the shape judge (and the mask judge, when there is one) and
    write ``metrics.json``. Reads only the bank folder and the data its bank.json names."""
    folder = Path(folder)
    bank = load_bank(folder)
    spec = bank_data_spec(bank.meta, folder)
    train = load_data(spec)
    judge, _ = load_judge(judge_path)
    mask_path = mask_judge_for(mask_judge_path, spec)
    mask_judge = load_mask_judge(mask_path)[0] if mask_path is not None else None
    inputs = folder / "input_features.safetensors"
    input_feats = load_tensors(inputs)[0]["input_features"] if inputs.exists() else None
    judge_backgrounds = train.masks is not None and train.bg_source is not None \
        and ((bank.source_index >= 0).all() or mask_judge is not None)
    bg_judge = train_background_judge(train) if judge_backgrounds else None
    metrics, items = bank_measures(bank, train, judge, input_feats, bg_judge, mask_judge)
    metrics.update(_judges(judge_path, mask_path), **_judge_paths(judge_path, mask_path),
                   seconds_per_item=float(bank.seconds.mean()), total_seconds=float(bank.seconds.sum()),
                   bank_kind=bank.meta.get("bank_kind"),
                   source=bank.meta.get("source"),
                   k=bank.meta.get("k"), t_e=bank.meta.get("t_e"), w=bank.meta.get("w"), tap=bank.meta.get("tap"),
                   **{key: bank.meta.get("config", {}).get("clarid", {}).get(key)
                      for key in ("directions", "match_removed_norm", "feature_label", "w_to_te")})
    save_tensors(folder / ITEMS_FILE, {k: v.contiguous() for k, v in items.items()}, _judges(judge_path, mask_path))
    write_json(folder / METRICS_FILE, metrics)  # last: a metrics.json newer than the bank vouches for both
    return metrics


def ensure_metrics(folder: str | Path, judge_path: str | Path, mask_judge_path: str | Path | None = None,
                   force: bool = False) -> tuple[dict, bool]:
    """The bank's metrics and whether they were reused: metrics.json is recomputed from the bank
    itself (never rebuilt) when it is missing, older than the bank, of an older metrics version, or
    made with other judges."""
    folder = Path(folder)
    side, bank_file = folder / METRICS_FILE, folder / BANK_FILE
    if not bank_file.exists():
        raise ClarepsError(f"no bank at {folder} (missing {BANK_FILE}; build it with `clareps bank build`)")
    fresh = side.exists() and (folder / ITEMS_FILE).exists() and side.stat().st_mtime >= bank_file.stat().st_mtime
    if not force and fresh:
        old = read_json(side)
        spec = bank_data_spec(read_json(sidecar_path(bank_file)), folder)
        if all(old.get(k) == v for k, v in _judges(judge_path, mask_judge_for(mask_judge_path, spec)).items()):
            return old, True
    return measure_bank(folder, judge_path, mask_judge_path), False


def bank_items(folder: str | Path, judge_path: str | Path,
               mask_judge_path: str | Path | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """The bank's metrics and its per-item measures (both computed first when stale)."""
    metrics, _ = ensure_metrics(folder, judge_path, mask_judge_path)
    return metrics, load_tensors(Path(folder) / ITEMS_FILE)[0]


def comparison_grid(banks: list[Bank], names: list[str], train, out: Path, per_class: int = 4) -> Path:
    """Per class, ``per_class`` items: one row per bank (originals first when matched)."""
    num_classes = train.num_classes
    rows, labels = [], []
    first = banks[0]
    per_class = min(per_class, int(torch.bincount(first.labels, minlength=num_classes).min()))
    if per_class == 0:
        raise ClarepsError("the bank lacks items of some class; nothing to compare")
    for c in range(num_classes):
        idx = (first.labels == c).nonzero().flatten()[:per_class]
        if (first.source_index[idx] >= 0).all():
            rows.append(train.images[first.source_index[idx]])
            labels.append(f"{train.class_names[c]} original")
        for bank, name in zip(banks, names):
            rows.append(bank.images[idx])
            labels.append(f"{train.class_names[c]} {name}")
    return save_grid(torch.cat(rows), out, nrow=per_class, row_labels=labels)


def spectra_plot(banks: list[Bank], names: list[str], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clareps.io import atomic_write

    fig, ax = plt.subplots(figsize=(5, 3.2))
    plotted = 0
    for bank, name in zip(banks, names):
        s = bank.singular_values
        if s.shape[1] == 0:  # no Jacobian spectrum (k = 0, an oracle bank)
            continue
        plotted += 1
        mean, std = s.mean(0), s.std(0) if len(s) > 1 else torch.zeros(s.shape[1])
        ranks = torch.arange(1, s.shape[1] + 1)
        ax.plot(ranks, mean, label=name)
        ax.fill_between(ranks, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("rank")
    ax.set_ylabel("singular value of J (mean ± std over items)")
    if plotted:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no bank here holds a Jacobian spectrum", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    atomic_write(out, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return out
