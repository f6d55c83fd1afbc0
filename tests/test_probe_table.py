"""clareps study table probe (clareps.studies.student_tables): the CKA table of a study from probe.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clareps.errors import ClarepsError
from clareps.studies import student_tables as table


def _probe(tmp_path: Path, method: str, seed: int, canonical: float, control: float, held_out: bool = True) -> str:
    run = tmp_path / f"{method}-s{seed}"
    run.mkdir()
    (run / "result.json").write_text(json.dumps({"seed": seed, "method": method}))
    probe = {"student": str(run / "student.safetensors"), "method": method,
             "banks": {"canonical": {"cka": canonical, "held_out": held_out},
                       "control": {"cka": control, "held_out": held_out}}}
    (run / "probe.json").write_text(json.dumps(probe))
    return str(run / "probe.json")


def test_the_table_pairs_cadistill_with_ce_by_seed(tmp_path):
    paths = [_probe(tmp_path, "ce", 0, 0.40, 0.40), _probe(tmp_path, "ce", 1, 0.50, 0.45),
             _probe(tmp_path, "cadistill", 0, 0.45, 0.40), _probe(tmp_path, "cadistill", 1, 0.56, 0.45)]
    by_bank = table.probe_cells(paths)
    assert by_bank["canonical"]["cadistill"] == {"seeds": [0, 1], "values": [0.45, 0.56]}
    text = table.probe_table(by_bank)
    assert "| ce | 0.450 ± 0.071 | 0.425 ± 0.035 | 2 |" in text
    # per seed +0.05 and +0.06 on the canonical bank: mean +5.5 points of CKA x 100; 0 on the control bank
    row = next(line for line in text.splitlines() if line.startswith("| cadistill − ce"))
    assert row.split("|")[2].strip().startswith("+5.5 [") and "+0.0 [+0.0, +0.0]" in row.split("|")[3]


def test_an_interval_reads_higher_or_lower_not_better_or_worse(tmp_path):
    paths = [_probe(tmp_path, m, s, base + up, base - up) for s, base in enumerate((0.40, 0.50, 0.45))
             for m, up in (("ce", 0.0), ("cadistill", 0.05 + 0.01 * s))]
    row = next(line for line in table.probe_table(table.probe_cells(paths)).splitlines() if line.startswith("| cadistill − ce"))
    assert "(higher)" in row.split("|")[2]
    assert "(lower)" in row.split("|")[3] and "better" not in row and "worse" not in row


def test_without_a_pair_there_is_no_paired_table(tmp_path):
    text = table.probe_table(table.probe_cells([_probe(tmp_path, "ce", 0, 0.40, 0.40)]))
    assert text.splitlines()[-1] == "| ce | 0.400 | 0.400 | 1 |" and "paired by seed" not in text


def test_a_bank_the_student_trained_on_is_refused(tmp_path):
    with pytest.raises(ClarepsError, match="not held out"):
        table.probe_cells([_probe(tmp_path, "cadistill", 0, 0.9, 0.5, held_out=False)])


def test_a_variant_is_its_own_row_read_from_the_evaluation_beside_the_probe(tmp_path):
    """A cadistill-matched student's metadata says `cadistill`; its evaluation says `cadistill-matched`. The
    archive keeps no student folder, so the seed comes from the result.json beside the probe.json."""
    paths = [_probe(tmp_path, "cadistill", s, 0.6, 0.6) for s in (0, 1)]
    for s in (0, 1):
        (tmp_path / "run").mkdir(exist_ok=True)
        folder = Path(_probe(tmp_path / "run", "cadistill", s, 0.7 + 0.01 * s, 0.6)).parent
        archived = folder.rename(tmp_path / f"cadistill-matched-s{s}")  # its student's folder is gone
        name = "eval.json" if s == 0 else "eval-standard.json"  # full mode, another mode
        (archived / name).write_text(json.dumps({"format": "clareps-eval/1", "method": "cadistill-matched",
                                                 "train_seed": s}))
        (archived / "eval-maps.json").write_text(json.dumps({"method": "not an evaluation"}))
        paths.append(str(archived / "probe.json"))
    by_bank = table.probe_cells(paths)
    assert by_bank["canonical"]["cadistill"] == {"seeds": [0, 1], "values": [0.6, 0.6]}
    assert by_bank["canonical"]["cadistill-matched"] == {"seeds": [0, 1], "values": [0.7, 0.71]}


def test_the_cli_prints_the_table_and_refuses_a_trained_on_bank_in_one_line(tmp_path, run_cli):
    paths = [_probe(tmp_path, m, s, 0.4 + 0.05 * s, 0.4) for m in ("ce", "cadistill") for s in (0, 1)]
    code, out, _ = run_cli("study", "table", "probe", *paths)
    assert code == 0 and out == table.probe_table(table.probe_cells(paths))
    code, _, err = run_cli("study", "table", "probe", _probe(tmp_path, "kd", 0, 0.9, 0.5, held_out=False))
    assert code == 2 and err.startswith("error: ") and "not held out" in err and len(err.splitlines()) == 1
