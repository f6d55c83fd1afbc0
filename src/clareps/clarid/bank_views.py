"""What a built bank looks like: its metrics (metrics.json) and figures, written beside it by
``bank build | show | sweep``."""

from __future__ import annotations

from pathlib import Path

import torch

from clareps.clarid.bank import BankConfig
from clareps.clarid.bank_format import Bank, load_bank
from clareps.clarid.metrics import bank_metrics
from clareps.data.spec import load_data
from clareps.errors import ClarepsError
from clareps.classifiers.background_judge import train_background_judge
from clareps.classifiers.shape_judge import load_judge
from clareps.io import load_tensors, write_json
from clareps.grids import save_grid


def measure_bank(folder: str | Path, cfg: BankConfig, judge_path: str | Path) -> dict:
    """Compute the bank's metrics against the shape judge and write ``metrics.json``."""
    folder = Path(folder)
    bank = load_bank(folder)
    train = load_data(cfg.data)
    judge, judge_meta = load_judge(judge_path)
    inputs = folder / "input_features.safetensors"
    input_feats = load_tensors(inputs)[0]["input_features"] if inputs.exists() else None
    bg_judge = train_background_judge(train) if train.masks is not None and (bank.source_index >= 0).all() else None
    metrics = bank_metrics(bank, train, judge, input_feats, bg_judge)
    metrics.update(judge=str(judge_path), seconds_per_item=float(bank.seconds.mean()),
                   total_seconds=float(bank.seconds.sum()), bank_kind=bank.meta.get("bank_kind"),
                   k=bank.meta.get("k"), t_e=bank.meta.get("t_e"), w=bank.meta.get("w"), tap=bank.meta.get("tap"),
                   **{key: bank.meta.get("config", {}).get("clarid", {}).get(key)
                      for key in ("directions", "match_removed_norm", "feature_label", "w_to_te")})
    write_json(folder / "metrics.json", metrics)
    return metrics


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
    for bank, name in zip(banks, names):
        s = bank.singular_values
        if s.shape[1] == 0:
            continue
        mean, std = s.mean(0), s.std(0) if len(s) > 1 else torch.zeros(s.shape[1])
        ranks = torch.arange(1, s.shape[1] + 1)
        ax.plot(ranks, mean, label=name)
        ax.fill_between(ranks, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("rank")
    ax.set_ylabel("singular value of J (mean ± std over items)")
    ax.legend()
    fig.tight_layout()
    atomic_write(out, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return out
