"""Do two runs of a study reach the same verdicts? (``clareps study table agree``)

Two aggregates (``results.json`` of ``clareps aggregate`` or ``clareps study assemble``), e.g. a study and
its rerun with a cheaper recipe: for each metric and each comparison (``cadistill-vs-ce``, ...), both
paired intervals and verdicts side by side and whether the verdicts are the same; and per metric the claim
verdict, which holds when every comparison says "better". Absolute values are not compared: the two runs
may train different students by design. A metric given as ``REFERENCE_KEY=RERUN_KEY`` reads one measure under
two names (a rerun without AutoAttack calls the worst case of the fast attacks ``robust/worst@...``).
"""

from __future__ import annotations

from pathlib import Path

from clareps.errors import ClarepsError
from clareps.evaluate.aggregate import label, metric_order
from clareps.evaluate.paired import interval_text
from clareps.io import read_json

SHORT = {"no detectable difference": "no difference"}  # the other verdicts read as they are


def _paired(path: str | Path, comparisons: list[str], metrics: list[str]) -> dict:
    """results.json's paired table, checked to hold every comparison and metric."""
    paired = read_json(path).get("paired") or {}
    for name in comparisons:
        if name not in paired:
            raise ClarepsError(f"{path} has no comparison {name} (it has {', '.join(sorted(paired)) or 'none'})")
        missing = [m for m in metrics if m not in paired[name]]
        if missing:
            raise ClarepsError(f"{path}: {name} has no metric {missing[0]}")
    return paired


def _claim(paired: dict, comparisons: list[str], metric: str) -> str:
    return "holds" if all(paired[c][metric]["verdict"] == "better" for c in comparisons) else "does not hold"


def agreement(reference: str | Path, rerun: str | Path, comparisons: list[str], metrics: list[str]) -> dict:
    """{"rows": [per metric and comparison: both intervals, both verdicts, same], "claims": [per metric],
    "differing": how many verdicts (comparison and claim) differ}."""
    keys = [(m.split("=", 1)[0], m.split("=", 1)[-1]) for m in metrics]  # (reference key, rerun key)
    ref, new = _paired(reference, comparisons, [a for a, _ in keys]), _paired(rerun, comparisons, [b for _, b in keys])
    rows, claims = [], []
    for key, rerun_key in sorted(keys, key=lambda k: metric_order(k[0])):
        for c in comparisons:
            a, b = ref[c][key], new[c][rerun_key]
            rows.append({"metric": key, "rerun_metric": rerun_key, "comparison": c, "reference": interval_text(a),
                         "reference_verdict": SHORT.get(a["verdict"], a["verdict"]), "rerun": interval_text(b),
                         "rerun_verdict": SHORT.get(b["verdict"], b["verdict"]), "same": a["verdict"] == b["verdict"]})
        claim_a, claim_b = _claim(ref, comparisons, key), _claim(new, comparisons, rerun_key)
        claims.append({"metric": key, "reference": claim_a, "rerun": claim_b, "same": claim_a == claim_b})
    differing = sum(not r["same"] for r in rows) + sum(not c["same"] for c in claims)
    return {"rows": rows, "claims": claims, "differing": differing}


def agreement_markdown(result: dict) -> str:
    lines = ["| metric | comparison | reference, 95 % CI | verdict | rerun, 95 % CI | verdict | same |",
             "|---|---|---:|---|---:|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {label(r['metric'])} | {r['comparison'].replace('-vs-', ' − ')} | {r['reference']} | "
                     f"{r['reference_verdict']} | {r['rerun']} | {r['rerun_verdict']} | "
                     f"{'yes' if r['same'] else '**no**'} |")
    lines += ["", "| metric | claim, reference | claim, rerun | same |", "|---|---|---|---|"]
    for c in result["claims"]:
        lines.append(f"| {label(c['metric'])} | {c['reference']} | {c['rerun']} | {'yes' if c['same'] else '**no**'} |")
    n = len(result["rows"]) + len(result["claims"])
    lines += ["", f"{result['differing']} of {n} verdicts differ (a claim holds when every comparison is better)."]
    return "\n".join(lines) + "\n"
