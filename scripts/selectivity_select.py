"""Pick each direction family's setting on the validation items (the selectivity study's rule).

A setting qualifies when its class consistency is within 2 points of the k = 0 control's and its
shape IoU is at least 0.85; among those, the lowest share of backgrounds whose source is kept wins.
When none qualifies, the setting with the largest advantage over the low-frequency control wins:
(low-frequency's background kept - its own) + (its shape IoU - low-frequency's). Ties: the first in
grid order (the order of the folders).

    python scripts/selectivity_select.py VALIDATION_FOLDER --out chosen.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from clareps.io import write_json

FOLDER = re.compile(r"^(?P<kind>[a-z-]+)_(?P<setting>[a-z_]+)-(?P<value>[0-9.]+)$")


def read(folder: Path) -> dict:
    m = json.load(open(folder / "metrics.json"))
    return {k: m[k] for k in ("class_consistency", "shape_iou", "bg_source_kept")}


def choose(val: Path) -> dict:
    refs = val / "references"
    control = read(refs / "te0.5_k0_w3_plain_tap-mid")
    low = read(refs / "te0.5_k16_w3_plain_low-frequency_tap-mid")
    out = {"control": control, "low-frequency": low, "jacobian": read(refs / "te0.5_k16_w3_plain_tap-mid"),
           "settings": {}, "chosen": {}}
    for folder in sorted(val.iterdir(), key=lambda p: (p.name.split("_")[0], float(FOLDER.match(p.name)["value"])
                                                        if FOLDER.match(p.name) else 0.0)):
        m = FOLDER.match(folder.name)
        if m is None or not (folder / "metrics.json").exists():
            continue
        r = dict(read(folder), setting=m["setting"], value=m["value"])
        r["qualifies"] = r["class_consistency"] >= control["class_consistency"] - 0.02 and r["shape_iou"] >= 0.85
        r["advantage"] = (low["bg_source_kept"] - r["bg_source_kept"]) + (r["shape_iou"] - low["shape_iou"])
        out["settings"].setdefault(m["kind"], []).append(r)
    for kind, rows in out["settings"].items():
        ok = [r for r in rows if r["qualifies"]]
        best = min(ok, key=lambda r: r["bg_source_kept"]) if ok else max(rows, key=lambda r: r["advantage"])
        out["chosen"][kind] = {"setting": best["setting"], "value": best["value"],
                               "by": "qualifies, least background kept" if ok else "largest advantage over low-frequency"}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("validation", type=Path)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    write_json(args.out, choose(args.validation))
