"""What one evaluation's results say in brief: the flat metric map aggregation works on, its self-checks,
and what was skipped on this data."""

from __future__ import annotations

from clareps.evaluate.background import background_skipped


def _fmt(b: float) -> str:
    return f"{b:g}/255"


def summarize(results: dict) -> dict[str, float]:
    """The flat metric -> value map that aggregation works on."""
    s: dict[str, float] = {}
    bg = results.get("clean")
    if bg:
        s.update({f"clean/{v}": a["accuracy"] for v, a in bg["variants"].items()})
        if "bg_gap" in bg:
            s["bg/gap"] = bg["bg_gap"]
    rob = results.get("robustness")
    if rob:
        for name, a in rob["attacks"].items():
            if a.get("over", [name]) != [name]:
                continue  # a cascade's later attack: its accuracy is a worst case over it and the ones before
            s.update({f"robust/{name}@{_fmt(b)}": v for b, v in zip(rob["budgets_255"], a["accuracy"])})
        s.update({f"robust/worst@{_fmt(b)}": v for b, v in zip(rob["budgets_255"], rob["worst_case"]["accuracy"])})
        if "worst_case_fast" in rob:
            s.update({f"robust/worst-fast@{_fmt(b)}": v
                      for b, v in zip(rob["budgets_255"], rob["worst_case_fast"]["accuracy"])})
    cor = results.get("corruptions")
    if cor:
        s["corr/mean"] = cor["mean_accuracy"]
        s.update({f"corr/{t}": v for t, v in cor["per_type"].items()})
        if cor.get("mce") is not None:
            s["corr/mce"] = cor["mce"]
    sal = results.get("saliency")
    if sal and "methods" in sal:  # data without foreground masks: {"skipped": why}
        s.update({f"saliency/{m}": v["fg_share"] for m, v in sal["methods"].items()})
    return {k: v for k, v in s.items() if v is not None}


def checks(results: dict) -> dict:
    """Self-checks of the robustness block: monotone in the budget, worst case <= each attack <= clean."""
    out = {}
    rob = results.get("robustness")
    if rob:
        worst = rob["worst_case"]["accuracy"]
        out["robust_monotone_in_budget"] = not rob["monotone_violations"]
        out["worst_case_le_each_attack"] = all(
            w <= a + 1e-12 for att in rob["attacks"].values() if att["n"] == rob["worst_case"]["n"]
            for w, a in zip(worst, att["accuracy"]) if w is not None and a is not None)
        out["robust_le_clean"] = all(a <= att["clean_accuracy"] + 1e-12 for att in rob["attacks"].values()
                                     for a in att["accuracy"] if a is not None)
    return out


def skipped(results: dict) -> dict[str, str]:
    """The tests that measured nothing on this data, and why (no foreground masks, no background variants)."""
    out = {"background": background_skipped(results["clean"])} if "clean" in results else {}
    out["saliency"] = (results.get("saliency") or {}).get("skipped")
    return {k: v for k, v in out.items() if v}
