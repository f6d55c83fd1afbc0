"""clareps study table per-class (clareps.studies.student_tables): a study's per-class tables from evaluation files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clareps.errors import ClarepsError
from clareps.studies import student_tables as t

RAND = "clean acc, mixed-rand (%)"
FAST = "worst case of the fast attacks at 2/255 (%)"


def _eval(tmp_path: Path, method: str, seed: int, rand: list, fast_at_2: list | None) -> str:
    run = {"method": method, "train_seed": seed,
           "clean": {"variants": {"test-mixed-rand": {"per_class": rand}}, "bg_gap_per_class": [0.0] * len(rand)},
           "robustness": {"budgets_255": [1.0, 2.0] if fast_at_2 else [1.0],
                          "worst_case_fast": {"per_class": [[0.5] * len(rand)] + ([fast_at_2] if fast_at_2 else [])}}}
    path = tmp_path / f"{method}-s{seed}.json"
    path.write_text(json.dumps(run))
    return str(path)


def test_each_class_pairs_cadistill_with_ce_by_seed(tmp_path):
    n = 10
    paths = [_eval(tmp_path, "ce", 0, [0.80] * n, [0.30] * n), _eval(tmp_path, "ce", 1, [0.90] * n, [0.40] * n),
             _eval(tmp_path, "cadistill", 0, [0.82] + [0.80] * (n - 1), [0.30] * n),
             _eval(tmp_path, "cadistill", 1, [0.94] + [0.90] * (n - 1), [0.20] + [0.40] * (n - 1))]
    cells = t.per_class_cells(paths, RAND)
    assert cells["cadistill"][0] == {"seeds": [0, 1], "values": [0.82, 0.94]}
    lines = t.per_class_table(cells, RAND).splitlines()
    header = next(line for line in lines if line.startswith("| class |"))
    assert header == "| class | ce | cadistill | cadistill − ce, 95 % CI |"
    first = lines[lines.index(header) + 2].split("|")
    # class 0: ce 85.0, cadistill 88.0; per seed +2 and +4 points: mean +3.0 ± 12.7 (t with 1 degree of freedom)
    assert first[1].strip() == "bear" and first[2].strip() == "85.0" and first[3].strip() == "88.0"
    assert first[4].strip().startswith("+3.0 [-9.7, +15.7]")
    assert lines[lines.index(header) + 3].split("|")[4].strip() == "+0.0 [+0.0, +0.0]"
    variant = _eval(tmp_path, "cadistill-linear", 0, [0.8] * n, [0.3] * n)  # a demo config's variant: vs ce
    header = t.per_class_table(t.per_class_cells([*paths, variant], RAND), RAND).splitlines()[2]
    assert header.endswith("| cadistill − ce, 95 % CI | cadistill-linear − ce, 95 % CI |")
    fast = t.per_class_table(t.per_class_cells(paths, FAST), FAST).splitlines()
    assert fast[4].split("|")[4].strip() == "-10.0 [-137.1, +117.1]"  # bear: 0 and -20 points


def test_without_a_cadistill_run_the_table_has_only_the_methods(tmp_path):
    lines = t.per_class_table(t.per_class_cells([_eval(tmp_path, "ce", 0, [0.8] * 10, [0.3] * 10)], RAND), RAND).splitlines()
    assert lines[2:4] == ["| class | ce |", "|---|---:|"] and lines[4] == "| bear | 80.0 |"


def test_an_evaluation_without_the_budget_is_refused(tmp_path):
    with pytest.raises(ClarepsError, match="no per-class values"):
        t.per_class_cells([_eval(tmp_path, "ce", 0, [0.8] * 10, None)], FAST)


def test_the_cli_prints_every_measure(tmp_path, run_cli):
    paths = [_eval(tmp_path, m, s, [0.8] * 10, [0.3] * 10) for m in ("ce", "cadistill") for s in (0, 1)]
    code, out, _ = run_cli("study", "table", "per-class", *paths)
    assert code == 0 and out == t.per_class_tables(paths)
    assert [line for line in out.splitlines() if line.endswith("mean over seeds") or "(lower" in line] == [
        "clean acc, mixed-rand (%), mean over seeds", "background gap (points), mean over seeds (lower is better)",
        "worst case of the fast attacks at 2/255 (%), mean over seeds"]
    code, _, err = run_cli("study", "table", "per-class", tmp_path / "missing.json")
    assert code == 2 and "missing.json" in err
