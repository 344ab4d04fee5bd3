"""Cost of the sensitivity estimators on the embedded model (issue 3's speed figures).

    python benchmarks/sensitivity_cost.py [--seqlen 512] [--repeats 3]

Prints the median time of one forward+backward, one Hutchinson probe (forward, backward with
create_graph, double backward) and one Fisher window on the same 512-token window, their
ratios (target: probe ≤ 3× forward+backward), and the projected cost of each estimator at
the embedded preset (Hutchinson: the probes its cached estimate needed, if present).
"""

import argparse
import statistics
import time

import torch

from samrepro.io.models import load_model, prunable_linears
from samrepro.method.sensitivity import _OnlyWeightsTrainable, fisher, hutchinson


def median_seconds(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nsamples", type=int, default=32, help="windows of the preset")
    parser.add_argument("--probes", type=int, default=64, help="Hutchinson probes of the preset")
    args = parser.parse_args()

    model, _ = load_model("embedded")
    window = torch.randint(0, model.config.vocab_size, (1, args.seqlen),
                           generator=torch.Generator().manual_seed(0))

    def forward_backward():
        with _OnlyWeightsTrainable(model) as params:
            loss = model(input_ids=window, labels=window, use_cache=False).loss
            torch.autograd.grad(loss, params)

    fb = median_seconds(forward_backward, args.repeats)
    probe = median_seconds(lambda: hutchinson(model, window, rel_tol=0.0, min_probes=1,
                                              max_probes=2, progress=False), args.repeats) / 2
    fisher_window = median_seconds(lambda: fisher(model, window, progress=False), args.repeats)
    print(f"{len(prunable_linears(model))} matrices, one window of {args.seqlen} tokens, "
          f"torch threads {torch.get_num_threads()}")
    print(f"forward+backward   {fb:6.2f} s")
    print(f"Hutchinson probe   {probe:6.2f} s  = {probe / fb:.2f}x forward+backward (target <= 3x)")
    print(f"Fisher window      {fisher_window:6.2f} s  = {fisher_window / fb:.2f}x forward+backward")
    print(f"at the embedded preset: Hutchinson {args.probes} probes ~ {args.probes * probe / 60:.1f} min, "
          f"Fisher {args.nsamples} windows ~ {args.nsamples * fisher_window / 60:.1f} min "
          f"({args.nsamples * fisher_window / (args.probes * probe):.2f}x the Hutchinson cost)")


if __name__ == "__main__":
    main()
