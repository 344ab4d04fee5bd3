"""fp32 against bf16 on this CPU, side by side in one run (issue 15's speed figures).

    python benchmarks/bf16.py [--nsamples 16] [--seqlen 512] [--repeats 3]

Prints, for the embedded model (SmolLM2-135M) in each dtype: forward tokens/s at 512 tokens
(batch 1 and 4); one forward+backward and one Hutchinson probe (a double backward); a
SparseGPT 50% pruning pass split into layer forwards, Hessian accumulation and solver; and
the solver on one 1536×576 matrix, unstructured against 2:4. Medians over --repeats, and the
bf16/fp32 ratios. The two dtypes run interleaved so that a change of machine speed during the
run hits both alike. Needs SAMREPRO_DATA_DIR (or the hub) for the calibration windows.
"""

import argparse
import statistics
import time

import torch

from samrepro.io.data import calibration_windows
from samrepro.machine.hardware import DTYPES, machine
from samrepro.io.models import load_model, prunable_linears
from samrepro.method.pipeline import prune_model
from samrepro.method.sensitivity import _OnlyWeightsTrainable, probe_row
from samrepro.method.solver import prune_weight


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def forward_seconds(model, ids) -> float:
    with torch.no_grad():
        return timed(lambda: model(input_ids=ids, use_cache=False))


def backward_seconds(model, ids) -> float:
    with _OnlyWeightsTrainable(model) as params:
        return timed(lambda: torch.autograd.grad(
            model(input_ids=ids, labels=ids, use_cache=False).loss, params))


def probe_seconds(model, ids) -> float:
    generator = torch.Generator().manual_seed(0)
    with _OnlyWeightsTrainable(model) as params:
        return timed(lambda: probe_row(model, params, ids, lambda _i, p: torch.randn(
            p.shape, generator=generator).to(p.dtype)))


def pruning_parts(name, dtype, windows) -> dict:
    model, _ = load_model(name, DTYPES[dtype])
    sizes = prunable_linears(model)
    t = time.perf_counter()
    report = prune_model(model, windows, dict.fromkeys(sizes, 0.5), "obs", progress=False)
    return {**report["seconds"], "wall": time.perf_counter() - t}


def solver_seconds(nm: bool) -> float:
    torch.manual_seed(0)
    X = torch.randn(8192, 576)
    H = 2 * X.T @ X / X.shape[0]
    W = torch.randn(1536, 576)
    return timed(lambda: prune_weight(W, H, 0.5, "obs", *((2, 4) if nm else (0, 0))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--nsamples", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    dtypes = ("float32", "bfloat16")
    models = {d: load_model(args.model, DTYPES[d]) for d in dtypes}
    tokenizer = models["float32"][1]
    windows, _ = calibration_windows("c4", tokenizer, args.nsamples, args.seqlen, 0)
    one, four = windows[:1], windows[:4]
    figures: dict[str, dict[str, list[float]]] = {}

    def record(what, dtype, value):
        figures.setdefault(what, {}).setdefault(dtype, []).append(value)

    for _ in range(args.repeats):
        for d in dtypes:
            model = models[d][0]
            record("forward tokens/s (batch 1)", d, one.numel() / forward_seconds(model, one))
            record("forward tokens/s (batch 4)", d, four.numel() / forward_seconds(model, four))
            record("forward+backward s (1 window)", d, backward_seconds(model, one))
            record("Hutchinson probe s (1 window)", d, probe_seconds(model, one))
    for d in dtypes:
        for part, value in pruning_parts(args.model, d, windows).items():
            record(f"pruning {part} s", d, value)
    for _ in range(args.repeats):
        record("solver 1536×576 s", "unstructured", solver_seconds(False))
        record("solver 1536×576 s", "2:4", solver_seconds(True))

    print(f"\n{'figure':34} {'fp32 / unstructured':>20} {'bf16 / 2:4':>12} {'ratio':>7}")
    for what, by in figures.items():
        a, b = (statistics.median(v) for v in by.values())
        print(f"{what:34} {a:20.3f} {b:12.3f} {b / a:7.2f}")


if __name__ == "__main__":
    main()
