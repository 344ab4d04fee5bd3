"""Cost against model size: peak memory and wall time of pruning and of the Hutchinson estimate.

    flock /tmp/cpu.lock python benchmarks/scaling.py [--out results/embedded]

Runs each case in its own process (MALLOC_MMAP_THRESHOLD_=65536, peak through
samrepro.machine.memory.measure_peak): tiny-llama, the embedded model cut to 2/8/16 layers and whole
(30), pruning (SparseGPT 50%, 8×256 calibration) and Hutchinson (2 probes, 1×256 each);
then the calibration size at 8 layers (4/8/16×256 for pruning, seqlen 128/256/512 for a
probe). Prints and writes scaling.{json,md}: measured against predicted peaks
(samrepro.machine.memory), least-squares slopes per layer and per calibration token, the CPU's
effective FLOP rate, and the projected cost for LLaMA-13B on one 80 GB GPU under stated
assumptions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from samrepro.machine.memory import A100 as GPU  # the assumed GPU of the projection
from samrepro.machine.memory import COLUMN_STEP_SECONDS, UTILIZATION
from samrepro.machine.memory import forward_flops, prune_flops

PROBE_FORWARDS = None  # measured: a probe costs this many forwards (set from the runs)


def run_case(case: dict) -> dict:
    """One measurement, in this (fresh) process."""
    torch.set_num_threads(2)
    from samrepro.machine.memory import estimate_memory, measure_peak
    from samrepro.io.models import load_model, prunable_linears, tiny_model
    from samrepro.method.pipeline import prune_model
    from samrepro.method.sensitivity import hutchinson

    warm = tiny_model("llama", vocab_size=64)  # load kernels and libraries before measuring
    ids = torch.randint(0, 64, (2, 32))
    prune_model(warm, ids, {k: 0.5 for k in prunable_linears(warm)}, progress=False)
    hutchinson(warm, ids, rel_tol=0, min_probes=2, max_probes=2, progress=False)

    model, _ = load_model(case["model"], num_layers=case.get("layers"))
    for p in model.parameters():
        p.data = p.data.clone()  # resident (not the safetensors mmap) before measuring
    n, s = case["nsamples"], case["seqlen"]
    ids = torch.randint(0, model.config.vocab_size, (n, s),
                        generator=torch.Generator().manual_seed(0))
    if case["what"] == "prune":
        def fn():
            return prune_model(model, ids, {k: 0.5 for k in prunable_linears(model)},
                               batch_size=8, progress=False)
    else:  # the one Hutchinson loop (sensitivity.hutchinson), with or without checkpointing
        def fn():
            return hutchinson(model, ids, rel_tol=0, min_probes=2, max_probes=case["probes"],
                              batch_size=1, progress=False,
                              checkpointing=case.get("checkpointing", False))
    t = time.perf_counter()
    report, peak = measure_peak(fn)
    wall = time.perf_counter() - t
    with torch.no_grad():  # one forward on one window, for the probe/forward ratio
        t = time.perf_counter()
        model(input_ids=ids[:1], use_cache=False)
        forward = time.perf_counter() - t
    e = estimate_memory(model.config, n, s, 1e15, torch.float32, batch_size=8, probe_batch=1,
                        overhead_bytes=0)
    part = e["pruning"] if case["what"] == "prune" else e["hutchinson"]
    resident = part["parts"].get("layer_weights", 0) + part["parts"].get("weights", 0)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {**case, "wall_s": wall, "forward_1window_s": forward,
            "seconds": report.get("seconds") if isinstance(report, dict) else None,
            "layers": model.config.num_hidden_layers, "weights_mib": weights / 2**20,
            "measured_peak_above_model_mib": peak / 2**20,
            "predicted_peak_above_model_mib": (sum(part["parts"].values()) - resident) / 2**20}


def cases() -> list[dict]:
    out = []
    for what, extra in (("prune", {"nsamples": 8, "seqlen": 256}),
                        ("hutchinson", {"nsamples": 2, "seqlen": 256, "probes": 2})):
        out.append({"what": what, "model": "tiny-llama", "layers": None, "series": "size", **extra})
        for layers in (2, 8, 16, 30):
            out.append({"what": what, "model": "embedded", "layers": layers, "series": "size",
                        **extra})
    for n in (4, 16):
        out.append({"what": "prune", "model": "embedded", "layers": 8, "series": "tokens",
                    "nsamples": n, "seqlen": 256})
    for s in (128, 512):
        out.append({"what": "hutchinson", "model": "embedded", "layers": 8, "series": "tokens",
                    "nsamples": 2, "seqlen": s, "probes": 2})
    for flag in (False, True):
        out.append({"what": "hutchinson", "model": "embedded", "layers": 8,
                    "series": "checkpointing", "nsamples": 2, "seqlen": 256, "probes": 2,
                    "checkpointing": flag})
    return out


def slope(xs, ys) -> tuple[float, float]:
    """Least-squares (intercept, slope)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="results/embedded")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return

    from samrepro.io.files import write_json, write_text
    from samrepro.machine.memory import GIB, estimate_memory, shape_of
    from samrepro.io.models import load_model

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    rows, started = [], time.perf_counter()
    for case in cases():
        done = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], env=env,
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['what']:10s} {row['model']:10s} layers {row['layers']:2d} "
              f"{row['nsamples']}x{row['seqlen']}: {row['wall_s']:6.1f} s, peak above model "
              f"{row['measured_peak_above_model_mib']:7.1f} MiB (predicted "
              f"{row['predicted_peak_above_model_mib']:7.1f}), weights {row['weights_mib']:.0f} MiB",
              flush=True)

    config = load_model("embedded")[0].config
    fits, rates = {}, {}
    for what in ("prune", "hutchinson"):
        size = [r for r in rows if r["what"] == what and r["series"] == "size"
                and r["model"] == "embedded"]
        a, b = slope([r["layers"] for r in size], [r["wall_s"] for r in size])
        am, bm = slope([r["layers"] for r in size],
                       [r["measured_peak_above_model_mib"] for r in size])
        tok = [r for r in rows if r["what"] == what and r["model"] == "embedded"
               and r["layers"] == 8 and r["series"] != "checkpointing"]
        tokens = [r["nsamples"] * r["seqlen"] if what == "prune" else r["seqlen"] for r in tok]
        at, bt = slope(tokens, [r["wall_s"] for r in tok])
        amt, bmt = slope(tokens, [r["measured_peak_above_model_mib"] for r in tok])
        fits[what] = {"seconds_per_layer": b, "seconds_intercept": a,
                      "peak_mib_per_layer": bm, "seconds_per_token_at_8_layers": bt,
                      "peak_mib_per_token_at_8_layers": bmt}
    # the CPU's effective FLOP rate, from the full embedded model
    full = {r["what"]: r for r in rows if r["series"] == "size" and r["layers"] == 30}
    shape30 = shape_of(config)
    pf = prune_flops(shape30, 8 * 256, 256)
    rates["prune_cpu_flops_per_s"] = (pf["forward"] + pf["hessian"] + pf["solver"]) / full["prune"]["wall_s"]
    probe_s = full["hutchinson"]["wall_s"] / 2
    probe_forwards = probe_s / full["hutchinson"]["forward_1window_s"]
    rates["probe_in_forwards"] = probe_forwards

    # projection: LLaMA-13B, the paper's protocol, on one 80 GB GPU
    shape13 = shape_of("llama-13b")
    tokens = 128 * 2048
    f = prune_flops(shape13, tokens, 2048)
    r16, r32 = GPU.flops16 * UTILIZATION, GPU.flops32 * UTILIZATION
    prune_s = (f["forward"] / r16 + (f["hessian"] + f["solver"]) / r32
               + f["columns"] * COLUMN_STEP_SECONDS)
    probe13 = probe_forwards * forward_flops(shape13, 2048, 2048) / r16
    mem = estimate_memory("llama-13b", 128, 2048, GPU.memory, torch.float16)
    projection = {
        "model": "llama-13b", "protocol": "128x2048 calibration, fp16 weights, fp32 Hessians/solver",
        "gpu": {"name": GPU.name, "bytes": GPU.memory, "fp16_flops": GPU.flops16,
                "fp32_flops": GPU.flops32, "utilization": UTILIZATION,
                "column_step_seconds": COLUMN_STEP_SECONDS},
        "pruning_flops": f, "pruning_seconds": prune_s,
        "pruning_peak_gib": mem["pruning"]["peak"] / GIB,
        "pruning_placement": mem["pruning"]["placement"],
        "host_ram_gib": mem["pruning"]["host"] / GIB,
        "probe_seconds_1x2048": probe13, "probe_forwards": probe_forwards,
        "hutchinson_peak_gib_1x2048": mem["hutchinson"]["peak"] / GIB,
        "hutchinson_gpus_needed": mem["hutchinson"]["min_devices"],
        "hutchinson_64_probes_seconds": 64 * probe13,
    }
    result = {"cases": rows, "fits": fits, "rates": rates, "projection": projection,
              "torch": torch.__version__, "threads": 2, "benchmark_seconds": time.perf_counter() - started}
    write_json(os.path.join(args.out, "scaling.json"), result)
    write_text(os.path.join(args.out, "scaling.md"), markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = ["# Cost against model size (benchmarks/scaling.py, 2-core CPU, fp32)", "",
             "| task | model | layers | calibration | wall (s) | peak above model (MiB) | predicted (MiB) | weights (MiB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["cases"]:
        calib = (f"{r['nsamples']}×{r['seqlen']}" if r["what"] == "prune"
                 else f"{r['probes']} probes × 1×{r['seqlen']}")
        if "checkpointing" in r:
            calib += ", layer checkpointing" if r["checkpointing"] else ", no checkpointing"
        lines.append(f"| {r['what']} | {r['model']} | {r['layers']} | {calib} | {r['wall_s']:.1f} | "
                     f"{r['measured_peak_above_model_mib']:.0f} | "
                     f"{r['predicted_peak_above_model_mib']:.0f} | {r['weights_mib']:.0f} |")
    f, p = result["fits"], result["projection"]
    lines += ["", "Slopes (least squares over the embedded model cut to 2/8/16/30 layers; tokens at 8 layers):", ""]
    for what, fit in f.items():
        unit = "calibration token" if what == "prune" else "token of the probe window"
        lines.append(f"- {what}: {fit['seconds_per_layer']:.2f} s and "
                     f"{fit['peak_mib_per_layer']:.1f} MiB per decoder layer; "
                     f"{fit['seconds_per_token_at_8_layers'] * 1000:.2f} ms and "
                     f"{fit['peak_mib_per_token_at_8_layers'] * 1024:.0f} KiB per {unit}")
    g = p["gpu"]
    lines += ["", f"Projection, LLaMA-13B at the paper's protocol on one {g['name']} "
              f"(assumed: {g['fp16_flops'] / 1e12:.0f} TFLOP/s fp16, {g['fp32_flops'] / 1e12:.1f} "
              f"TFLOP/s fp32 (no TF32), {g['utilization']:.0%} of peak, "
              f"{g['column_step_seconds'] * 1e6:.0f} µs per solver column step):", "",
              f"- pruning: ~{p['pruning_seconds'] / 60:.0f} min, peak {p['pruning_peak_gib']:.1f} GiB "
              f"on the GPU ({p['pruning_placement']}), {p['host_ram_gib']:.0f} GiB host RAM for the model",
              f"- Hutchinson: one probe on 1×2048 needs {p['hutchinson_peak_gib_1x2048']:.0f} GiB "
              f"({p['hutchinson_gpus_needed']} × 80 GB GPUs with device_map=auto); "
              f"~{p['probe_seconds_1x2048']:.1f} s per probe if compute-bound "
              f"(a probe = {p['probe_forwards']:.1f} forwards, measured here); "
              f"64 probes ~{p['hutchinson_64_probes_seconds'] / 60:.0f} min on one process"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
