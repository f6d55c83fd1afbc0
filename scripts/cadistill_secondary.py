"""The paired comparisons of the CaDistill study's non-CaDistill rows: `aggregate` pairs every CaDistill
label with ce, control and cadistill; this pairs any method of an aggregate's results.json the same way
(the same seeds, the same 95 % t-intervals and verdicts, the same rows as results.md).

    python scripts/cadistill_secondary.py RUN/results/results.json --methods kd feat-real \
        --against ce control cadistill
"""

from __future__ import annotations

import argparse

from clareps.evaluate.aggregate import LOWER_IS_BETTER, metric_order, paired_markdown
from clareps.evaluate.paired import paired_table
from clareps.io import read_json


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="results.json of `clareps aggregate` (or of the study's `assemble`)")
    ap.add_argument("--methods", nargs="+", default=["kd", "feat-real"])
    ap.add_argument("--against", nargs="+", default=["ce", "control", "cadistill"])
    args = ap.parse_args(argv)
    agg = read_json(args.results)
    missing = sorted(set(args.methods + args.against) - set(agg["methods"]))
    if missing:
        ap.error(f"{args.results} has no method {', '.join(missing)} (it has {', '.join(agg['methods'])})")
    metrics = {m: agg["metrics"][m] for m in sorted(agg["metrics"], key=metric_order)}  # JSON keeps keys sorted
    paired = paired_table(metrics, LOWER_IS_BETTER, tuple(args.methods), tuple(args.against))
    text = paired_markdown(dict(agg, metrics=metrics, paired=paired))
    print(text)
    return text


if __name__ == "__main__":
    main()
