"""The machine a run computes on: its device, the dtype that is fast there, and the CPU facts
that change float rounding (recorded in each run's provenance and identity).

`auto` (the default dtype) picks bf16 where the device has a bf16 matrix unit: a CPU with
AMX-BF16 or AVX512-BF16 (measured on 2 cores: a forward 3–5× fp32 with AMX, ~2× with
AVX512-BF16 alone; results/embedded/TIMINGS.md) or a CUDA GPU of compute
capability 8.0 and up; fp16 on older GPUs; fp32 on a CPU without bf16 instructions. Only the
model's weights and forwards use it: Hessians and the solver stay in fp32 (hessian, solver).
"""

from __future__ import annotations

import platform
from functools import lru_cache

import torch

from samrepro.errors import UserError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def default_device(device=None) -> torch.device:
    """`device` (checked: check_device), else cuda if present, else cpu."""
    return check_device(device) if device else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")


def available_devices() -> list[str]:
    """The devices this machine and this build of torch have: cpu, cuda:0 …, mps."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def check_device(device) -> torch.device:
    """`device` as a torch.device, or a UserError naming the devices there are (`cuda` on a
    CPU build of torch, `cuda:7` on a machine with one GPU, `mps` off a Mac, a typo)."""
    there = available_devices()
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"unknown device {device!r}: use one of {', '.join(there)}") from None
    if found.type == "cuda" and not torch.cuda.is_available():
        why = "this torch is a CPU build" if torch.version.cuda is None else "no GPU is visible"
        raise UserError(f"device {device!r} is not available ({why}): use one of "
                        f"{', '.join(there)}")
    name = str(found) if found.index is not None or found.type != "cuda" else "cuda:0"
    if name not in there and found.type != "cpu":
        raise UserError(f"device {device!r} is not available on this machine: use one of "
                        f"{', '.join(there)}")
    return found


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first CPU's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags the kernel reports for the first CPU (empty if unknown)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def has_amx(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has the AMX-BF16 tile unit, which makes one large bf16 product with
    fp32 sums fast (hessian.HessianAccumulator takes that path only there)."""
    return "amx_bf16" in (cpu_flags() if flags is None else flags)


def cpu_has_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AMX-BF16 or AVX512-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_CPU_FLAGS)


def fast_dtype(device: torch.device, flags: frozenset[str] | None = None) -> str:
    """The dtype `auto` stands for on `device` (see the module docstring)."""
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bfloat16" if major >= 8 else "float16"
    if device.type == "cpu":
        return "bfloat16" if cpu_has_bf16(flags) else "float32"
    return "float32"


def resolve_dtype(name: str | None, device) -> str:
    """`auto` (or None) → the fast dtype of `device`; an explicit name is checked and kept."""
    if name in (None, "auto"):
        return fast_dtype(default_device(device))
    if name not in DTYPES:
        raise UserError(f"unknown dtype {name!r}: choose auto, {', '.join(DTYPES)}")
    return name


def machine() -> dict:
    """What changes a run's rounding besides the code: CPU model, vector ISA, bf16 units,
    torch threads (and the GPU's name when one is used)."""
    found = {"cpu": _cpu_model(), "isa": torch.backends.cpu.get_cpu_capability(),
             "bf16_units": [f for f in BF16_CPU_FLAGS if f in cpu_flags()],
             "threads": torch.get_num_threads(), "machine": platform.machine()}
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name()
    return found


def _cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or "unknown"
