"""Does torch.compile pay for the evaluation forward on this CPU? (issue 15, item 3)

    python benchmarks/compile.py [--batch 4] [--seqlen 512] [--repeats 5] [--dtype auto]

Times the embedded model's (SmolLM2-135M) forward over `--batch` windows of `--seqlen` tokens,
eager against torch.compile (inductor), interleaved: the compile's own cost (the first call),
then the median of `--repeats` calls each, and the largest difference of the logits. The
evaluation runs ~24 such forwards a run (3 streams × 8 windows / 4): the compile pays when
(eager − compiled) × forwards exceeds its first-call cost.
"""

import argparse
import statistics
import time

import torch

from samrepro.machine.hardware import DTYPES, resolve_dtype
from samrepro.io.models import load_model


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    dtype = resolve_dtype(args.dtype, torch.device("cpu"))
    model, _ = load_model("embedded", DTYPES[dtype])
    model.eval()
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seqlen),
                        generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(model)

    def eager_forward():
        with torch.no_grad():
            return model(input_ids=ids, use_cache=False).logits

    def compiled_forward():
        with torch.no_grad():
            return compiled(input_ids=ids, use_cache=False).logits

    first, out_compiled = timed(compiled_forward)
    _, out_eager = timed(eager_forward)
    eager, comp = [], []
    for _ in range(args.repeats):
        eager.append(timed(eager_forward)[0])
        comp.append(timed(compiled_forward)[0])
    tokens = args.batch * args.seqlen
    e, c = statistics.median(eager), statistics.median(comp)
    print(f"dtype {dtype}, {args.batch} × {args.seqlen} tokens, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"compile (first call): {first:.1f} s")
    print(f"eager    median {e:.3f} s  ({tokens / e:,.0f} tokens/s)")
    print(f"compiled median {c:.3f} s  ({tokens / c:,.0f} tokens/s)  ratio {c / e:.2f}")
    print(f"max |logits eager − compiled|: {(out_eager.float() - out_compiled.float()).abs().max():.3g}")
    saved = e - c
    print("pays after " + (f"{first / saved:.0f} forwards" if saved > 0 else "never (not faster)"))


if __name__ == "__main__":
    main()
