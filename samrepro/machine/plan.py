"""Where each step of a run goes and what it costs, decided before anything runs.

For a model (a folder holding its config.json, a hub id, one of memory.PAPER_MODELS, or the
embedded and tiny models) on a machine (the GPUs torch sees, or ones named like
`1xA100-80GB` or `8x80GB`), `plan_model` gives, for each step of a run:

- calibration forwards and Hessians + solver (the layer-by-layer pass, METHOD.md §1): one
  GPU holding one decoder layer, the calibration activations on it ("device") or on the CPU
  ("offload");
- Hutchinson (§3, layer by layer): the whole model on one GPU, or its decoder layers
  streamed to one GPU from host RAM, or split by whole layers over several (accelerate
  device_map, `placed`), or the CPU;
- perplexity and lm-eval (§6): the whole model, on one GPU, split over several, or with its
  last layers kept in host RAM and streamed to the GPU (`evaluation_devices`; evaluation
  runs where `inference_placement` says, by the same rule, at the batch it really uses);

its placement, its peak memory on the fullest device (samrepro.machine.memory, which tests check
against measured peaks) and an estimated time: FLOPs at UTILIZATION of the GPU's peak rate,
a Hutchinson probe = PROBE_FORWARDS forwards and COLUMN_STEP_SECONDS per solver column (the
measured CPU ratio and the assumptions of benchmarks/scaling.py). A model's verdict is "fits
on 1 GPU", "needs N GPUs" or "does not fit". `show(settings)` prints the plan for a
notebook's settings and raises a UserError with the fix when a model does not fit;
`samrepro plan` prints it on the command line. `placed(model, placement)` puts a model where
a placement says (experiments.sensitivity_for does so for the Hutchinson step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from samrepro.machine import memory
from samrepro.errors import UserError
from samrepro.machine.hardware import DTYPES, cpu_has_bf16
from samrepro.machine.memory import COLUMN_STEP_SECONDS, GIB, GPU, GPUS, UTILIZATION, shape_of

# ---- the machine --------------------------------------------------------------------------


CUDA_OVERHEAD = 1.5 * GIB  # CUDA context, cuBLAS workspace, allocator slack (memory.py)
PROBE_FORWARDS = 9.3  # a Hutchinson probe costs this many forwards (results/embedded/scaling.md)
CPU_FLOPS = 36.5e9  # effective FP32 rate of this project's 2-core CPU (scaling.md)


@dataclass(frozen=True)
class Machine:
    """The GPUs a plan may use (all of one kind), or none (the CPU), and the host's RAM."""

    gpus: tuple[GPU, ...] = ()
    host_bytes: float | None = None  # None: unknown (not checked)
    disk_bytes: float | None = None  # free disk where the cache (and resume checkpoints) go

    @property
    def kind(self) -> str:
        if not self.gpus:
            return "CPU"
        return f"{len(self.gpus)}×{self.gpus[0].name}"


def parse_gpus(text: str) -> tuple[GPU, ...]:
    """'1xA100-80GB', '8xH100-80GB', '2x80GB' (any GPU of that memory, bf16, A100 speed) or
    'cpu' (none) → the GPUs."""
    text = text.strip()
    if text.lower() in ("cpu", "none", "0"):
        return ()
    match = re.fullmatch(r"(\d+)\s*[x×*]\s*(.+)", text)
    if not match or int(match.group(1)) < 1:
        raise UserError(f"--gpus {text!r}: write COUNTxKIND, e.g. 1xA100-80GB or 8x80GB "
                        f"(kinds: {', '.join(GPUS)}), or cpu")
    count, kind = int(match.group(1)), match.group(2)
    known = {name.lower(): gpu for name, gpu in GPUS.items()}
    if kind.lower() in known:
        gpu = known[kind.lower()]
    elif re.fullmatch(r"\d+(\.\d+)?\s*GB", kind, re.IGNORECASE):
        size = float(kind[:-2])
        gpu = GPU(f"{kind.upper()}", size * GIB * 0.99, True, 312e12, 19.5e12)
    else:
        raise UserError(f"--gpus {text!r}: unknown GPU kind {kind!r}; use one of "
                        f"{', '.join(GPUS)}, or a size such as 80GB")
    return (gpu,) * count


