"""The Hutchinson memory model against measured peaks at the paper's real widths (issue 32).

    MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/hutchinson_widths.py [--models llama-7b,...]
        [--layers 2] [--seqlen 256] [--dtype bfloat16]

For each model: a random-weight model with the true shape of one of the paper's models
(memory.PAPER_MODELS: hidden, intermediate, heads, key/value heads, vocabulary) but `--layers`
decoder layers, in `--dtype` on this CPU; one layer-by-layer probe (sensitivity.probe_row) on
one window of `--seqlen` tokens. Prints the bytes the probe adds to the resident set
(memory.measure_peak: the high-water mark, reset before) next to memory.hutchinson_parts'
prediction of the same (everything but the weights), part by part, and the ratio. Each
model runs in its own process. Takes a few minutes and ~2× the 70B shape's two layers and
embeddings (~9 GB) of RAM; run it under `flock /tmp/cpu.lock`.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def measure(name: str, layers: int, seqlen: int, dtype_name: str) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from samrepro.machine import memory
    from samrepro.method import sensitivity

    dtype = getattr(torch, dtype_name)
    fields = {**memory.PAPER_MODELS[name], "num_hidden_layers": layers,
              "tie_word_embeddings": False}
    config = AutoConfig.for_model(**fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # random weights at the usual init scale
            p.normal_(0.0, 0.02, generator=generator) if p.dim() > 1 else p.fill_(1.0)
        for buffer_name, buffer in model.named_buffers():  # rotary frequencies
            if "inv_freq" in buffer_name:
                head_dim = config.hidden_size // config.num_attention_heads
                buffer.copy_(1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)))
    model.eval()
    ids = torch.randint(0, config.vocab_size, (1, seqlen), generator=generator)
    draw = lambda i, p: sensitivity.draw_probe(0, 0, i, p)  # noqa: E731
    with sensitivity._OnlyWeightsTrainable(model) as params:
        started = time.perf_counter()
        row, peak = memory.measure_peak(lambda: sensitivity.probe_row(model, params, ids, draw))
        seconds = time.perf_counter() - started
    assert torch.isfinite(row).all(), "non-finite samples"
    shape = memory.shape_of(fields)
    parts = memory.hutchinson_parts(shape, 1, seqlen, dtype)
    predicted = sum(v for k, v in parts.items() if k != "weights")
    return {"model": name, "layers": layers, "seqlen": seqlen, "dtype": dtype_name,
            "weights": parts["weights"], "measured": peak, "predicted": predicted,
            "parts": {k: v for k, v in parts.items() if k != "weights"},
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="llama-7b,llama-13b,llama-2-70b")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one model
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.layers, args.seqlen, args.dtype)))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # freed buffers leave the RSS
    mib = 2 ** 20
    print(f"{'model':12s} {'layers':>6s} {'seqlen':>6s} {'weights MiB':>11s} "
          f"{'measured MiB':>12s} {'predicted MiB':>13s} {'ratio':>6s} {'s':>6s}")
    for name in args.models.split(","):
        done = subprocess.run([sys.executable, __file__, "--one", name, "--layers",
                               str(args.layers), "--seqlen", str(args.seqlen), "--dtype",
                               args.dtype], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:12s} {r['layers']:6d} {r['seqlen']:6d} {r['weights'] / mib:11.0f} "
              f"{r['measured'] / mib:12.0f} {r['predicted'] / mib:13.0f} "
              f"{r['predicted'] / r['measured']:6.2f} {r['seconds']:6.1f}")
        print("    parts (MiB): " + ", ".join(f"{k} {v / mib:.0f}" for k, v in r["parts"].items()),
              flush=True)


if __name__ == "__main__":
    main()
