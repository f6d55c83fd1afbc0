"""The wide tables of the CLARID study (docs/studies/clarid.md) from ``bank compare --out``'s JSON files: one
row per measure, the reference (Jacobian) bank's value, then per other bank its value and the paired
difference (other - reference) with its 95 % interval over items (``clareps study table clarid``).
"""

from __future__ import annotations

import re
from pathlib import Path

from clareps.io import read_json

SHORT = {"class_correct": "class consistency", "shape_iou": "shape IoU", "bg_source_kept": "bg source kept",
         "bg_change": "bg change", "fg_change": "fg change", "bg_minus_fg_change": "bg − fg change",
         "tint_shift": "tint shift", "texture_change": "texture change", "ami_features": "AMI (features)",
         "probe_correct": "linear probe (features)", "removed_share": "removed share of ‖x_te‖"}


def choice(bank: str, reference: str = "") -> str:
    """What a bank of the study changed: its directions, the null-class features, a tap other than the reference's."""
    m = re.search(r"_k(\d+)_w[\d.]+_plain(_(?!null_)[a-z-]+)?(_null)?_tap-(.+)$", bank)
    if m is None:
        return bank
    ref_tap = reference.rsplit("_tap-", 1)[-1]
    name = "control (k = 0)" if m.group(1) == "0" else (m.group(2) or "_jacobian")[1:]
    return name + (", null-class features" if m.group(3) else "") + (f", tap {m.group(4)}" if m.group(4) != ref_tap else "")


def clarid_table(path: str | Path) -> str:
    data = read_json(path)
    rows = data["rows"]
    banks = list(dict.fromkeys(r["bank"] for r in rows))
    reference = data["reference"].rsplit("/", 1)[-1]
    head = ["measure", choice(reference, reference)] + [choice(b, reference) for b in banks]
    lines = [f"`{reference}` against each other choice (other − reference [95 % CI])", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for measure, label in SHORT.items():
        cells = [r for r in rows if r["measure"] == measure]
        if not cells:
            continue
        line = [label, f"{cells[0]['reference']:.3f}"]
        for bank in banks:
            r = next((c for c in cells if c["bank"] == bank), None)
            if r is None:
                line.append("–")
            elif r["low"] is None:
                line.append(f"{r['other']:.3f}")
            else:
                line.append(f"{r['other']:.3f} ({r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}])")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines) + "\n"