def visible_gpus() -> tuple[GPU, ...]:
    """The GPUs torch sees, with their real memory; speeds from GPUS when the name matches."""
    if not torch.cuda.is_available():
        return ()
    found = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gib = props.total_memory / GIB
        best = None
        for name, spec in GPUS.items():
            model = name.split("-")[0].replace("RTX", "")
            if model in props.name.replace(" ", "") and abs(spec.memory / GIB - gib) < 0.15 * gib:
                best = spec
        bf16 = props.major >= 8
        base = best or (GPUS["A100-80GB"] if bf16 else GPUS["V100-32GB"])
        found.append(GPU(props.name, float(props.total_memory), bf16, base.flops16,
                         base.flops32))
    return tuple(found)


def host_memory() -> float | None:
    """This machine's RAM in bytes (MemTotal), or None where /proc/meminfo is missing."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return None


def this_machine(device=None) -> Machine:
    """The GPUs of `device` ('cuda': all visible; 'cuda:1': from GPU 1 on; 'cpu': none)."""
    device = torch.device(device) if device is not None else None
    gpus = () if device is not None and device.type == "cpu" else visible_gpus()
    if device is not None and device.type == "cuda" and device.index:
        gpus = gpus[device.index:]
    return Machine(gpus, host_memory(), free_disk())


def free_disk() -> float | None:
    """Free bytes on the disk of the cache folder (resume checkpoints), or None if unknown."""
    import shutil

    from samrepro.io.files import cache_dir

    folder = cache_dir()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return float(shutil.disk_usage(folder).free)
    except OSError:
        return None


def resolve_dtype(dtype, machine: Machine) -> torch.dtype:
    """'auto' (or None): bf16 on GPUs that have it, fp16 on older GPUs; on the CPU bf16
    where it has AVX512-BF16/AMX, else fp32. A name or a torch dtype is kept."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if machine.gpus:
            return torch.bfloat16 if all(g.bf16 for g in machine.gpus) else torch.float16
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


# ---- the model ----------------------------------------------------------------------------

def model_config(spec: str) -> dict:
    """The config.json fields of a model spec, without its weights: a folder holding
    config.json, one of the paper's models (memory.PAPER_MODELS or its hub id: no hub
    needed), `embedded`, the models trained on PTB (models.PTB_MODELS), tiny-llama/tiny-opt, else the hub's config.json.
    'NAME@N' keeps the first N decoder layers."""
    from samrepro.io.models import (CHECKPOINTS, EMBEDDED, PTB_MODELS, TINY, embedded_checkpoint,
                                        tiny_model)
    from samrepro.io.models import split_model

    name, layers = split_model(spec)
    if Path(name).is_dir():
        path = Path(name) / "config.json"
        if not path.is_file():
            raise UserError(f"{name} holds no config.json: point --model at a checkpoint "
                            "folder (config.json is all the plan reads)")
        config = _read_config(path)
    elif name in memory.PAPER_MODELS or name in memory.HUB_IDS:
        config = dict(memory.PAPER_MODELS[memory.HUB_IDS.get(name, name)])
    elif name == EMBEDDED:
        config = _read_config(embedded_checkpoint() / "config.json")
    elif name in PTB_MODELS:
        config = _read_config(CHECKPOINTS / name / "config.json")
    elif name in TINY:
        config = tiny_model(name.removeprefix("tiny-")).config.to_dict()
    else:
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(name).to_dict()
        except (OSError, ValueError) as e:
            raise UserError(f"no config for model {name!r} ({str(e).splitlines()[0]}): give a "
                            "folder holding its config.json, or a hub id reachable from here") \
                from None
    if layers is not None:
        if not 1 <= layers <= config["num_hidden_layers"]:
            raise UserError(f"{spec}: the model has {config['num_hidden_layers']} layers")
        config["num_hidden_layers"] = layers
    return config


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable config.json ({type(e).__name__}): replace it "
                        "with the checkpoint's own") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise UserError(f"{path} has no model_type: it is not a transformers config.json")
    return config


# ---- costs --------------------------------------------------------------------------------

# Approximate tokens of the evaluation streams (METHOD.md §6) and of the lm-eval requests
# (documents × choices × tokens a request, per shot setting; an upper bound: the harness
# shares some contexts). Only the times use them.
STREAM_TOKENS = {"wikitext2": 340_000, "ptb": 115_000}
C4_WINDOWS = 256
LM_EVAL_TOKENS = {"zero-shot": 5.4e6, "leaderboard": 45e6}  # the leaderboard's extra shots


