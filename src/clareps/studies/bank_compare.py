"""``bank compare``: banks built from the same items, compared item by item against a reference.

The CLARID study's banks of one (t_e, k) hold the same matched items (the same sources, seeds and
classes); they differ only in what was removed from x_te. So each measure is compared per item,
other minus reference, and the mean difference gets a 95 % t-interval over items (the items are
the units: the interval says what another draw of items from this data would give, for this
teacher). ``bg_minus_fg_change`` is the per-item selectivity: background change less foreground
change (above 0: the background moved more than the animal). Class separability of the features is
compared the same way through ``probe_correct`` per item (the linear probe's out-of-fold verdict, the
same folds in every bank); the k-means AMI stays a bank-level number (a bootstrap would refit k-means
on 4096-wide features hundreds of times, and duplicated items bias it).
"""

from __future__ import annotations

from pathlib import Path

import torch

from clareps.bank.views import bank_items
from clareps.errors import ClarepsError
from clareps.evaluate.paired import paired_difference
from clareps.tables import markdown_table

# (measure, what a higher value means)
MEASURES = (
    ("class_correct", "the shape judge names the class"),
    ("shape_iou", "the animal's shape kept (mask judge IoU with the source mask)"),
    ("bg_source_kept", "the source's background still recognised"),
    ("bg_change", "mean |change| in the background"),
    ("fg_change", "mean |change| in the foreground"),
    ("bg_minus_fg_change", "background changed more than foreground"),
    ("tint_shift", "the animal's mean colour moved"),
    ("texture_change", "the animal's texture changed (tint removed)"),
    ("probe_correct", "a linear probe on the features names the class (out of fold)"),
)
BANK_LEVEL = ("ami_features", "probe_features_shuffled", "removed_share")


def item_measures(folder: Path, judge: Path, mask_judge: Path | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """A bank's metrics and its per-item measures (each a tensor over its items, in bank order): the judges'
    verdicts and changes (``clareps.bank.views.bank_items``), ``bg_minus_fg_change``, the labels and
    the linear probe's out-of-fold ``probe_correct``; what ``compare_banks`` pairs item by item."""
    from clareps.bank.format import load_bank
    from clareps.measures import probe_correct

    metrics, items = bank_items(folder, judge, mask_judge)
    if "bg_change" in items and "fg_change" in items:
        items["bg_minus_fg_change"] = items["bg_change"] - items["fg_change"]
    bank = load_bank(folder)
    items["labels"] = bank.labels
    correct = probe_correct(bank.features, bank.labels)
    if correct is not None:
        items["probe_correct"] = correct
    return metrics, items


def _cell(values: torch.Tensor) -> dict:
    return {"seeds": list(range(len(values))), "values": [float(v) for v in values]}


def _item_keys(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A bank's (source_index, labels), read alone from its file: what says which items it holds."""
    from safetensors import SafetensorError, safe_open

    from clareps.bank.format import BANK_FILE, load_bank

    try:
        with safe_open(str(Path(folder) / BANK_FILE), "pt") as fh:
            return fh.get_tensor("source_index"), fh.get_tensor("labels")
    except (SafetensorError, OSError, KeyError, ValueError):  # an unreadable or odd file: the full load says what is wrong with it, in one line
        bank = load_bank(folder)
        return bank.source_index, bank.labels


def refuse_other_items(folders: list[Path]) -> None:
    """Banks of other items cannot be compared item by item: refused before any bank is measured."""
    ref_sources, ref_labels = _item_keys(folders[0])
    for folder in folders[1:]:
        sources, labels = _item_keys(folder)
        if not (sources.shape == ref_sources.shape and torch.equal(sources, ref_sources)
                and labels.shape == ref_labels.shape and torch.equal(labels, ref_labels)):
            raise ClarepsError(f"{folder} holds other items than {folders[0]}: compare banks of one sweep "
                               "(same data, per_class, seed and source)")


def compare_banks(folders: list[Path], judge: Path, mask_judge: Path | None = None) -> list[dict]:
    """One row per (other bank, measure): both means, the paired difference (other - reference, the
    reference being ``folders[0]``), its 95 % interval over the items and whether it holds 0."""
    if len(folders) < 2:
        raise ClarepsError("bank compare needs a reference bank and at least one other")
    refuse_other_items(folders)
    ref_metrics, ref = item_measures(folders[0], judge, mask_judge)
    rows = []
    for folder in folders[1:]:
        metrics, other = item_measures(folder, judge, mask_judge)
        for name, meaning in MEASURES:
            if name not in ref or name not in other:
                continue
            d = paired_difference(_cell(other[name]), _cell(ref[name]))
            verdict = {"better": "higher", "worse": "lower"}.get(d["verdict"], d["verdict"])
            rows.append({"bank": folder.name, "measure": name, "reference": float(ref[name].mean()),
                         "other": float(other[name].mean()), "difference": d["mean"], "low": d["low"],
                         "high": d["high"], "items": d["n"], "verdict": verdict, "meaning": meaning})
        for name in BANK_LEVEL:
            if ref_metrics.get(name) is not None and metrics.get(name) is not None:
                rows.append({"bank": folder.name, "measure": name, "reference": ref_metrics[name],
                             "other": metrics[name], "difference": metrics[name] - ref_metrics[name],
                             "low": None, "high": None, "items": metrics.get("items"),
                             "verdict": "bank-level (no interval)", "meaning": ""})
    return rows


def compare_grid(folders: list[Path], out: Path, per_class: int = 2) -> Path:
    """One row per bank (the sources first, when matched), the same ``per_class`` items of each class
    in every row, so a column shows one item under each choice."""
    from clareps.bank.format import load_bank
    from clareps.bank.views import bank_data_spec
    from clareps.data.spec import load_data
    from clareps.grids import save_grid

    banks = [load_bank(f) for f in folders]
    labels = banks[0].labels
    idx = torch.cat([(labels == c).nonzero().flatten()[:per_class] for c in labels.unique()])
    rows = [b.images[idx] for b in banks]
    names = [f"k={b.meta.get('k')} " + (b.meta.get("config", {}).get("clarid", {}).get("directions", "jacobian")
                                       if b.meta.get("k") else "control") for b in banks]
    if (banks[0].source_index[idx] >= 0).all():
        train = load_data(bank_data_spec(banks[0].meta, folders[0]))
        rows, names = [train.images[banks[0].source_index[idx]]] + rows, ["sources"] + names
    return save_grid(torch.cat(rows), out, nrow=len(idx), row_labels=names)


def compare_markdown(folders: list[Path], rows: list[dict]) -> str:
    head = (f"reference: `{folders[0]}`; each row: another bank minus the reference, per item, mean and 95 % "
            "t-interval over the items\n\n")
    return head + markdown_table(rows, ("bank", "measure", "reference", "other", "difference", "low", "high",
                                        "items", "verdict")) + "\n"
