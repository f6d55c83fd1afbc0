"""Paired comparison of two methods over seeds: the difference per seed and its 95 % t-interval.

Runs of the same training seed share their data order and initialisation, so the per-seed
difference removes what the seed does to both; its mean has a Student-t interval with n - 1
degrees of freedom. The verdict reads the interval only: "better" or "worse" when it excludes 0
(in the metric's good direction), "no detectable difference" when it holds 0, and "too few seeds"
below 2 pairs.
"""

from __future__ import annotations

import math

from clareps.distill.methods import BASELINES, COMPARED as TREATED  # the registry's roles, in its order

CONFIDENCE = 0.95


def paired_difference(a: dict, b: dict, lower_is_better: bool = False) -> dict | None:
    """``a`` minus ``b`` per shared seed, from two cells of an aggregate table (their "seeds" and
    "values"); None when they share no seed."""
    vb = dict(zip(b["seeds"], b["values"]))
    pairs = [(s, v - vb[s]) for s, v in zip(a["seeds"], a["values"]) if s is not None and s in vb]
    if not pairs:
        return None
    d = [x for _, x in pairs]
    n = len(d)
    mean = sum(d) / n
    out = {"seeds": [s for s, _ in pairs], "differences": d, "n": n, "mean": mean,
           "std": None, "t": None, "low": None, "high": None, "verdict": "too few seeds"}
    if n < 2:
        return out
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    from scipy import stats  # here, not at the top: importing scipy.stats costs seconds at every CLI start

    t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))
    half = t * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if low > 0 or high < 0:
        good = (high < 0) if lower_is_better else (low > 0)
        verdict = "better" if good else "worse"
    else:
        verdict = "no detectable difference"
    return dict(out, std=sd, t=t, low=low, high=high, verdict=verdict)


def treated(methods) -> tuple[str, ...]:
    """The compared methods among ``methods``: ``TREATED``, then every other CaDistill label (a variant of a
    demo config, ``cadistill-<name>``)."""
    return TREATED + tuple(sorted(m for m in methods if m.startswith("cadistill-") and m not in TREATED))


def paired_table(metrics: dict, lower_is_better: tuple[str, ...], methods: tuple[str, ...] | None = None,
                 baselines: tuple[str, ...] = BASELINES) -> dict:
    """{"<method>-vs-<baseline>": {metric: paired_difference}} for each method (default: ``treated`` of those
    in ``metrics``) and baseline present (so the matched-source CaDistill is also read against the
    random-source one)."""
    if methods is None:
        methods = treated({m for row in metrics.values() for m in row})
    out: dict = {}
    for method in methods:
        for base in baselines:
            if base == method:
                continue
            rows = {}
            for metric, row in metrics.items():
                if method in row and base in row:
                    diff = paired_difference(row[method], row[base], metric in lower_is_better)
                    if diff is not None:
                        rows[metric] = diff
            if rows:
                out[f"{method}-vs-{base}"] = rows
    return out


def by_method(paired: dict) -> dict[str, list[str]]:
    """The comparisons of a ``paired_table`` grouped by the compared method, in ``TREATED`` order, each
    method's baselines in ``BASELINES`` order (a results.json keeps its keys sorted)."""
    def rank(order: tuple[str, ...], name: str) -> int:
        return order.index(name) if name in order else len(order)

    out: dict[str, list[str]] = {}
    for name in sorted(paired, key=lambda n: rank(BASELINES, n.rsplit("-vs-", 1)[1])):
        out.setdefault(name.rsplit("-vs-", 1)[0], []).append(name)
    return dict(sorted(out.items(), key=lambda kv: rank(TREATED, kv[0])))


def interval_text(d: dict) -> str:
    """'+1.2 [-0.3, +2.7]' in points of %, or '+1.2 (n = 1)' without an interval."""
    mean = f"{100 * d['mean']:+.1f}"
    if d["low"] is None:
        return f"{mean} (n = {d['n']})"
    return f"{mean} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"