def _rates(machine: Machine) -> tuple[float, float, float]:
    """(FLOP/s in the model's dtype, FLOP/s in fp32, seconds per solver column)."""
    if not machine.gpus:
        return CPU_FLOPS, CPU_FLOPS, 0.0
    gpu = machine.gpus[0]
    return gpu.flops16 * UTILIZATION, gpu.flops32 * UTILIZATION, COLUMN_STEP_SECONDS


# ---- the plan -----------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    placement: str  # "1 GPU", "2 GPUs (device_map)", "1 GPU, activations on the CPU", "CPU", ...
    devices: int  # GPUs it uses (0: the CPU)
    peak: float  # bytes on the fullest device (host RAM on the CPU)
    seconds: float
    fits: bool
    note: str = ""


@dataclass
class Plan:
    model: str
    machine: Machine
    dtype: torch.dtype
    parameters: int
    steps: list[Step] = field(default_factory=list)
    host_peak: float = 0.0  # host RAM: the model (kept on the CPU) and offloaded activations
    disk: float = 0.0  # the pruning pass's resume checkpoints (resume.py, SAMREPRO_RESUME)

    @property
    def gpus_needed(self) -> int:
        return max([s.devices for s in self.steps] + [0])

    @property
    def fits(self) -> bool:
        host_ok = self.machine.host_bytes is None or self.host_peak <= self.machine.host_bytes
        return host_ok and all(s.fits for s in self.steps)

    @property
    def verdict(self) -> str:
        if not self.fits:
            return "does not fit"
        if not self.machine.gpus:
            return "fits on the CPU"
        n = self.gpus_needed
        return "fits on 1 GPU" if n <= 1 else f"needs {n} GPUs"

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def problem(self) -> str:
        """What does not fit and what to do about it (one line), or ''."""
        if self.machine.host_bytes is not None and self.host_peak > self.machine.host_bytes:
            return (f"{self.model} needs {self.host_peak / GIB:.0f} GiB of host RAM for its "
                    f"weights and offloaded activations; this machine has "
                    f"{self.machine.host_bytes / GIB:.0f} GiB: use one with more RAM, or lower "
                    "nsamples")
        for s in self.steps:
            if not s.fits:
                return f"{self.model}: {s.name} {s.note}"
        return ""


def _gib(b: float) -> str:
    return f"{b / GIB:.1f} GiB"


def _placement(n: int) -> str:
    return "1 GPU" if n == 1 else f"{n} GPUs (device_map)"


def hutchinson_devices(shape, seqlen: int, dtype, machine: Machine,
                       probe_batch: int = 1) -> tuple[int, bool, dict] | None:
    """(GPUs, streamed, memory.hutchinson_device_peak) of the cheapest placement of one probe
    on the machine's GPUs, or None if none holds it: the whole model on one GPU; else one GPU
    with the weights streamed from host RAM one decoder layer at a time (if the host holds
    them); else the fewest GPUs that hold it split by whole layers."""
    usable = min(g.memory for g in machine.gpus)
    one = memory.hutchinson_device_peak(shape, seqlen, dtype, 1, probe_batch,
                                        overhead_bytes=CUDA_OVERHEAD)
    if one["peak"] <= usable:
        return 1, False, one
    streamed = memory.hutchinson_device_peak(shape, seqlen, dtype, 1, probe_batch,
                                             overhead_bytes=CUDA_OVERHEAD, streamed=True)
    if streamed["peak"] <= usable and (machine.host_bytes is None
                                       or streamed["host"] <= machine.host_bytes):
        return 1, True, streamed
    for n in range(2, len(machine.gpus) + 1):
        e = memory.hutchinson_device_peak(shape, seqlen, dtype, n, probe_batch,
                                          overhead_bytes=CUDA_OVERHEAD)
        if e["peak"] <= usable:
            return n, False, e
    return None


def _min_devices(peak_of, usable: float, limit: int = 1024) -> int | None:
    for n in range(1, limit + 1):
        if peak_of(n) <= usable:
            return n
    return None


