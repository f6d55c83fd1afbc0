"""The selectivity study's steps (docs/studies/selectivity.md) that are not ``bank sweep`` or ``bank compare``.

- ``bank_items``: the per-item measures of banks of the same items as one JSON file (what the study's
  slopes and bootstrap read; ``bank compare`` keeps only means and intervals).
- ``choose_settings``: each direction family's setting, picked on the validation items by the study's rule.
- ``teacher_with_metadata``: a teacher file from the repository's history with its metadata inside (the
  oldest ones kept it in the JSON sidecar only).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from clareps.errors import ClarepsError
from clareps.io import HEADER_KEY, read_json, save_tensors

RECORD = ("removed_share", "engine_iterations", "engine_converged")  # the bank's own per-item record, kept too


def bank_items(banks: dict[str, Path], judge: Path, mask_judge: Path | None = None) -> dict:
    """{"source_index", "labels", "banks": {name: {"folder", "config_hash", "teacher_sha256", "measures"}}}:
    every measure of ``clareps.studies.bank_compare.item_measures`` per item, for banks of the same items."""
    from clareps.bank.format import load_bank
    from clareps.studies.bank_compare import MEASURES, item_measures

    out: dict = {"banks": {}}
    for name, folder in banks.items():
        _, items = item_measures(folder, judge, mask_judge)
        bank = load_bank(folder)
        if "source_index" not in out:
            out["source_index"] = [int(v) for v in items["source_index"]]
            out["labels"] = [int(v) for v in items["labels"]]
        elif items["source_index"].tolist() != out["source_index"]:
            raise ClarepsError(f"{folder} holds other items than the first bank")
        measures = {m: [float(v) for v in items[m]] for m, _ in MEASURES if m in items}
        measures.update({r: [float(v) for v in bank.record[r]] for r in RECORD if r in bank.record})
        out["banks"][name] = {"folder": str(folder), "config_hash": bank.meta.get("config_hash"),
                              "teacher_sha256": bank.meta.get("teacher_sha256"), "measures": measures}
    return out


# -- choosing a family's setting on the validation items ----------------------------------------------
FAMILY_FOLDER = re.compile(r"^(?P<kind>[a-z-]+)_(?P<setting>[a-z_]+)-(?P<value>[0-9.]+)$")  # KIND_SETTING-VALUE
REFERENCES = {"control": "te0.5_k0_w3_plain_tap-mid", "low-frequency": "te0.5_k16_w3_plain_low-frequency_tap-mid",
              "jacobian": "te0.5_k16_w3_plain_tap-mid"}  # under VALIDATION/references (a bank sweep)


def _read(folder: Path) -> dict:
    m = read_json(folder / "metrics.json")
    return {k: m[k] for k in ("class_consistency", "shape_iou", "bg_source_kept")}


def choose_settings(val: Path) -> dict:
    """Each family's setting among the banks VALIDATION/<kind>_<setting>-<value>. A setting qualifies when its
    class consistency is within 2 points of the k = 0 control's and its shape IoU is at least 0.85; among
    those, the lowest share of backgrounds whose source is kept wins. When none qualifies, the setting with
    the largest advantage over the low-frequency control wins: (low-frequency's background kept - its own)
    + (its shape IoU - low-frequency's). Ties: the first in grid order (the order of the folders)."""
    refs = Path(val) / "references"
    missing = [str(refs / f) for f in REFERENCES.values() if not (refs / f / "metrics.json").exists()]
    if missing:
        raise ClarepsError(f"no reference bank metrics at {', '.join(missing)} (a bank sweep into {refs})")
    out = {name: _read(refs / folder) for name, folder in REFERENCES.items()}
    control, low = out["control"], out["low-frequency"]
    out.update(settings={}, chosen={})

    def grid_order(p: Path) -> tuple:
        m = FAMILY_FOLDER.match(p.name)
        return p.name.split("_")[0], float(m["value"]) if m else 0.0

    for folder in sorted(Path(val).iterdir(), key=grid_order):
        m = FAMILY_FOLDER.match(folder.name)
        if m is None or not (folder / "metrics.json").exists():
            continue
        r = dict(_read(folder), setting=m["setting"], value=m["value"])
        r["qualifies"] = r["class_consistency"] >= control["class_consistency"] - 0.02 and r["shape_iou"] >= 0.85
        r["advantage"] = (low["bg_source_kept"] - r["bg_source_kept"]) + (r["shape_iou"] - low["shape_iou"])
        out["settings"].setdefault(m["kind"], []).append(r)
    for kind, rows in out["settings"].items():
        ok = [r for r in rows if r["qualifies"]]
        best = min(ok, key=lambda r: r["bg_source_kept"]) if ok else max(rows, key=lambda r: r["advantage"])
        out["chosen"][kind] = {"setting": best["setting"], "value": best["value"],
                               "by": "qualifies, least background kept" if ok else "largest advantage over low-frequency"}
    return out


# -- a teacher of the repository's history ------------------------------------------------------------
def teacher_with_metadata(raw: Path, sidecar: Path, out: Path) -> Path:
    """``raw`` (a teacher .safetensors) re-saved to ``out`` with ``sidecar``'s metadata inside, by
    ``clareps.io.save_tensors`` (the same tensors); a file that has its metadata already is copied as is."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(raw), "pt") as fh:
        inside = HEADER_KEY in (fh.metadata() or {})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if inside:  # already complete: copy as is
        shutil.copyfile(raw, out)
        shutil.copyfile(sidecar, out.with_suffix(".json"))
        return out
    meta = {k: v for k, v in json.loads(Path(sidecar).read_text()).items()
            if k not in ("tensors_sha256", "tensors_digest", "clareps_version")}
    return save_tensors(out, load_file(str(raw)), meta)
