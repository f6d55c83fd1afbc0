"""Run folders made before the loss weights were named as the terms print (``loss.lambda_align``,
``lambda_cano``, ``lambda_dist``; now ``loss.weights.align``, ``cano``, ``cka``): the same config finds
its finished run (reused as it is) and its partial run (resumed, the record rewritten in the new keys);
another config is refused on one line that names the differing key in the new form."""

from __future__ import annotations

import pytest
import yaml
from test_distill import _fp, data, make_bank, npz, trainer  # noqa: F401  (tiny data, bank maker, fixtures)

from clareps.distill.config import RUN_CONTROL_KEYS
from clareps.errors import ClarepsError
from clareps.runs import config_hash

OLD = {"align": "lambda_align", "cano": "lambda_cano", "cka": "lambda_dist"}


def as_before(run, **weights) -> None:
    """Rewrite ``run``'s record as the earlier version wrote it: lambda_* keys, their hash (by hand)."""
    record = yaml.safe_load((run / "config.yaml").read_text())
    loss = record["loss"]
    for new, value in dict(loss.pop("weights"), **weights).items():
        loss[OLD[new]] = value
    body = {k: v for k, v in record.items() if k not in ("config_hash", "inputs")}
    record["config_hash"] = config_hash(body, (*RUN_CONTROL_KEYS, "kd"), record["inputs"])  # cadistill's leave-out
    (run / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))


def test_a_finished_run_from_before_is_reused_as_it_is(tmp_path, data, npz):  # noqa: F811
    bank = str(make_bank(tmp_path / "bank", data, _fp(npz)))
    run = tmp_path / "run"
    trainer(npz, run, method="cadistill", bank=bank).train()
    as_before(run)
    old = (run / "config.yaml").read_bytes()
    stamp = (run / "student.safetensors").stat().st_mtime_ns
    again = trainer(npz, run, method="cadistill", bank=bank)
    again.train()
    assert again.reused and (run / "config.yaml").read_bytes() == old
    assert (run / "student.safetensors").stat().st_mtime_ns == stamp


def test_a_partial_run_from_before_resumes_and_another_config_is_refused(tmp_path, data, npz):  # noqa: F811
    bank = str(make_bank(tmp_path / "bank", data, _fp(npz)))
    run = tmp_path / "run"
    trainer(npz, run, method="cadistill", bank=bank, stop_at=2).train()
    as_before(run)
    resumed = trainer(npz, run, method="cadistill", bank=bank)
    resumed.train()
    assert not resumed.reused and resumed.step == resumed.total_steps
    record = yaml.safe_load((run / "config.yaml").read_text())
    assert "weights" in record["loss"] and "lambda_dist" not in record["loss"]  # rewritten in the new keys

    other = tmp_path / "other"
    trainer(npz, other, method="cadistill", bank=bank, stop_at=2).train()
    as_before(other, cka=0.7)
    with pytest.raises(ClarepsError, match=r"another config or bank \(loss\.weights\.cka: 0\.7 there, 0\.3 here\)"):
        trainer(npz, other, method="cadistill", bank=bank).train()
