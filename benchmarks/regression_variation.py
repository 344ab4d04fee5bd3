"""How much the smoke regression numbers move under another float rounding (issue 16).

    python benchmarks/regression_variation.py [--tables table1,table2,figure1]

Computes the smoke preset's tables twice, in two fresh processes with empty run caches: with
2 torch threads (as the tests run) and with 1 (other reduction orders in every matmul: what
another machine of this kind changes). Prints, per table, the largest relative move of any
cell and the cell it was in, so that each tolerance in samrepro.report.TOLERANCES can be
set from a measurement (tests/regression/README.md records them).
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
    from samrepro import report, settings
    from samrepro import tables as builders

    s = settings.settings("smoke", output_dir=str(out.parent / "results"))
    found = {}
    for name in tables:
        df = getattr(builders, name)(s)[0]
        df = df.drop(columns=[c for c in report.IGNORED_COLUMNS if c in df.columns])
        found[name] = df.to_dict(orient="records")
    out.write_text(json.dumps(found))


def largest_move(a: list[dict], b: list[dict], degenerate: bool) -> tuple[float, str]:
    """The largest relative move among ordinary values (or among those of DEGENERATE and up:
    the cut model's chance-level perplexities, which report.check_regression compares at
    DEGENERATE_RTOL)."""
    from samrepro.report import DEGENERATE

    worst, where = 0.0, ""
    for i, (ra, rb) in enumerate(zip(a, b)):
        for column, value in ra.items():
            other = rb[column]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value \
                    and (abs(value) >= DEGENERATE) == degenerate:
                move = abs(other - value) / abs(value)
                if not math.isnan(move) and move > worst:
                    worst, where = move, f"row {i} {column}: {value:.6g} vs {other:.6g}"
    return worst, where


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
    with tempfile.TemporaryDirectory() as scratch:
        for threads in (2, 1):
            cache = Path(scratch) / f"cache-{threads}"
            cache.mkdir()
            converted = Path(os.environ.get("SAMREPRO_CACHE_DIR")
                             or Path.home() / ".cache" / "samrepro") / "smollm2-135m"
            if converted.is_dir():
                (cache / "smollm2-135m").symlink_to(converted.resolve())
            out = Path(scratch) / f"{threads}.json"
            subprocess.run([sys.executable, __file__, "--tables", args.tables, "--threads",
                            str(threads), "--out", str(out)], check=True,
                           env={**os.environ, "SAMREPRO_CACHE_DIR": str(cache)})
            runs[threads] = json.loads(out.read_text())
    for name in names:
        for degenerate in (False, True):
            worst, where = largest_move(runs[2][name], runs[1][name], degenerate)
            kind = "values ≥ 1e4" if degenerate else "other values"
            print(f"{name:12} {kind:13} largest relative move, 1 vs 2 threads: {worst:.2e}  ({where})")


if __name__ == "__main__":
    main()
