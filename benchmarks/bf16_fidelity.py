"""Does bf16 change the science? fp32 against bf16 at a preset, with seed intervals (issue 15).

    python benchmarks/bf16_fidelity.py [--preset embedded] [--seeds 3] [--sparsity 0.5]

Runs the dense model, SparseGPT (uniform OBS) and the method (the preset's saliency and
allocation, its sensitivity estimated anew in each dtype) on the embedded model in float32
and in bfloat16, with the same calibration seeds and evaluation windows, through the run
cache (so the bf16 runs the notebooks made are reused). Prints per arm and stream each
dtype's perplexity with its 95% interval over seeds and windows (samrepro.stats), whether the
bf16 mean falls inside the fp32 interval, and the paired change bf16/fp32 − 1 with its
interval. Needs SAMREPRO_DATA_DIR (or the hub). At the embedded preset on a 2-core CPU
without AMX, about 15 minutes a seed for the fp32 arms.
"""

import argparse

from samrepro.claims import window_nll
from samrepro.settings import config, run_all, settings
from samrepro.stats import perplexity_interval, relative_change


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="embedded")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sparsity", type=float, default=0.5)
    args = parser.parse_args()
    s = settings(args.preset, seeds=args.seeds)
    arms = {"dense": dict(sparsity=0.0),
            "sparsegpt": dict(sparsity=args.sparsity, saliency="obs"),
            "the method": dict(sparsity=args.sparsity, saliency=s["saliency"],
                               allocation=s["allocation"])}
    runs = {}
    for arm, fields in arms.items():
        seeds = 1 if arm == "dense" else args.seeds  # the dense model reads no calibration
        for dtype in ("float32", "bfloat16"):
            configs = [config(s, args.model, seed=seed, dtype=dtype, **fields)
                       for seed in range(seeds)]
            runs[arm, dtype] = run_all(s, configs, desc=f"{arm}, {dtype}")
    print(f"{args.model} at the {args.preset} preset, {args.sparsity:.0%}, "
          f"{args.seeds} seeds (dense: 1) × {s['eval_windows']} windows a stream")
    for arm in arms:
        for stream in runs[arm, "float32"][0]["perplexity"]:
            fp32, bf16 = (window_nll(runs[arm, d], stream) for d in ("float32", "bfloat16"))
            a, b = perplexity_interval(fp32), perplexity_interval(bf16)
            change = relative_change(bf16, fp32)
            inside = "inside" if a.low <= b.estimate <= a.high else "OUTSIDE"
            print(f"  {arm:10s} {stream:9s} fp32 {a.estimate:8.3f} [{a.low:.3f}, {a.high:.3f}]"
                  f"  bf16 {b.estimate:8.3f} ({inside} the fp32 interval)"
                  f"  bf16/fp32 − 1: {change.estimate:+.2%} [{change.low:+.2%}, {change.high:+.2%}]")


if __name__ == "__main__":
    main()
