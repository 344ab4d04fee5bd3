"""How much the smoke regression numbers move under another float rounding (issue 16).

    python benchmarks/regression_variation.py [--tables table1,table2,figure1]

Computes the smoke preset's tables three times, in fresh processes with empty run caches:
with 2 torch threads (as the tests run), with 1 (other reduction orders in the matmuls large
enough to be split), and with 2 threads on AVX2 kernels (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA
and MKL_ENABLE_INSTRUCTIONS capped at AVX2: other microkernels and another bf16 product path
in every matmul, however small, which is what another CPU of this kind changes). Prints, per
table, the largest relative move of any cell against the first run and the cell it was in, so
that each tolerance in samrepro.study.report.TOLERANCES can be set from a measurement
(tests/regression/README.md records them).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def compute(tables: list[str], threads: int, out: Path) -> None:
    import torch

    torch.set_num_threads(threads)
    from samrepro.study import report, settings
    from samrepro.study import tables as builders

    s = settings.settings("smoke", output_dir=str(out.parent / "results"))
    found = {}
    for name in tables:
        df = getattr(builders, name)(s)[0]
        df = df.drop(columns=[c for c in report.IGNORED_COLUMNS if c in df.columns])
        found[name] = df.to_dict(orient="records")
    out.write_text(json.dumps(found))


def largest_move(a: list[dict], b: list[dict]) -> tuple[float, str, float]:
    """The largest relative move of a cell from run a to run b, where it was, and the largest
    absolute move."""
    worst, where, absolute = 0.0, "", 0.0
    for i, (ra, rb) in enumerate(zip(a, b)):
        for column, value in ra.items():
            other = rb[column]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value:
                move = abs(other - value) / abs(value)
                if math.isnan(move):
                    continue
                absolute = max(absolute, abs(other - value))
                if move > worst:
                    worst, where = move, f"row {i} {column}: {value:.6g} vs {other:.6g}"
    return worst, where, absolute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="table1,table2,table4,figure1,figure2,figure3")
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.tables.split(",")
    if args.threads:
        return compute(names, args.threads, Path(args.out))
    runs = {}
    avx2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    variants = {"2 threads": (2, {}), "1 thread": (1, {}), "AVX2 kernels": (2, avx2)}
    with tempfile.TemporaryDirectory() as scratch:
        for label, (threads, env) in variants.items():
            cache = Path(scratch) / f"cache-{label.replace(' ', '-')}"
            cache.mkdir()
            out = cache / "tables.json"
            subprocess.run([sys.executable, __file__, "--tables", args.tables, "--threads",
                            str(threads), "--out", str(out)], check=True,
                           env={**os.environ, **env, "SAMREPRO_CACHE_DIR": str(cache)})
            runs[label] = json.loads(out.read_text())
    for name in names:
        for label in list(variants)[1:]:
            worst, where, absolute = largest_move(runs["2 threads"][name], runs[label][name])
            print(f"{name:8} {label:12} vs 2 threads: largest relative move {worst:.2e} "
                  f"({where}); largest absolute move {absolute:.2e}")


if __name__ == "__main__":
    main()