def plan_model(spec: str, machine: Machine, nsamples: int = 128, seqlen: int = 2048,
               dtype="auto", probes: int = 200, estimator: str = "hutchinson",
               eval_windows: int | None = None, eval_streams=("wikitext2", "ptb", "c4"),
               lm_eval_settings=("zero-shot", "leaderboard"), zero_shot_limit: int | None = None,
               batch_size: int = 8, config: dict | None = None) -> Plan:
    """The plan of one run of `spec` on `machine` (see the module's docstring)."""
    config = config if config is not None else model_config(spec)
    shape = shape_of(config)
    dtype = resolve_dtype(dtype, machine)
    b = torch.empty((), dtype=dtype).element_size()
    r16, r32, column_s = _rates(machine)
    on_gpu = bool(machine.gpus)
    plan = Plan(spec, machine, dtype, shape.parameters())
    usable = min(g.memory for g in machine.gpus) if on_gpu else (machine.host_bytes or math.inf)

    # the layer-by-layer pass: calibration forwards, then Hessians and the solver
    tokens = nsamples * seqlen
    parts = memory.pruning_parts(shape, nsamples, seqlen, dtype, batch_size)
    flops = memory.prune_flops(shape, tokens, seqlen)
    work = memory.pruning_work(shape, nsamples, seqlen, dtype, batch_size)
    forward_work, solver_work = work["forward"], work["solver"]
    base = parts["layer_weights"] + parts["batch_io"] + parts["hessians"]
    act = parts["activations"] + parts["rotary"]
    overhead = CUDA_OVERHEAD if on_gpu else 0.0
    offload = False
    if on_gpu:
        worst = base + max(forward_work, solver_work) + overhead
        offload = worst + act > usable
    for name, work, seconds in (
            ("calibration forwards", forward_work, flops["forward"] / r16),
            ("Hessians and solver", solver_work,
             (flops["hessian"] + flops["solver"]) / r32 + flops["columns"] * column_s)):
        peak = base + work + overhead + (0 if offload else act)
        if on_gpu:
            where = "1 GPU, activations on the CPU" if offload else "1 GPU"
            fits = peak <= usable
            note = "" if fits else (f"needs {_gib(peak)} on one GPU (one decoder layer, its "
                                    f"Hessians and the solver's fp32 work); the GPUs have "
                                    f"{_gib(usable)}: use GPUs with more memory")
            plan.steps.append(Step(name, where, 1, peak, seconds, fits, note))
        else:
            plan.steps.append(Step(name, "CPU", 0, peak, seconds, True))
    plan.host_peak = b * shape.parameters() + (act if offload else 0)
    plan.disk = resume_disk(shape, nsamples, seqlen, b)
    if not on_gpu:
        plan.host_peak += max(s.peak for s in plan.steps)

    # the sensitivity estimate: the whole model, once per model (cached)
    if estimator in ("hutchinson", "fisher"):
        name = "Hutchinson" if estimator == "hutchinson" else "Fisher"
        passes = PROBE_FORWARDS * probes if estimator == "hutchinson" else 3 * nsamples
        seconds = passes * memory.forward_flops(shape, seqlen, seqlen) / r16
        if on_gpu:
            found = hutchinson_devices(shape, seqlen, dtype, machine)
            if found:
                n, streamed, e = found
                where = _placement(n)
                if streamed:
                    where += f", weights streamed from {_gib(e['host'])} of host RAM"
                    seconds += probes * 2 * e["host"] / memory.HOST_TO_DEVICE  # 2 sweeps a probe
                note = ""
                if len(machine.gpus) >= 2 * n:
                    procs = len(machine.gpus) // n
                    note = (f"{procs}× faster with torchrun --nproc-per-node {procs} -m "
                            f"samrepro.commands.distributed --gpus-per-process {n} (same numbers)")
                plan.steps.append(Step(name, where, n, e["peak"], seconds, True, note))
                if streamed:
                    plan.host_peak = max(plan.host_peak, e["host"])
            else:
                need = _min_devices(lambda k: memory.hutchinson_device_peak(
                    shape, seqlen, dtype, k, 1, overhead_bytes=CUDA_OVERHEAD)["peak"], usable)
                one = memory.hutchinson_device_peak(shape, seqlen, dtype, 1, 1)
                plan.steps.append(Step(
                    name, "does not fit", need or 0, one["peak"], seconds, False,
                    f"needs {need} GPUs of {_gib(usable)} ({_gib(one['total'])} for one probe "
                    f"on 1×{seqlen} tokens); this machine has {len(machine.gpus)}: run on "
                    f"{need} GPUs, or run samrepro.commands.distributed under torchrun where they are and "
                    f"then the notebook with the same settings (it reads the estimate from the "
                    f"cache)"))
        else:
            e = memory.hutchinson_device_peak(shape, seqlen, dtype, 1, 1)
            fits = e["peak"] <= usable
            plan.steps.append(Step(name, "CPU", 0, e["peak"], seconds, fits,
                                   "" if fits else f"needs {_gib(e['peak'])} of RAM on the CPU; "
                                   f"this machine has {_gib(usable)}: run it on GPUs"))

    # evaluation: the whole model, EVAL_BATCH windows a forward (lm-eval: one request of up
    # to the model's context), placed by evaluation_devices
    windows = 0
    for stream in eval_streams:
        count = C4_WINDOWS if stream == "c4" else STREAM_TOKENS[stream] // seqlen
        windows += min(count, eval_windows) if eval_windows else count
    lm_tokens = sum(LM_EVAL_TOKENS[s] for s in lm_eval_settings)
    if zero_shot_limit:
        lm_tokens *= min(1.0, zero_shot_limit / 1000)  # ~1000+ documents a task
    context = config.get("max_position_embeddings") or seqlen
    for name, seconds, active in (
            ("perplexity", windows * memory.forward_flops(shape, seqlen, seqlen) / r16, bool(windows)),
            ("lm-eval", 2 * shape.parameters() * lm_tokens / r16, bool(lm_tokens))):
        if not active:
            continue
        length, batch = evaluation_batch(name, seqlen, context)
        if on_gpu:
            found = evaluation_devices(shape, length, batch, dtype, machine)
            if found:
                n, host_layers = found
                peak = _inference_peak(shape, length, batch, dtype, n, host_layers)
                plan.steps.append(Step(name, evaluation_where(n, host_layers), n, peak,
                                       seconds, True))
            else:
                e = memory.inference_device_peak(shape, length, dtype, 1, batch, 0)
                plan.steps.append(Step(name, "does not fit", 0, e["peak"], seconds, False,
                                       f"one decoder layer and the embeddings with "
                                       f"{batch}×{length} tokens need more than a GPU's "
                                       f"{_gib(usable)}: use GPUs with more memory"))
        else:
            e = memory.inference_device_peak(shape, length, dtype, 1, batch, 0)
            plan.steps.append(Step(name, "CPU", 0, e["peak"], seconds, True))
    return plan


