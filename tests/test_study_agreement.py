"""clareps study table agree: two aggregates' verdicts side by side, per comparison and per claim."""

from __future__ import annotations

import json
from pathlib import Path

from clareps.evaluate.paired import paired_difference


def _results(path: Path, ce: list[float], control: list[float], cadistill: list[float]) -> str:
    cells = {m: {"seeds": [0, 1, 2], "values": v} for m, v in
             {"ce": ce, "control": control, "cadistill": cadistill}.items()}
    paired = {f"cadistill-vs-{b}": {"corr/mean": paired_difference(cells["cadistill"], cells[b])}
              for b in ("ce", "control")}
    path.write_text(json.dumps({"methods": list(cells), "metrics": {"corr/mean": cells}, "paired": paired}))
    return str(path)


def test_a_verdict_that_changes_is_counted_and_marked(tmp_path, run_cli):
    # the study: cadistill is 2 points above both baselines on every seed, so the claim holds
    study = _results(tmp_path / "a.json", [0.30, 0.31, 0.32], [0.30, 0.31, 0.32], [0.32, 0.33, 0.34])
    # the rerun: still above ce, but against control the differences straddle 0
    rerun = _results(tmp_path / "b.json", [0.30, 0.31, 0.32], [0.33, 0.31, 0.33], [0.32, 0.33, 0.34])
    code, text, _ = run_cli("study", "table", "agree", study, rerun, "--metrics", "corr/mean",
                            "--json", str(tmp_path / "agree.json"))
    assert code == 0
    rows = [line for line in text.splitlines() if line.startswith("| corruption")]
    assert rows[0] == "| corruption acc, mean ↑ | cadistill − ce | +2.0 [+2.0, +2.0] | better | " \
                      "+2.0 [+2.0, +2.0] | better | yes |"
    assert rows[1].startswith("| corruption acc, mean ↑ | cadistill − control | +2.0 [+2.0, +2.0] | better | +0.7 [")
    assert rows[1].endswith("| no difference | **no** |")
    assert rows[2] == "| corruption acc, mean ↑ | holds | does not hold | **no** |"
    assert "2 of 3 verdicts differ" in text
    assert json.loads((tmp_path / "agree.json").read_text())["differing"] == 2


def test_the_same_results_agree_everywhere(tmp_path, run_cli):
    study = _results(tmp_path / "a.json", [0.30, 0.31, 0.32], [0.30, 0.31, 0.33], [0.31, 0.33, 0.32])
    code, text, _ = run_cli("study", "table", "agree", study, study, "--metrics", "corr/mean")
    assert code == 0 and "0 of 3 verdicts differ" in text and "**no**" not in text


def test_a_comparison_the_results_lack_is_refused(tmp_path, run_cli):
    study = _results(tmp_path / "a.json", [0.30, 0.31, 0.32], [0.30, 0.31, 0.33], [0.31, 0.33, 0.32])
    code, _, err = run_cli("study", "table", "agree", study, study, "--comparisons", "kd-vs-ce")
    assert code == 2 and "has no comparison kd-vs-ce" in err
    code, _, err = run_cli("study", "table", "agree", study, study, "--metrics", "bg/gap")
    assert code == 2 and "cadistill-vs-ce has no metric bg/gap" in err


def test_a_measure_named_otherwise_in_the_rerun_is_read_under_both_names(tmp_path, run_cli):
    study = _results(tmp_path / "a.json", [0.30, 0.31, 0.32], [0.30, 0.31, 0.33], [0.31, 0.33, 0.32])
    rerun = json.loads(Path(study).read_text())
    rerun["paired"] = {c: {"robust/worst@2/255": rows["corr/mean"]} for c, rows in rerun["paired"].items()}
    (tmp_path / "b.json").write_text(json.dumps(rerun))
    code, text, _ = run_cli("study", "table", "agree", study, str(tmp_path / "b.json"),
                            "--metrics", "corr/mean=robust/worst@2/255")
    assert code == 0 and "0 of 3 verdicts differ" in text and "| corruption acc, mean ↑ | cadistill − ce |" in text
