"""`make table1`'s wall time against its compute floor on this CPU, phase by phase (issue 32).

    flock /tmp/cpu.lock python benchmarks/floor.py [--probes 2] [--eval-windows 8]

In one process:
1. the machine's GEMM rates: bf16 and fp32 torch.matmul (the threads torch uses) at
   SmolLM2-135M's shapes (512 tokens × its layers' and LM head's matrices), FLOP/s;
2. one SmolLM2 run of Table 1 at the embedded preset (dtype auto), phase by phase: load
   (models.load_model), the pruning pass on 16 × 512 C4 windows at 50% (pipeline.prune_model:
   capture and forwards, Hessians, solver), evaluation (evaluate.perplexity at the run's batch
   on `--eval-windows` WikiText-2 windows, scaled to 3 streams × 32 windows) and a Hutchinson
   estimate (`--probes` probes of sensitivity.hutchinson, scaled to 16), after an untimed
   batch and probe (oneDNN's first calls build kernels: a run pays that once);
3. each phase's floor: its FLOPs over the rate of the GEMMs that do them: forwards
   (memory.forward_flops; the pruning pass runs every layer twice) at the bf16 rate, the
   Hessians 2XXᵀ (memory.prune_flops) at the bf16 rate on AMX (hessian.py's bf16 products,
   fp32 sums) else fp32, the solver at fp32, a probe at PROBE_FORWARD_UNITS forwards;
4. Table 1 (12 SmolLM2 runs: 4 arms × 3 seeds, each loading its model, and 3 estimates, one
   a seed; the OPT stand-in's runs, about a minute, left out) from those phases: an
   extrapolation from one run's phases, not a run of `make table1`.

Prints each phase's wall time, floor and multiple, and Table 1's. Timings on a shared
machine vary: run it alone. Needs SAMREPRO_DATA_DIR.
"""

import argparse
import time

import torch

# One layer-by-layer probe in forward-GEMM units per linear: the forward sweep (primal 1,
# tangent 2: ẋWᵀ and xzᵀ), the reverse sweep's recomputed forward (1), first backward (2)
# and the tangent of both of its outputs (4). sensitivity.probe_row.
PROBE_FORWARD_UNITS = 10
TABLE1 = {"runs": 12, "estimates": 3, "probes": 16, "streams": 3, "eval_windows": 32,
          "nsamples": 16, "seqlen": 512}


def gemm_rate(dtype, m: int, k: int, n: int, seconds: float = 1.0) -> float:
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - started)