def resume_disk(shape, nsamples: int, seqlen: int, element_bytes: int) -> float:
    """Disk the pruning pass's resume checkpoints take at most: every pruned decoder layer and
    one set of layer inputs (nsamples × seqlen × hidden), within the SAMREPRO_RESUME budget."""
    from samrepro.io.resume import resume_budget

    full = element_bytes * (shape.layers * shape.layer_parameters()
                            + nsamples * seqlen * shape.hidden)
    budget = resume_budget()
    return full if budget is None else min(full, budget)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render(plans: list[Plan]) -> str:
    """The plans as Markdown: one table row per model and step, then the verdicts."""
    lines = ["| model | step | placement | peak | time | note |", "|---|---|---|---|---|---|"]
    for p in plans:
        for s in p.steps:
            lines.append(f"| {p.model} | {s.name} | {s.placement} | {_gib(s.peak)} | "
                         f"{_duration(s.seconds)} | {s.note} |")
    lines.append("")
    for p in plans:
        host = ("" if p.machine.host_bytes is None else
                f" of {p.machine.host_bytes / GIB:.0f} GiB")
        size = (f"{p.parameters / 1e9:.2f}B" if p.parameters >= 1e9 else
                f"{p.parameters / 1e6:.1f}M")
        disk = f", resume checkpoints {_gib(p.disk)} of disk"
        if p.machine.disk_bytes is not None and p.disk > p.machine.disk_bytes:
            disk += (f" (more than the {_gib(p.machine.disk_bytes)} free: set SAMREPRO_RESUME=off "
                     "or a limit in GiB)")
        lines.append(f"- **{p.model}** on {p.machine.kind}, {str(p.dtype).removeprefix('torch.')}, "
                     f"{size} parameters, host RAM {_gib(p.host_peak)}{host}{disk}: "
                     f"**{p.verdict}**" + (f" ({p.problem()})" if not p.fits else ""))
    lines.append("")
    rate = (f"FLOPs at {UTILIZATION:.0%} of the GPU's nominal peak rate" if any(
        p.machine.gpus for p in plans) else f"FLOPs at {CPU_FLOPS / 1e9:.0f} GFLOP/s (measured "
        "on a 2-core CPU)")
    lines.append(f"Times per run: {rate}, a probe = {PROBE_FORWARDS} forwards; the sensitivity "
                 "estimate once per model (cached); peak = the fullest device (RAM on the CPU).")
    return "\n".join(lines)


