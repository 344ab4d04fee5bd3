"""The `auto` dtype and the machine facts recorded with every run (issue 15)."""

import pytest
import torch

from samrepro.errors import UserError
from samrepro.experiments import RunConfig, on_device
from samrepro.hardware import fast_dtype, has_amx, resolve_dtype


def test_auto_is_bf16_on_a_cpu_with_a_bf16_unit_and_fp32_without():
    cpu = torch.device("cpu")
    assert fast_dtype(cpu, frozenset({"avx2", "amx_bf16", "amx_tile"})) == "bfloat16"
    assert fast_dtype(cpu, frozenset({"avx512f", "avx512_bf16"})) == "bfloat16"
    assert fast_dtype(cpu, frozenset({"avx2", "avx512f", "fma"})) == "float32"
    assert fast_dtype(cpu, frozenset()) == "float32"


def test_the_amx_unit_is_told_apart_from_avx512_bf16():
    assert has_amx(frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert not has_amx(frozenset({"avx512f", "avx512_bf16"}))
    assert not has_amx(frozenset())


def test_auto_follows_this_machines_flags(monkeypatch):
    monkeypatch.setattr("samrepro.hardware.cpu_flags", lambda: frozenset({"sse2", "avx2"}))
    assert resolve_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr("samrepro.hardware.cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert resolve_dtype(None, "cpu") == "bfloat16"


def test_explicit_dtypes_are_kept_and_unknown_ones_refused():
    for name in ("float32", "bfloat16", "float16"):
        assert resolve_dtype(name, "cpu") == name
    with pytest.raises(UserError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", "cpu")


def test_the_run_identity_names_the_resolved_dtype(monkeypatch):
    monkeypatch.setattr("samrepro.hardware.cpu_flags", lambda: frozenset({"amx_bf16"}))
    auto = on_device(RunConfig(model="tiny-llama"), torch.device("cpu"))
    fp32 = on_device(RunConfig(model="tiny-llama", dtype="float32"), torch.device("cpu"))
    assert auto.key()["dtype"] == "bfloat16" and fp32.key()["dtype"] == "float32"
    assert auto.key() != fp32.key()
