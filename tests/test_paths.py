"""The presets ship inside the package: they resolve from any folder, with or without $CLAREPS_HOME."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

import clareps
from clareps.paths import PACKAGE_PRESETS, preset, resolve_preset


def test_presets_come_from_the_package_and_home_can_override(tmp_path, monkeypatch):
    assert PACKAGE_PRESETS == Path(clareps.__file__).resolve().parent / "configs"
    monkeypatch.setenv("CLAREPS_HOME", str(tmp_path))  # a home without configs/: the package's presets
    assert preset("bank-default") == PACKAGE_PRESETS / "bank-default.yaml"
    assert yaml.safe_load(resolve_preset(None, "bank-default").read_text())["kind"] == "canonical"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "bank-default.yaml").write_text("kind: control\n")
    assert resolve_preset("bank-default", "x") == tmp_path / "configs" / "bank-default.yaml"


def test_the_package_data_lists_every_preset():
    """What `pip install .` (not editable) copies: every shipped YAML preset."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["clareps"]
    shipped = {p.name for pattern in patterns for p in PACKAGE_PRESETS.parent.glob(pattern)}
    assert {p.name for p in PACKAGE_PRESETS.glob("*.yaml")} <= shipped and len(shipped) > 5


def test_a_preset_resolves_from_another_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clareps", "data", "build", "--set", "n_train=-1"],
                          capture_output=True, text=True, cwd=tmp_path)
    # the shipped preset was found (the bad value is its key's), not "no such file configs/..."
    assert proc.returncode == 2 and "bad value for 'n_train'" in proc.stderr, proc.stderr


def test_a_home_without_the_shipped_models_says_where_they_live(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("CLAREPS_HOME", str(tmp_path))
    code, _, err = run_cli("bank", "build", "--out", tmp_path / "bank")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "missing shipped model" in err and "set CLAREPS_HOME" in err and not (tmp_path / "bank").exists()