def plan_settings(settings: dict, machine: Machine | None = None,
                  lm_eval: bool | None = None) -> list[Plan]:
    """The plans of a notebook's settings (settings.settings(): models, nsamples, seqlen,
    probes, estimator, eval_windows, device, batch_size, zero-shot settings, dtype).
    `lm_eval`: plan the lm-eval step (None: when the settings name zero-shot settings)."""
    machine = machine or this_machine(settings.get("device"))
    if lm_eval is False:
        settings = {**settings, "zero_shot_settings": ()}
    return [plan_model(spec, machine, settings.get("nsamples", 128), settings.get("seqlen", 2048),
                       settings.get("dtype", "auto"), settings.get("probes", 200),
                       settings.get("estimator", "hutchinson"), settings.get("eval_windows"),
                       lm_eval_settings=settings.get("zero_shot_settings") or (),
                       zero_shot_limit=settings.get("zero_shot_limit"),
                       batch_size=settings.get("batch_size", 8))
            for spec in settings["models"]]


def show(settings: dict, machine: Machine | None = None, lm_eval: bool | None = None) -> list[Plan]:
    """Print the plan of a notebook's settings (Markdown in a notebook); raise a UserError with
    the fix when a model does not fit (a sensitivity estimate that does not fit is only noted:
    the run may read it from the cache). Meant as a notebook's first cell at the paper preset:
    `plan.show(s)` (s = settings.settings(...); lm_eval=False where the notebook scores no
    accuracy). `machine`: plan for other GPUs than this machine's (e.g. Machine(parse_gpus(
    "8xA100-80GB")))."""
    plans = plan_settings(settings, machine, lm_eval)
    text = render(plans)
    # the sensitivity estimate is checked where it runs (experiments.sensitivity_for), after
    # the cache: one that samrepro.commands.distributed computed on other GPUs is read whatever this
    # machine holds, so a plan whose only problem is the estimate does not stop the notebook
    estimate_only = [p for p in plans if not p.fits and _estimate_only_problem(p)]
    for p in estimate_only:
        text += (f"\n\n**{p.model}**: the sensitivity estimate does not fit here; the run reads "
                 "it from the cache if `torchrun … -m samrepro.commands.distributed` computed it with "
                 "these settings, else it stops at that step with the fix")
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(text))
        else:
            print(text)
    except ImportError:
        print(text)
    bad = [p for p in plans if not p.fits and p not in estimate_only]
    if bad:
        raise UserError(bad[0].problem())
    return plans


def _estimate_only_problem(p: Plan) -> bool:
    """Whether the sensitivity estimate is the only step of `p` that does not fit, on GPUs (on
    the CPU a model that needs GPUs for it is refused outright)."""
    if not p.machine.gpus:
        return False
    host_ok = p.machine.host_bytes is None or p.host_peak <= p.machine.host_bytes
    misfits = {s.name for s in p.steps if not s.fits}
    return host_ok and bool(misfits) and misfits <= {"Hutchinson", "Fisher"}


# ---- placing a model ------------------------------------------------------------------------


