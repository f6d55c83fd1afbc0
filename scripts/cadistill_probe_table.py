"""The CKA table of docs/studies/cadistill.md from `clareps probe`'s probe.json files (scripts/cadistill_probe.sh):
per method, the linear CKA between its students' penultimate features and the teacher's features on each
held-out bank (mean ± std over seeds), then, paired by seed, cadistill and cadistill-matched minus ce and
minus control with their 95 % intervals. A method that learned the canonical geometry scores higher than
ce on the canonical bank, and higher on the canonical bank than on the control bank. An interval reads
"higher", "lower" or "no detectable difference": CKA describes where a student moved, it is not a score.

    python scripts/cadistill_probe_table.py runs/studies/cadistill/students/*/probe.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from clareps.evaluate.aggregate import method_rank
from clareps.evaluate.paired import BASELINES, interval_text, paired_difference, treated
from clareps.evaluate.suite import FORMAT

DIRECTION = {"better": "higher", "worse": "lower"}  # paired_difference's words, for a measure with no good side


def label_and_seed(path: Path, probe: dict) -> tuple[str, int]:
    """Read from the files beside the probe.json (a study's archive keeps no weights, and the student path
    it names may be gone): the method label of its evaluation, since a variant's student calls itself by
    its base method (cadistill-matched's is `cadistill`), else the student's method; the seed of result.json."""
    folder = path.parent
    # eval.json (full mode) or eval-<mode>.json, told from their maps' sidecars by the format
    evals = [e for f in sorted(folder.glob("eval*.json")) if (e := json.loads(f.read_text())).get("format") == FORMAT]
    label = evals[0]["method"] if evals else probe["method"]
    result = folder / "result.json"
    if not result.exists():
        result = Path(probe["student"]).parent / "result.json"
    if not result.exists():
        raise SystemExit(f"{path}: no result.json beside it or beside its student, so no seed")
    return label, json.loads(result.read_text())["seed"]


def cells(paths: list[str]) -> dict[str, dict[str, dict]]:
    """{bank: {method label: {"seeds": [...], "values": [...]}}} from probe.json files."""
    out: dict[str, dict[str, dict]] = {}
    for path in paths:
        probe = json.loads(Path(path).read_text())
        label, seed = label_and_seed(Path(path), probe)
        for bank, row in probe["banks"].items():
            if not row["held_out"]:
                raise SystemExit(f"{path}: bank {bank} is the one the student trained on, not held out")
            cell = out.setdefault(bank, {}).setdefault(label, {"seeds": [], "values": []})
            cell["seeds"].append(seed)
            cell["values"].append(row["cka"])
    return out


def table(by_bank: dict[str, dict[str, dict]]) -> str:
    banks = list(by_bank)
    methods = sorted({m for b in banks for m in by_bank[b]}, key=method_rank)
    lines = ["| method | " + " | ".join(f"CKA, {b} bank" for b in banks) + " | seeds |",
             "|---|" + "---:|" * len(banks) + "---:|"]
    for m in methods:
        row = []
        for b in banks:
            values = by_bank[b].get(m, {}).get("values", [])
            sd = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            row.append(f"{statistics.mean(values):.3f}{sd}" if values else "")
        n = max(len(by_bank[b].get(m, {}).get("values", [])) for b in banks)
        lines.append(f"| {m} | " + " | ".join(row) + f" | {n} |")
    paired = []
    for m in treated(methods):
        for base in BASELINES:
            if m == base:
                continue
            diffs = [paired_difference(by_bank[b][m], by_bank[b][base])
                     if m in by_bank[b] and base in by_bank[b] else None for b in banks]
            if any(d is not None for d in diffs):
                paired.append(f"| {m} − {base} | " + " | ".join(
                    f"{interval_text(d)} ({DIRECTION.get(d['verdict'], d['verdict'])})" if d else "" for d in diffs) + " |")
    if paired:  # none until a CaDistill student and its baseline share a seed
        lines += ["", "| paired by seed | " + " | ".join(f"{b} bank, 95 % CI (points of CKA x 100)" for b in banks)
                  + " |", "|---|" + "---:|" * len(banks), *paired]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print(table(cells(sys.argv[1:])), end="")
