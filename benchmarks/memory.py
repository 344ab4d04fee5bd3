"""What holds the resident memory of an embedded run (issue 15's memory figures).

    python benchmarks/memory.py [--dtype auto] [--stages load,evaluate,prune,hutchinson,...]

Each stage runs in a fresh process, so its peak resident set (the kernel's high-water mark,
ru_maxrss) is its own: loading the embedded model (SmolLM2-135M); scoring 8 windows of 512
tokens of WikiText-2 a batch of 4 (the run's evaluation batch); a SparseGPT 50% pass at
16 × 512; one Hutchinson probe on one 512-token window at `--probe-seqlen` tokens (512 in the
estimates), side by side: layer by layer as the estimate runs (`hutchinson`,
sensitivity.probe_row) and the whole model's double backward it replaced
(`hutchinson-whole-model`, sensitivity.probe_row_whole_model, the reference); and a whole run as `make table1` does one
(experiments.run: Hutchinson estimate, mixed allocation, pruning and three evaluation
streams). A notebook's kernel holds the largest of these. `peak RSS` is the process's
high-water mark (loading's transient included), `after load` that mark once the model is
loaded, `work` what the stage's work adds to the resident set above the loaded model
(memory.measure_peak; it reads low where the work reuses memory that loading freed and
glibc kept). Needs SAMREPRO_DATA_DIR.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

STAGES = ("load", "evaluate", "prune", "hutchinson", "hutchinson-whole-model", "run")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(name: str, dtype: str, probe_seqlen: int = 512) -> dict:
    import torch

    from samrepro.machine.hardware import DTYPES, resolve_dtype
    from samrepro.io.models import load_model

    torch.manual_seed(0)
    resolved = resolve_dtype(dtype, torch.device("cpu"))
    started = time.perf_counter()
    if name == "run":
        from samrepro.study.experiments import RunConfig, run

        config = RunConfig(model="embedded", sparsity=0.5, saliency="isc", allocation="paper",
                           nsamples=16, seqlen=512, eval=("wikitext2", "ptb", "c4"),
                           eval_windows=32, probes=16, rel_tol=0.2, dtype=dtype)
        run(config, progress=False)
        return {"seconds": time.perf_counter() - started, "dtype": resolved}
    from samrepro.machine.memory import measure_peak

    model, tokenizer = load_model("embedded", DTYPES[resolved])
    model.eval()
    loaded = peak_mib()
    _, above = measure_peak(lambda: work(name, model, tokenizer, probe_seqlen))
    return {"loaded_mib": round(loaded), "above_mib": round(above / 2 ** 20),
            "seconds": time.perf_counter() - started, "dtype": resolved}


def work(name: str, model, tokenizer, probe_seqlen: int) -> None:
    """A stage's work on the loaded model."""
    from samrepro.io.data import calibration_windows, eval_stream
    from samrepro.io.evaluate import perplexity

    if name == "evaluate":
        ids, _ = eval_stream("wikitext2", tokenizer, 512)
        perplexity(model, ids, 512, 8, batch_size=4, progress=False)
    elif name == "prune":
        from samrepro.method.pipeline import prune_model

        from samrepro.io.models import prunable_linears

        windows, _ = calibration_windows("c4", tokenizer, 16, 512, seed=0)
        prune_model(model, windows, {name: 0.5 for name in prunable_linears(model)},
                    saliency="obs", progress=False)
    elif name.startswith("hutchinson"):
        from samrepro.method import sensitivity

        windows, _ = calibration_windows("c4", tokenizer, 1, probe_seqlen, seed=0)
        row = (sensitivity.probe_row_whole_model if name.endswith("whole-model")
               else sensitivity.probe_row)
        with sensitivity._OnlyWeightsTrainable(model) as params:
            row(model, params, windows, lambda i, p: sensitivity.draw_probe(0, 0, i, p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--probe-seqlen", type=int, default=512,
                        help="the Hutchinson stages' window (the estimates use 512)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # a child process: one stage
    args = parser.parse_args()
    if args.stage:
        r = stage(args.stage, args.dtype, args.probe_seqlen)
        # measure_peak resets the high-water mark: the process's peak is the larger of both
        print(json.dumps({**r, "peak_mib": round(max(peak_mib(), r.get("loaded_mib", 0)))}))
        return
    env = dict(os.environ)
    env.setdefault("SAMREPRO_CACHE_DIR", tempfile.mkdtemp(prefix="samrepro-memory-"))
    print(f"{'stage':26s} {'dtype':9s} {'peak RSS MiB':>12s} {'after load':>10s} "
          f"{'work MiB':>8s} {'seconds':>8s}")
    for name in args.stages.split(","):
        if name not in STAGES:
            sys.exit(f"unknown stage {name!r}: choose from {', '.join(STAGES)}")
        done = subprocess.run([sys.executable, __file__, "--stage", name, "--dtype", args.dtype,
                               "--probe-seqlen", str(args.probe_seqlen)],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"stage {name} failed:\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:26s} {r['dtype']:9s} {r['peak_mib']:12d} {r.get('loaded_mib', ''):>10} "
              f"{r.get('above_mib', ''):>8} {r['seconds']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