def hutchinson_placement(model: nn.Module, seqlen: int, device, machine: Machine | None = None,
                         probe_batch: int = 1) -> dict:
    """Where the Hutchinson estimate of `model` runs: {"devices": [...], "checkpointing",
    "stream"} (stream: the decoder layers stay in host RAM and visit the one GPU in turn), by
    the same rule as plan_model's Hutchinson step; a UserError with the fix if it cannot."""
    device = torch.device(device)
    machine = machine or this_machine(device)
    try:
        shape = shape_of(model.config)
    except UserError:  # a family the memory model does not know (Baichuan): its one device
        return {"devices": [str(device)], "checkpointing": False}
    dtype = next(model.parameters()).dtype
    if device.type != "cuda":
        e = memory.hutchinson_device_peak(shape, seqlen, dtype, 1, probe_batch)
        if machine.host_bytes is not None and e["peak"] > machine.host_bytes:
            raise UserError(f"the Hutchinson estimate needs {_gib(e['peak'])} of RAM on the CPU "
                            f"({machine.host_bytes / GIB:.0f} GiB here): run it on GPUs "
                            "(samrepro plan says how many)")
        return {"devices": [str(device)], "checkpointing": False}
    if not machine.gpus:
        raise UserError(f"device {device} asked for, but no GPU is visible: use device cpu")
    found = hutchinson_devices(shape, seqlen, dtype, machine, probe_batch)
    if found is None:
        usable = min(g.memory for g in machine.gpus)
        need = _min_devices(lambda k: memory.hutchinson_device_peak(
            shape, seqlen, dtype, k, probe_batch, overhead_bytes=CUDA_OVERHEAD)["peak"], usable)
        raise UserError(f"the Hutchinson estimate needs {need} GPUs of {_gib(usable)}; "
                        f"{len(machine.gpus)} visible: run on {need} GPUs, or run "
                        "samrepro.commands.distributed under torchrun where they are and then this "
                        "with the same settings (it reads the estimate from the cache)")
    n, streamed, _ = found
    first = device.index or 0
    return {"devices": [f"cuda:{first + i}" for i in range(n)], "checkpointing": False,
            "stream": streamed}


# Modules outside the decoder layers that run after them although some models register them
# before (OPT's final_layer_norm and project_out), and ones that run before them although
# registered after (LLaMA's rotary embedding).
RUN_AFTER_LAYERS = ("norm", "final_layer_norm", "project_out", "lm_head")
RUN_BEFORE_LAYERS = ("rotary_emb",)


# Windows per perplexity forward (experiments.evaluate_model): 1.5× the tokens/s of one at a
# time in bf16 on 2 cores (benchmarks/bf16.py); the fp32 logits of 4 × 2048 tokens of a 32k
# vocabulary take 1 GiB, which the plan counts.
EVAL_BATCH = 4


def evaluation_batch(step: str, seqlen: int, context: int | None) -> tuple[int, int]:
    """(tokens a sequence, sequences a forward) of an evaluation step: perplexity runs
    EVAL_BATCH windows of `seqlen`; lm-eval one request at a time, of up to the model's
    `context` (lm-evaluation-harness truncates longer ones to it)."""
    if step == "perplexity":
        return seqlen, EVAL_BATCH
    return max(seqlen, context or seqlen), 1


def _inference_peak(shape, length: int, batch: int, dtype, gpus: int, host_layers: int) -> float:
    """Bytes on the fullest GPU: the layers kept on GPUs split over `gpus`, plus, with layers on
    the host, the one streamed to the first GPU while it runs (accelerate's offload)."""
    kept = dataclasses.replace(shape, layers=shape.layers - host_layers)
    streamed = _bytes(dtype) * shape.layer_parameters() if host_layers else 0
    return memory.inference_device_peak(kept, length, dtype, gpus, batch,
                                        CUDA_OVERHEAD)["peak"] + streamed


