"""precision: auto chooses bf16 only where the hardware runs it natively; every record names the machine."""

from __future__ import annotations

import json
import os

import pytest
import torch

from clareps import device as dev
from clareps.config import load_config
from clareps.device import describe_hardware, hardware, resolve_precision
from clareps.diffusion.train import TeacherConfig
from clareps.errors import ClarepsError
from clareps.paths import preset

CPU = torch.device("cpu")


@pytest.fixture
def cpu_flags(monkeypatch, tmp_path):
    """Pretend to be a CPU with the given bf16 flags and architecture; cache in a fresh folder."""
    monkeypatch.setenv("CLAREPS_CACHE", str(tmp_path / "cache"))
    for cap in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):  # the flags alone decide
        monkeypatch.delenv(cap, raising=False)
    dev.cpu_bf16_speedup.cache_clear()
    dev._warn_emulated.cache_clear()

    def set_flags(amx: bool = False, avx512_bf16: bool = False, machine: str = "x86_64",
                  capability: str = "AVX2"):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(dev.platform, "machine", lambda: machine)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    yield set_flags
    dev.cpu_bf16_speedup.cache_clear()
    dev._warn_emulated.cache_clear()


@pytest.mark.parametrize("flags, expected", [
    (dict(capability="AVX2"), "fp32"),                       # emulated bf16 (~70x slower)
    (dict(capability="AVX512"), "fp32"),                     # AVX-512 without its bf16 extension
    (dict(capability="DEFAULT"), "fp32"),
    (dict(capability="AVX512", avx512_bf16=True), "bf16"),
    (dict(capability="AVX512", amx=True), "bf16"),
])
def test_auto_follows_the_cpu_flags(cpu_flags, flags, expected):
    cpu_flags(**flags)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32"  # an explicit choice is kept


@pytest.mark.parametrize("speedup, expected", [(1.8, "bf16"), (0.05, "fp32")])
def test_where_flags_cannot_tell_a_cached_measurement_decides(cpu_flags, monkeypatch, speedup, expected):
    cpu_flags(machine="aarch64", capability="DEFAULT")
    calls = []

    def fake_bench(bf16: bool, repeats: int = 3) -> float:
        calls.append(bf16)
        return 1.0 if not bf16 else 1.0 / speedup
    monkeypatch.setattr(dev, "_bench_conv", fake_bench)
    assert resolve_precision("auto", CPU) == expected
    assert len(calls) == 2
    dev.cpu_bf16_speedup.cache_clear()  # a new process: the figure comes from the disk cache
    assert resolve_precision("auto", CPU) == expected and len(calls) == 2
    (cached,) = json.loads((dev.default_cache_dir() / "bf16-speedup.json").read_text()).values()
    assert cached == pytest.approx(speedup)


def test_explicit_bf16_where_emulated_runs_with_one_warning_saying_how_much_slower(cpu_flags, monkeypatch, capsys):
    cpu_flags(capability="AVX2")
    monkeypatch.setattr(dev, "_bench_conv", lambda bf16, repeats=3: 0.7 if bf16 else 0.01)
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("bf16", CPU) == "bf16"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "70x slower than fp32" in err and "AVX2" in err


def test_native_bf16_gives_no_warning(cpu_flags, capsys):
    cpu_flags(capability="AVX512", amx=True)
    assert resolve_precision("bf16", CPU) == "bf16" and capsys.readouterr().err == ""


def test_cuda_follows_the_card(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"


def test_unknown_precision_is_a_config_error(tmp_path):
    with pytest.raises(ClarepsError, match="bad value for 'precision'"):
        load_config(TeacherConfig, preset("teacher-default"), ["precision=fp16"])


@pytest.mark.parametrize("env", [{"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"ONEDNN_MAX_CPU_ISA": "avx512_core"},
                                 {"ATEN_CPU_CAPABILITY": "avx2"}])
def test_an_isa_cap_makes_auto_choose_fp32_on_a_bf16_cpu(cpu_flags, monkeypatch, env):
    """Capped below bf16, oneDNN or ATen emulate it (a conv ~100x slower): auto runs as on an AVX2 CPU."""
    cpu_flags(capability="AVX512", amx=True, avx512_bf16=True)
    assert dev.resolve_precision("auto", CPU) == "bf16"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert dev.resolve_precision("auto", CPU) == "fp32" and dev.cpu_bf16_native() is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # a cap above bf16 changes nothing
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert dev.resolve_precision("auto", CPU) == "bf16"


def test_autocast_resolves_auto(cpu_flags):
    cpu_flags(capability="AVX2")
    with dev.autocast(CPU, "auto"):
        assert not torch.is_autocast_enabled("cpu")
    cpu_flags(capability="AVX512", amx=True)
    with dev.autocast(CPU, "auto"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_every_stage_preset_defaults_to_auto():
    for name in ("teacher-default", "distill-default", "judge-default", "cifar10-teacher", "cifar10-distill",
                 "imagenet-distill"):
        assert "precision: auto" in preset(name).read_text(), name
    assert "sampler_precision: auto" in preset("bank-default").read_text()


def test_the_hardware_record_names_capability_and_resolved_precision(cpu_flags):
    cpu_flags(capability="AVX2")
    hw = hardware(CPU, "auto")
    assert hw["capability"] == "AVX2" and hw["bf16_native"] is False
    assert hw["precision_requested"] == "auto" and hw["precision"] == "fp32"
    assert hw["cpu"] and hw["torch_threads"] >= 1
    line = describe_hardware(hw)
    assert "[AVX2]" in line and "precision fp32" in line and "\n" not in line


def test_threads_option_sets_torch_threads(run_cli):
    before = torch.get_num_threads()
    try:
        code, out, err = run_cli("--threads", "1", "data", "--help")
        assert code == 0 and torch.get_num_threads() == 1
        code, out, err = run_cli("--threads", "0", "data", "--help")
        assert code == 2 and "--threads" in err
    finally:
        torch.set_num_threads(before)


def test_the_cli_lets_idle_openmp_threads_sleep_unless_told_otherwise(run_cli, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    run_cli("--help")
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    run_cli("--help")
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
