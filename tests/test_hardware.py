"""The `auto` dtype and the machine facts recorded with every run (issue 15)."""

import pytest
import torch

from samrepro.errors import UserError
from samrepro.study.experiments import RunConfig, on_device
from samrepro.machine.hardware import fast_dtype, has_amx, resolve_dtype


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
    monkeypatch.setattr("samrepro.machine.hardware.cpu_flags", lambda: frozenset({"sse2", "avx2"}))
    assert resolve_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr("samrepro.machine.hardware.cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert resolve_dtype(None, "cpu") == "bfloat16"


def test_explicit_dtypes_are_kept_and_unknown_ones_refused():
    for name in ("float32", "bfloat16", "float16"):
        assert resolve_dtype(name, "cpu") == name
    with pytest.raises(UserError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", "cpu")


def test_the_run_identity_names_the_resolved_dtype(monkeypatch):
    monkeypatch.setattr("samrepro.machine.hardware.cpu_flags", lambda: frozenset({"amx_bf16"}))
    auto = on_device(RunConfig(model="tiny-llama"), torch.device("cpu"))
    fp32 = on_device(RunConfig(model="tiny-llama", dtype="float32"), torch.device("cpu"))
    assert auto.key()["dtype"] == "bfloat16" and fp32.key()["dtype"] == "float32"
    assert auto.key() != fp32.key()


def _gpus(monkeypatch, count: int, cuda_build: bool = True):
    """Pretend this torch sees `count` GPUs (a CUDA build) or is a CPU build."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.version, "cuda", "12.1" if cuda_build else None)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("device, gpus, cuda_build, message", [
    ("cuda", 0, False, "device 'cuda' is not available (this torch is a CPU build): use one of cpu"),
    ("cuda:0", 0, True, "device 'cuda:0' is not available (no GPU is visible): use one of cpu"),
    ("cuda:7", 1, True, "device 'cuda:7' is not available on this machine: use one of cpu, cuda:0"),
    ("cuda:2", 2, True, "use one of cpu, cuda:0, cuda:1"),
    ("mps", 0, False, "device 'mps' is not available on this machine: use one of cpu"),
    ("gpu", 0, False, "unknown device 'gpu': use one of cpu"),
])
def test_a_device_that_is_not_there_is_one_line_naming_those_that_are(monkeypatch, device, gpus,
                                                                      cuda_build, message):
    from samrepro.machine.hardware import check_device, default_device

    _gpus(monkeypatch, gpus, cuda_build)
    for check in (check_device, default_device):
        with pytest.raises(UserError) as error:
            check(device)
        assert message in str(error.value) and "\n" not in str(error.value)


def test_devices_that_are_there_are_kept(monkeypatch):
    from samrepro.machine.hardware import check_device, default_device

    _gpus(monkeypatch, 2)
    assert [str(check_device(d)) for d in ("cpu", "cuda", "cuda:1")] == ["cpu", "cuda", "cuda:1"]
    assert str(default_device()) == "cuda"
    _gpus(monkeypatch, 0, cuda_build=False)
    assert str(default_device()) == "cpu"


@pytest.mark.parametrize("route", ["prune", "sensitivity", "torchrun", "notebook"])
def test_every_route_refuses_a_missing_gpu_in_one_line(monkeypatch, capsys, tmp_path, route):
    """`--device cuda` on a CPU build: exit 2 and one line (commands), a UserError (notebooks)."""
    from samrepro.commands import cli, distributed
    from samrepro.study import settings

    _gpus(monkeypatch, 0, cuda_build=False)
    base = ["--model", "tiny-llama", "--device", "cuda", "--json", str(tmp_path / "out.json")]
    if route == "notebook":
        with pytest.raises(UserError, match="device 'cuda' is not available"):
            settings.notebook("figure1", {"preset": "smoke", "device": "cuda"}, show=False)
        return
    if route == "torchrun":
        code = distributed.main(base)
    else:
        code = cli.main([route, *base, *(["--sparsity", "0.5"] if route == "prune" else [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "device 'cuda' is not available" in err, err
    assert not (tmp_path / "out.json").exists()
