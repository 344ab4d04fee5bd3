"""Hutchinson traces in bf16 against fp32: same probes, same windows (issue 15).

    python benchmarks/hutchinson_precision.py [--probes 16] [--nsamples 8] [--seqlen 256]

Runs sensitivity.hutchinson on the embedded model loaded in fp32 and in bf16 with one seed
(so the same probe draws and the same calibration windows) and prints, per matrix, whether
the two estimates agree within 2 standard errors (the fp32 estimate's), the fraction that
do, the Spearman correlation of the two rankings, and each run's time.
"""

import argparse

import torch

from samrepro.io.data import calibration_windows
from samrepro.machine.hardware import DTYPES
from samrepro.io.models import load_model
from samrepro.method.sensitivity import hutchinson, spearman


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--probes", type=int, default=16)
    parser.add_argument("--nsamples", type=int, default=8)
    parser.add_argument("--seqlen", type=int, default=256)
    args = parser.parse_args()
    estimates = {}
    for dtype in ("float32", "bfloat16"):
        model, tokenizer = load_model(args.model, DTYPES[dtype])
        windows, _ = calibration_windows("c4", tokenizer, args.nsamples, args.seqlen, 0)
        estimates[dtype] = hutchinson(model, windows, rel_tol=0.0, max_probes=args.probes,
                                      seed=0, progress=False)
    a, b = (estimates[d]["matrices"] for d in ("float32", "bfloat16"))
    agree = [abs(a[n]["trace"] - b[n]["trace"]) <= 2 * a[n]["stderr"] for n in a]
    differences = [abs(a[n]["trace"] - b[n]["trace"]) / a[n]["stderr"] for n in a]
    print(f"{len(a)} matrices, {args.probes} probes on {args.nsamples}×{args.seqlen} windows")
    for d in ("float32", "bfloat16"):
        print(f"  {d}: {estimates[d]['seconds']:.1f} s")
    print(f"agree within 2 SE: {sum(agree)}/{len(agree)} ({sum(agree) / len(agree):.1%})")
    print(f"|bf16 − fp32| / SE: median {torch.tensor(differences).median():.3f}, "
          f"max {max(differences):.3f}")
    print(f"Spearman of the two rankings: "
          f"{spearman({n: v['trace'] for n, v in a.items()}, {n: v['trace'] for n, v in b.items()}):.4f}")


if __name__ == "__main__":
    main()
