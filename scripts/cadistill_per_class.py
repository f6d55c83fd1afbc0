"""The per-class tables of docs/studies/cadistill.md from the study's evaluation files: for each class, each
method's mean over seeds of a per-class measure, then each CaDistill label minus ce (and cadistill minus
control), paired by seed, with their 95 % intervals (a class's 100 test images make these wide: read them as
where to look, not as verdicts).

    python scripts/cadistill_per_class.py runs/studies/cadistill/students/*/eval-standard.json

Measures: clean accuracy on test-mixed-rand (foregrounds on random backgrounds), the background gap
(mixed-same minus mixed-rand, lower is better) and the fast attacks' worst case at 2/255 (PGD-20, CW and
APGD-CE, on every image).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from clareps.data.foregrounds import ANIMAL_CLASSES
from clareps.evaluate.aggregate import method_rank
from clareps.evaluate.paired import interval_text, paired_difference, treated


def _at_budget(rob: dict, block: str, eps_255: float) -> list | None:
    if block not in rob or eps_255 not in rob["budgets_255"]:
        return None
    return rob[block]["per_class"][rob["budgets_255"].index(eps_255)]


MEASURES = {  # name -> (per-class values of one evaluation file, lower is better)
    "clean acc, mixed-rand (%)": (lambda r: r["clean"]["variants"]["test-mixed-rand"]["per_class"], False),
    "background gap (points)": (lambda r: r["clean"]["bg_gap_per_class"], True),
    "worst case of the fast attacks at 2/255 (%)": (lambda r: _at_budget(r["robustness"], "worst_case_fast", 2.0),
                                                    False),
}


def cells(paths: list[str], measure: str) -> dict[str, list[dict]]:
    """{method: [per class {"seeds": [...], "values": [...]}]} for one measure."""
    get, _ = MEASURES[measure]
    out: dict[str, list[dict]] = {}
    for path in paths:
        run = json.loads(Path(path).read_text())
        values = get(run)
        if values is None:
            raise SystemExit(f"{path}: no per-class values for {measure!r} (evaluated in another mode?)")
        per_class = out.setdefault(run["method"], [{"seeds": [], "values": []} for _ in values])
        for cell, value in zip(per_class, values):
            if value is not None:
                cell["seeds"].append(run["train_seed"])
                cell["values"].append(value)
    return out


def table(by_method: dict[str, list[dict]], measure: str) -> str:
    lower = MEASURES[measure][1]
    methods = sorted(by_method, key=method_rank)
    # every CaDistill label against ce, and the preset's against the guidance-only control too
    pairs = [(a, b) for a in treated(by_method) for b in ("ce", "control")
             if a in by_method and b in by_method and (b == "ce" or a == "cadistill")]
    n_classes = len(next(iter(by_method.values())))
    names = list(ANIMAL_CLASSES) if n_classes == len(ANIMAL_CLASSES) else [str(c) for c in range(n_classes)]
    lines = [f"{measure}, mean over seeds" + (" (lower is better)" if lower else ""), "",
             "| " + " | ".join(["class", *methods, *(f"{a} − {b}, 95 % CI" for a, b in pairs)]) + " |",
             "|---|" + "---:|" * (len(methods) + len(pairs))]
    for c, name in enumerate(names):
        means = [by_method[m][c]["values"] for m in methods]
        row = [f"{100 * statistics.mean(v):.1f}" if v else "" for v in means]
        for a, b in pairs:
            d = paired_difference(by_method[a][c], by_method[b][c], lower_is_better=lower)
            row.append(interval_text(d) if d else "")  # no verdict: ten classes, ten chances of a false one
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("\n".join(table(cells(sys.argv[1:], m), m) for m in MEASURES), end="")
