"""Does bf16 change the science? fp32 against bf16 at a preset, with seed intervals (issue 15).

    python benchmarks/bf16_fidelity.py [--preset embedded] [--seeds 3] [--sparsity 0.5]

Runs the dense model, SparseGPT (uniform OBS) and the method (the preset's saliency and
allocation, its sensitivity estimated anew in each dtype) on the embedded model in float32
and in bfloat16, with the same calibration seeds and evaluation windows, through the run
cache (so the bf16 runs the notebooks made are reused). Prints per arm and stream each
dtype's perplexity with its 95% interval over seeds and windows (samrepro.study.stats), whether the
bf16 mean falls inside the fp32 interval, and the paired change bf16/fp32 − 1 with its
interval. Needs SAMREPRO_DATA_DIR (or the hub). At the embedded preset on a 2-core CPU
without AMX, 3 seeds took 35 minutes (the fp32 arms; results/embedded/TIMINGS.md).
"""

import argparse

from samrepro.study.claims import window_nll
from samrepro.study.settings import settings
from samrepro.study.stats import perplexity_interval, relative_change
from samrepro.study.tables import run_arms


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
    # as the tables run them: shared seeds, and the dense model (no calibration) run once
    runs = run_arms(s, {(arm, dtype): dict(model=args.model, dtype=dtype, **fields)
                        for arm, fields in arms.items() for dtype in ("float32", "bfloat16")},
                    "fp32 and bf16 arms")
    print(f"{args.model} at the {args.preset} preset, {args.sparsity:.0%}, "
          f"{args.seeds} seeds × {s['eval_windows']} windows a stream (an arm no seed changes: 1)")
    for arm in arms:
        for stream in runs[arm, "float32"][0]["perplexity"]:
            fp32, bf16 = (window_nll(runs[arm, d], stream) for d in ("float32", "bfloat16"))
            a, b = perplexity_interval(fp32), perplexity_interval(bf16)
            change = relative_change(bf16, fp32)
            inside = "inside" if a.low <= b.estimate <= a.high else "OUTSIDE"
            print(f"  {arm:10s} {stream:9s} fp32 {a.estimate:8.3f} [{a.low:.3f}, {a.high:.3f}]"
                  f"  bf16 {b.estimate:8.3f} ({inside} the fp32 interval)"
                  f"  bf16/fp32 − 1: {change.estimate:+.2%} "
                  f"[{change.low:+.2%}, {change.high:+.2%}]")


if __name__ == "__main__":
    main()
