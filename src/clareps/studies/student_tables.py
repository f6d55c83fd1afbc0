"""A study's tables over its students beyond ``aggregate``'s (``clareps study table per-class | probe | paired``).

- per-class: for each class, each method's mean over seeds of a per-class measure, then each CaDistill
  label minus ce (and cadistill minus control), paired by seed, with their 95 % intervals (a class's 100
  test images make these wide: read them as where to look, not as verdicts). From evaluation files.
- probe: per method, the linear CKA between its students' penultimate features and the teacher's features
  on each held-out bank (``clareps probe``'s probe.json; mean ± std over seeds), then, paired by seed, each
  CaDistill label minus each baseline. An interval reads "higher", "lower" or "no detectable difference":
  CKA describes where a student moved, it is not a score.
- paired: any methods of an aggregate's results.json against any others, as ``aggregate`` pairs the
  CaDistill labels (the same seeds, 95 % t-intervals, verdicts and rows as results.md).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from clareps.data.foregrounds import ANIMAL_CLASSES
from clareps.distill.methods import BASELINES, method_rank
from clareps.errors import ClarepsError
from clareps.evaluate.aggregate import LOWER_IS_BETTER, metric_order, paired_markdown
from clareps.evaluate.paired import interval_text, paired_difference, paired_table, treated
from clareps.evaluate.suite import FORMAT
from clareps.io import read_json


def _at_budget(rob: dict, block: str, eps_255: float) -> list | None:
    if block not in rob or eps_255 not in rob["budgets_255"]:
        return None
    return rob[block]["per_class"][rob["budgets_255"].index(eps_255)]


PER_CLASS = {  # name -> (per-class values of one evaluation file, lower is better)
    "clean acc, mixed-rand (%)": (lambda r: r["clean"]["variants"]["test-mixed-rand"]["per_class"], False),
    "background gap (points)": (lambda r: r["clean"]["bg_gap_per_class"], True),
    "worst case of the fast attacks at 2/255 (%)": (lambda r: _at_budget(r["robustness"], "worst_case_fast", 2.0),
                                                    False),
}


def per_class_cells(paths: list[str | Path], measure: str) -> dict[str, list[dict]]:
    """{method: [per class {"seeds": [...], "values": [...]}]} of one measure of ``PER_CLASS``."""
    get, _ = PER_CLASS[measure]
    out: dict[str, list[dict]] = {}
    for path in paths:
        run = read_json(path)
        try:
            values = get(run)
        except KeyError:
            values = None
        if values is None:
            raise ClarepsError(f"{path}: no per-class values for {measure!r} (evaluated in another mode?)")
        per_class = out.setdefault(run["method"], [{"seeds": [], "values": []} for _ in values])
        for cell, value in zip(per_class, values):
            if value is not None:
                cell["seeds"].append(run["train_seed"])
                cell["values"].append(value)
    return out


def per_class_table(by_method: dict[str, list[dict]], measure: str) -> str:
    lower = PER_CLASS[measure][1]
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


def per_class_tables(paths: list[str | Path]) -> str:
    """Every measure's per-class table."""
    return "\n".join(per_class_table(per_class_cells(paths, m), m) for m in PER_CLASS)


# -- the CKA probe --------------------------------------------------------------------------------------
DIRECTION = {"better": "higher", "worse": "lower"}  # paired_difference's words, for a measure with no good side


def label_and_seed(path: Path, probe: dict) -> tuple[str, int]:
    """Read from the files beside the probe.json (an archive keeps no weights, and the student path it
    names may be gone): the method label of its evaluation, since a variant's student calls itself by its
    base method (cadistill-matched's is `cadistill`), else the student's method; the seed of result.json."""
    folder = path.parent
    # eval.json (full mode) or eval-<mode>.json, told from their maps' sidecars by the format
    evals = [e for f in sorted(folder.glob("eval*.json")) if (e := read_json(f)).get("format") == FORMAT]
    label = evals[0]["method"] if evals else probe["method"]
    result = folder / "result.json"
    if not result.exists():
        result = Path(probe["student"]).parent / "result.json"
    if not result.exists():
        raise ClarepsError(f"{path}: no result.json beside it or beside its student, so no seed")
    return label, read_json(result)["seed"]


def probe_cells(paths: list[str | Path]) -> dict[str, dict[str, dict]]:
    """{bank: {method label: {"seeds": [...], "values": [...]}}} from probe.json files."""
    out: dict[str, dict[str, dict]] = {}
    for path in paths:
        probe = read_json(path)
        label, seed = label_and_seed(Path(path), probe)
        for bank, row in probe["banks"].items():
            if not row["held_out"]:
                raise ClarepsError(f"{path}: bank {bank} is the one the student trained on, not held out")
            cell = out.setdefault(bank, {}).setdefault(label, {"seeds": [], "values": []})
            cell["seeds"].append(seed)
            cell["values"].append(row["cka"])
    return out


def probe_table(by_bank: dict[str, dict[str, dict]]) -> str:
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


# -- any methods of an aggregate, paired ----------------------------------------------------------------
def paired_results(results: str | Path, methods: list[str], against: list[str]) -> str:
    """``methods`` against ``against`` in an aggregate's results.json, paired by seed, as results.md's rows."""
    agg = read_json(results)
    missing = sorted(set(methods + against) - set(agg["methods"]))
    if missing:
        raise ClarepsError(f"{results} has no method {', '.join(missing)} (it has {', '.join(agg['methods'])})")
    metrics = {m: agg["metrics"][m] for m in sorted(agg["metrics"], key=metric_order)}  # JSON keeps keys sorted
    paired = paired_table(metrics, LOWER_IS_BETTER, tuple(methods), tuple(against))
    return paired_markdown(dict(agg, metrics=metrics, paired=paired))
