"""Per-item measures of banks of the same items, as one JSON file (what the selectivity study's
slopes and bootstrap read; `bank compare` keeps only means and intervals).

    python scripts/selectivity_items.py --out ITEMS.json NAME=BANK [NAME=BANK ...]
"""

from __future__ import annotations

import argparse

from clareps.clarid.bank_format import load_bank
from clareps.io import write_json
from clareps.paths import default_judge
from clareps.studies.bank_compare import MEASURES, _items

RECORD = ("removed_share", "engine_iterations", "engine_converged")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("banks", nargs="+", help="NAME=FOLDER")
    args = ap.parse_args()
    out, ref = {"banks": {}}, None
    for spec in args.banks:
        name, folder = spec.split("=", 1)
        metrics, items = _items(folder, default_judge(), None)
        bank = load_bank(folder)
        if ref is None:
            ref = items
            out["source_index"] = [int(v) for v in items["source_index"]]
            out["labels"] = [int(v) for v in items["labels"]]
        elif items["source_index"].tolist() != out["source_index"]:
            raise SystemExit(f"{folder} holds other items than the first bank")
        measures = {m: [float(v) for v in items[m]] for m, _ in MEASURES if m in items}
        measures.update({r: [float(v) for v in bank.record[r]] for r in RECORD if r in bank.record})
        out["banks"][name] = {"folder": str(folder), "config_hash": bank.meta.get("config_hash"),
                              "teacher_sha256": bank.meta.get("teacher_sha256"), "measures": measures}
    write_json(args.out, out)


if __name__ == "__main__":
    main()