def rates() -> dict:
    """Median-shape rates: the layer's projections and the LM head at 512 tokens."""
    shapes = [(512, 576, 1536), (512, 1536, 576), (512, 576, 576), (512, 576, 49152)]
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        per = [gemm_rate(dtype, *s, seconds=0.5) for s in shapes]
        out[name] = sorted(per)[len(per) // 2]
        out[name + "_shapes"] = per
    return out


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=2, help="Hutchinson probes timed")
    parser.add_argument("--eval-windows", type=int, default=8, help="evaluation windows timed")
    args = parser.parse_args()

    from samrepro.io.data import calibration_windows, eval_stream
    from samrepro.io.evaluate import perplexity
    from samrepro.study.experiments import EVAL_BATCH
    from samrepro.machine.hardware import DTYPES, has_amx, machine, resolve_dtype
    from samrepro.machine.memory import forward_flops, prune_flops, shape_of
    from samrepro.io.models import load_model, prunable_linears
    from samrepro.method.pipeline import prune_model
    from samrepro.method.sensitivity import (_OnlyWeightsTrainable, draw_probe, hutchinson,
                                                 probe_row)

    t = TABLE1
    r = rates()
    print(f"CPU: {machine()['cpu']}, {torch.get_num_threads()} threads, bf16 units "
          f"{machine()['bf16_units']}; GEMM rates: bf16 {r['bf16'] / 1e9:.0f} GFLOP/s, "
          f"fp32 {r['fp32'] / 1e9:.0f} GFLOP/s (median of SmolLM2's shapes at 512 tokens)")
    dtype = resolve_dtype("auto", torch.device("cpu"))
    (model, tokenizer), load_s = timed(lambda: load_model("embedded", DTYPES[dtype]))
    shape = shape_of(model.config)
    seqlen, tokens = t["seqlen"], t["nsamples"] * t["seqlen"]

    windows, _ = calibration_windows("c4", tokenizer, t["nsamples"], seqlen, seed=0)
    ids, _ = eval_stream("wikitext2", tokenizer, seqlen)
    # untimed first calls: oneDNN builds its kernels for each new shape once per process
    perplexity(model, ids, seqlen, EVAL_BATCH, batch_size=EVAL_BATCH, progress=False)
    with _OnlyWeightsTrainable(model) as params:
        probe_row(model, params, windows[:1], lambda i, p: draw_probe(9, 0, i, p))
    _, eval_s = timed(lambda: perplexity(model, ids, seqlen, args.eval_windows,
                                         batch_size=EVAL_BATCH, progress=False))
    eval_s *= t["streams"] * t["eval_windows"] / args.eval_windows
    est, _ = timed(lambda: hutchinson(model, windows, rel_tol=0.0, min_probes=args.probes,
                                      max_probes=args.probes, progress=False))
    probe_s = est["seconds"] / args.probes
    report, prune_s = timed(lambda: prune_model(
        model, windows, {n: 0.5 for n in prunable_linears(model)}, "isc", progress=False))
    sec = report["seconds"]

    f = prune_flops(shape, tokens, seqlen)
    hessian_rate = r["bf16"] if has_amx() else r["fp32"]
    fwd_token = forward_flops(shape, seqlen, seqlen) / seqlen
    layer_forward = f["forward"] / r["bf16"]  # the pass's two forwards of every layer
    phases = [  # (name, wall seconds of one run or estimate, floor seconds)
        ("load", load_s, 0.0),
        ("calibration forwards", prune_s - sec.get("hessian", 0) - sec.get("solver", 0),
         layer_forward),
        ("Hessians", sec.get("hessian", 0.0), f["hessian"] / hessian_rate),
        ("solver", sec.get("solver", 0.0), f["solver"] / r["fp32"]),
        ("evaluation", eval_s,
         t["streams"] * t["eval_windows"] * seqlen * fwd_token / r["bf16"]),
        ("Hutchinson (16 probes)", probe_s * t["probes"],
         t["probes"] * PROBE_FORWARD_UNITS * seqlen * fwd_token / r["bf16"]),
    ]
    print(f"\n{'phase':24s} {'wall s':>8s} {'floor s':>8s} {'multiple':>8s}")
    for name, wall, floor in phases:
        multiple = f"{wall / floor:8.1f}" if floor else "       -"
        print(f"{name:24s} {wall:8.1f} {floor:8.2f} {multiple}")
    run_wall = sum(w for n, w, _ in phases if not n.startswith("Hutchinson"))
    run_floor = sum(fl for n, _, fl in phases if not n.startswith("Hutchinson"))
    est_wall, est_floor = phases[-1][1], phases[-1][2]
    wall = t["runs"] * run_wall + t["estimates"] * est_wall
    floor = t["runs"] * run_floor + t["estimates"] * est_floor
    print(f"\none run {run_wall:.0f} s (floor {run_floor:.0f} s); one estimate {est_wall:.0f} s "
          f"(floor {est_floor:.0f} s, a probe {probe_s:.1f} s = "
          f"{probe_s * r['bf16'] / (seqlen * fwd_token):.1f} forwards at the bf16 rate)")
    print(f"Table 1 (SmolLM2 part, extrapolated: {t['runs']} runs + {t['estimates']} estimates): "
          f"{wall / 60:.1f} min against a floor of {floor / 60:.1f} min: {wall / floor:.2f}× "
          f"the floor")


if __name__ == "__main__":
    main()