def _bytes(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def evaluation_devices(shape, length: int, batch: int, dtype,
                       machine: Machine) -> tuple[int, int] | None:
    """(GPUs, decoder layers on the host) where evaluation runs: the fewest of the machine's
    GPUs that hold the model split by whole layers; if all of them together do not, the
    fewest last layers kept in host RAM and streamed to the first GPU one at a time (slow,
    but it runs); None if not even that fits."""
    if not machine.gpus:
        return None
    usable = min(g.memory for g in machine.gpus)
    for n in range(1, len(machine.gpus) + 1):
        if _inference_peak(shape, length, batch, dtype, n, 0) <= usable:
            return n, 0
    n = len(machine.gpus)
    for host_layers in range(1, shape.layers + 1):
        if _inference_peak(shape, length, batch, dtype, n, host_layers) <= usable:
            return n, host_layers
    return None


def evaluation_where(gpus: int, host_layers: int) -> str:
    """The placement as the plan prints it."""
    where = _placement(gpus)
    if host_layers:
        where += f", {host_layers} layer{'s' if host_layers > 1 else ''} offloaded to the host"
    return where


def inference_placement(model: nn.Module, seqlen: int, device, machine: Machine | None = None,
                        step: str = "perplexity") -> dict:
    """Where evaluation step `step` (perplexity or lm-eval) runs `model`, by the rule of
    plan_model's step of that name: {"devices": [...], "host_layers": k}; its one device on
    the CPU; a UserError with the fix if it cannot fit."""
    device = torch.device(device)
    if device.type != "cuda":
        return {"devices": [str(device)], "host_layers": 0}
    machine = machine or this_machine(device)
    try:
        shape = shape_of(model.config)
    except UserError:  # a family the memory model does not know (Baichuan): its one device
        return {"devices": [str(device)], "host_layers": 0}
    if not machine.gpus:
        raise UserError(f"device {device} asked for, but no GPU is visible: use device cpu")
    dtype = next(model.parameters()).dtype
    length, batch = evaluation_batch(step, seqlen,
                                     getattr(model.config, "max_position_embeddings", None))
    found = evaluation_devices(shape, length, batch, dtype, machine)
    if found is None:
        raise UserError(f"{step}: one decoder layer and the embeddings with {batch}×{length} "
                        f"tokens need more than a GPU's {_gib(min(g.memory for g in machine.gpus))}"
                        ": use GPUs with more memory")
    n, host_layers = found
    first = device.index or 0
    return {"devices": [f"cuda:{first + i}" for i in range(n)], "host_layers": host_layers}


def shard_map(model: nn.Module, devices: list, host_layers: int = 0) -> dict[str, str]:
    """An accelerate device_map splitting `model` by whole decoder layers over `devices`
    (layer i on devices[i·k // layers]); what runs before the layers (embeddings) on the
    first, what runs after (final norm, LM head) on the last, or the LM head with the
    embedding when it shares its weight. The last `host_layers` layers go to "cpu": accelerate
    keeps their weights in host RAM and runs them on the first device (offload)."""
    from samrepro.io.models import architecture

    path = architecture(model).layers.split(".")
    layers = model.get_submodule(".".join(path))
    k, count = len(devices), len(layers)
    out: dict[str, str] = {}
    parent, prefix = model, ""
    for depth, part in enumerate(path):
        after = False
        for child, _module in parent.named_children():
            if child == part:
                after = True
                continue
            late = (after or child in RUN_AFTER_LAYERS) and child not in RUN_BEFORE_LAYERS
            out[prefix + child] = str(devices[-1] if late else devices[0])
        parent, prefix = getattr(parent, part), prefix + part + "."
    on_gpus = count - host_layers
    for i in range(count):
        out[f"{prefix}{i}"] = str(devices[i * k // on_gpus]) if i < on_gpus else "cpu"
    head = model.get_output_embeddings()
    if head is not None and head.weight is model.get_input_embeddings().weight:
        for name, module in model.named_modules():
            if module is head and name in out:
                out[name] = str(devices[0])
    return out


@contextlib.contextmanager
def placed(model: nn.Module, placement: dict):
    """Within the block `model` is where `placement` says ({"devices": [...],
    "checkpointing": bool, "stream": bool, "host_layers": k}): on its one device, its decoder
    layers streamed to it from where they are (models.streaming), or split over several by
    shard_map with accelerate's hooks (the last k layers offloaded to the host); afterwards it
    is back where it was, hooks removed."""
    from samrepro.io.models import layer_checkpointing, streaming

    devices = placement["devices"]
    home = next(model.parameters()).device
    host_layers = placement.get("host_layers", 0)
    sharded = len(devices) > 1 or host_layers > 0
    if placement.get("stream"):
        with streaming(model, devices[0]):
            yield model
        return
    if sharded:
        from accelerate import dispatch_model

        dispatch_model(model, device_map=shard_map(model, devices, host_layers),
                       main_device=devices[0])
    else:
        model.to(devices[0])
    try:
        with layer_checkpointing(model, placement.get("checkpointing", False)):
            yield model
    finally:
        if sharded:
            from accelerate.hooks import remove_hook_from_module

            remove_hook_from_module(model, recurse=True)
            if hasattr(model, "hf_device_map"):
                del model.hf_device_map
        model.to(home)
