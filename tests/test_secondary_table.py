"""clareps study table paired: paired intervals for any method of an aggregate's results.json."""

from __future__ import annotations

import json
from pathlib import Path

from clareps.studies.student_tables import paired_results


def _cell(values: list[float]) -> dict:
    return {"mean": sum(values) / len(values), "std": None, "n": len(values), "seeds": [0, 1, 2], "values": values}


def _results(tmp_path: Path) -> str:
    # keys sorted, as write_json stores them: the script must put the rows back in the table's order
    metrics = {"bg/gap": {"ce": _cell([0.10, 0.10, 0.10]), "kd": _cell([0.08, 0.07, 0.09])},
               "clean/test-original": {"ce": _cell([0.90, 0.91, 0.92]), "kd": _cell([0.91, 0.92, 0.93])}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"methods": ["ce", "kd"], "metrics": metrics}, sort_keys=True))
    return str(path)


def test_kd_is_paired_with_ce_by_seed_in_table_order(tmp_path, run_cli):
    code, text, _ = run_cli("study", "table", "paired", _results(tmp_path), "--methods", "kd", "--against", "ce")
    assert code == 0
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| metric (points) | kd − ce, 95 % CI | verdict |")
    # clean accuracy: +1 point on every seed (std 0), so the interval is the point and it is "better"
    assert rows[1] == "| clean acc, original ↑ | +1.0 [+1.0, +1.0] | better |"
    # gap: -2, -3, -1 points: mean -2, sd 1, t(2) 4.303 -> ±2.5; lower is better, the interval holds 0
    assert rows[2] == "| background gap (same - rand) ↓ | -2.0 [-4.5, +0.5] | no detectable difference |"
    assert text.strip() == paired_results(tmp_path / "results.json", ["kd"], ["ce"]).strip()


def test_a_method_the_results_lack_is_refused(tmp_path, run_cli):
    code, _, err = run_cli("study", "table", "paired", _results(tmp_path), "--methods", "cadistill")
    assert code == 2 and "has no method cadistill, control (it has ce, kd)" in err
