"""Pruning cost on the embedded model: wall time split, peak memory, solver time per matrix.

    python benchmarks/prune_speed.py [--nsamples 32] [--seqlen 512] [--saliency obs]

Prints the wall time of one pruning pass split into calibration capture, layer forwards,
Hessian accumulation and solver; the peak resident memory against the model's own size; and
the median solver time for a 1536×576 and a 576×1536 matrix. Targets (issue 2): solver +
accumulation ≤ 25% of the wall time, peak ≤ 3 GiB at 32×512, no extra copy of the model.
"""

import argparse
import os
import resource
import statistics
import time

import torch

from samrepro.io.data import calibration_windows
from samrepro.io.models import load_model, prunable_linears
from samrepro.method.pipeline import prune_model
from samrepro.method.solver import prune_weight


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def solver_median(rows: int, cols: int, saliency: str, repeats: int = 5) -> float:
    torch.manual_seed(0)
    X = torch.randn(8192, cols)
    H = 2 * X.T @ X / X.shape[0]
    W = torch.randn(rows, cols)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        prune_weight(W, H, 0.5, saliency)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--saliency", default="obs")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for rows, cols in ((1536, 576), (576, 1536)):
        print(f"solver {rows}x{cols} ({args.saliency}, 50%): median of 5 = "
              f"{solver_median(rows, cols, args.saliency) * 1000:.1f} ms")

    model, tokenizer = load_model("embedded")
    model_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    sum(float(p.detach().sum()) for p in model.parameters())  # page in every weight first
    windows, corpus = calibration_windows("c4", tokenizer, args.nsamples, args.seqlen, seed=0)
    before = rss_mib()
    t = time.perf_counter()
    report = prune_model(model, windows, {n: 0.5 for n in prunable_linears(model)},
                         saliency=args.saliency, batch_size=args.batch_size, progress=False)
    wall = time.perf_counter() - t
    s = report["seconds"]
    print(f"calibration: {args.nsamples}x{args.seqlen} tokens from {corpus.source}")
    print(f"pruning wall time {wall:.1f} s: capture {s.get('capture', 0):.1f} s, "
          f"forwards {s['forward']:.1f} s, Hessians {s['hessian']:.1f} s, "
          f"solver {s['solver']:.1f} s, other {wall - sum(s.values()):.1f} s")
    share = (s["hessian"] + s["solver"]) / wall
    print(f"solver + accumulation = {share:.0%} of the wall time (target <= 25%)")
    print(f"model {model_mib:.0f} MiB; RSS before pruning {before:.0f} MiB; "
          f"peak RSS {peak_rss_mib():.0f} MiB (target <= 3072); "
          f"peak minus before = {peak_rss_mib() - before:.0f} MiB (an extra model copy would be "
          f">= {model_mib:.0f})")


if __name__ == "__main__":
    main()
