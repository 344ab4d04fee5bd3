"""A small OPT trained here on PTB: a STAND-IN for the OPT family, not an OPT checkpoint.

The paper prunes OPT and LLaMA models. No OPT checkpoint can be downloaded offline, so this
module trains a small `OPTForCausalLM` (same architecture and prunable linears as OPT-125m…66b:
q, k, v, out_proj, fc1, fc2; docs/method.md §1) with its own byte-level BPE tokenizer on PTB train
(lines stripped and joined with " ", as docs/method.md §6 reads PTB). Its weights are committed
under samrepro/checkpoints/opt-ptb-standin/ and load offline as `load_model("opt-ptb-standin")`.

It is trained for ~10 epochs of PTB train (bf16 autocast, fp32 master weights) so that it
uses its capacity: pruning then hurts it the way it hurts real OPT models (issue 20; the
model card and `check` give the dense / magnitude / Wanda / SparseGPT / method perplexities).
The same code (`--family opt|llama`, `--name`) trains the smoke preset's two tiny models,
`smoke-opt` and `smoke-llama` (tests/regression/README.md; their cards hold the commands).

    python -m samrepro.standin train --out DIR            # the committed checkpoint (~20 min)
    python -m samrepro.standin train --out DIR --steps 20  # a quick run
    python -m samrepro.standin check --dir DIR            # its sensitivity to pruning, into
                                                          # training.json and the model card

Determinism: one code path, seeded (torch, dropout and the window sampler), a fixed number of
torch threads (`--threads`, default 2), and torch.use_deterministic_algorithms(True); with the
same torch version, machine and thread count, two runs give bit-identical weights (tests
check it). The tokenizer's BPE training is deterministic for a given corpus and vocabulary size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from samrepro.io.data import load_corpus, tokenize
from samrepro.errors import UserError
from samrepro.io.files import save_model, write_json, write_text
from samrepro.io.models import STANDIN as NAME
from samrepro.io.models import PTB_MODELS, STANDIN_CHECKPOINT
SPECIAL = "</s>"  # OPT's BOS/EOS/PAD token; the tokenizer adds none by itself
FAMILIES = ("opt", "llama")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (with the data and the torch build)."""

    family: str = "opt"  # "opt" (the stand-in) or "llama" (the smoke preset's LLaMA)
    vocab_size: int = 4096  # the tied output layer is a large share of each step's cost
    hidden: int = 192
    layers: int = 4
    heads: int = 4
    kv_heads: int | None = None  # LLaMA's key/value heads (grouped-query attention); None: heads
    ffn: int = 768
    seqlen: int = 512  # training windows = the context = the embedded preset's eval windows
    batch: int = 8
    steps: int = 2800
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    seed: int = 0
    threads: int = 2
    min_lr: float = 0.0  # the cosine decays to this fraction of the peak
    dropout: float = 0.1  # OPT's `dropout` (embeddings and each block's output); no attention or
    # activation dropout
    bf16: int = 1  # 1: bf16 autocast for the forward/backward products, fp32 master weights
    eval_every: int = 200  # every N steps, PTB valid perplexity on its first `curve_windows`
    curve_windows: int = 16
    train_lines: int | None = None  # use only the first N PTB train lines (quick runs, tests)
    valid_windows: int | None = None  # score K PTB valid windows, spread evenly (tests)


def train_tokenizer(lines: list[str], vocab_size: int):
    """A byte-level BPE (GPT-2/OPT style) trained on `lines`, as a PreTrainedTokenizerFast.

    Byte-level pre-tokenization and decoding make decode(encode(text)) == text for any text.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Words with their leading space (" <unk>", " n't" stay whole, unlike GPT-2's regex), then
    # bytes as characters.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r" ?\S+|\s+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL,
                                   pad_token=SPECIAL, model_max_length=1 << 30)


def build_model(cfg: TrainConfig, vocab_size: int, special_id: int):
    """A freshly initialised OPTForCausalLM (pre-LayerNorm like OPT-125m, tied embeddings), or
    with `family="llama"` a LlamaForCausalLM (RMSNorm, rotary positions, SwiGLU MLP, tied)."""
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    torch.manual_seed(cfg.seed)
    ids = dict(bos_token_id=special_id, eos_token_id=special_id, pad_token_id=special_id,
               tie_word_embeddings=True, vocab_size=vocab_size, hidden_size=cfg.hidden,
               num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
               max_position_embeddings=cfg.seqlen)
    if cfg.family == "llama":
        if cfg.dropout:
            raise UserError("LLaMA has no residual dropout: train it with --dropout 0")
        return LlamaForCausalLM(LlamaConfig(intermediate_size=cfg.ffn,
                                            num_key_value_heads=cfg.kv_heads or cfg.heads, **ids))
    return OPTForCausalLM(OPTConfig(ffn_dim=cfg.ffn, word_embed_proj_dim=cfg.hidden,
                                    do_layer_norm_before=True, enable_bias=True,
                                    dropout=cfg.dropout, attention_dropout=0.0,
                                    activation_dropout=0.0, **ids))


def unigram_perplexity(fit_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int) -> float:
    """Perplexity of an add-one smoothed unigram model fitted on `fit_ids`, on `eval_ids`."""
    counts = torch.bincount(fit_ids, minlength=vocab_size).double() + 1.0
    logp = counts.log() - counts.sum().log()
    return math.exp(-float(logp[eval_ids].mean()))


def _lr(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr + (1 - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress)))


class _CrossEntropy(torch.autograd.Function):
    """Mean next-token cross-entropy from (bf16) logits, computed in fp32, with the gradient
    softmax - onehot formed in place: the same value as F.cross_entropy(logits.float(), t),
    in fewer passes over the (tokens × vocabulary) logits, the largest tensor of a step."""

    @staticmethod
    def forward(ctx, logits, targets):
        x = logits.float()
        lse = torch.logsumexp(x, -1)
        loss = (lse - x.gather(-1, targets[:, None]).squeeze(-1)).mean()
        ctx.save_for_backward(logits, targets, lse)
        return loss

    @staticmethod
    def backward(ctx, grad):
        logits, targets, lse = ctx.saved_tensors
        p = logits.to(torch.float32, copy=True).sub_(lse[:, None]).exp_()
        p[torch.arange(p.shape[0]), targets] -= 1
        return p.mul_(grad / p.shape[0]).to(logits.dtype), None


def lm_loss(model, batch: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of `model` on the windows `batch` (tied output layer)."""
    hidden = model.model(input_ids=batch, use_cache=False).last_hidden_state[:, :-1]
    logits = model.lm_head(hidden)
    return _CrossEntropy.apply(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(cfg: TrainConfig, data_dir=None, progress: bool = True):
    """Train the tokenizer and the model on PTB train; returns (model, tokenizer, record).

    The model comes back in fp32 after a round trip through fp16 (the stored precision), so
    the perplexities in `record` are those of the checkpoint as it loads.
    """
    if cfg.steps < 1 or cfg.batch < 1 or cfg.seqlen < 2 or cfg.threads < 1:
        raise UserError("--steps, --batch and --threads must be at least 1, --seqlen at least 2")
    if cfg.family not in FAMILIES:
        raise UserError(f"unknown family {cfg.family!r}: {' or '.join(FAMILIES)}")
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(cfg, data_dir, progress)
    finally:  # leave the process as it was (the tests run in one process)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(cfg: TrainConfig, data_dir, progress: bool):
    from tqdm.auto import tqdm

    from samrepro.io.evaluate import perplexity

    started = time.perf_counter()
    corpus = load_corpus("ptb", "train", data_dir)
    lines = corpus.docs[:cfg.train_lines] if cfg.train_lines else corpus.docs
    tokenizer = train_tokenizer(lines, cfg.vocab_size)
    ids = tokenize(tokenizer, " ".join(lines))  # joined as docs/method.md §6 joins PTB
    if ids.numel() <= cfg.seqlen:
        raise UserError(f"PTB train gives {ids.numel()} tokens, not more than seqlen={cfg.seqlen}")
    special_id = tokenizer.convert_tokens_to_ids(SPECIAL)
    model = build_model(cfg, len(tokenizer), special_id)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": other, "weight_decay": 0.0}],
                                  lr=cfg.lr, betas=(0.9, 0.95))
    sampler = torch.Generator().manual_seed(cfg.seed)
    losses, curve = [], []
    valid = load_corpus("ptb", "validation", data_dir)
    valid_ids = tokenize(tokenizer, valid.text)
    model.train()
    bar = tqdm(range(cfg.steps), desc=f"training ({cfg.family})", disable=not progress)
    for step in bar:
        starts = torch.randint(0, ids.numel() - cfg.seqlen, (cfg.batch,), generator=sampler)
        batch = torch.stack([ids[s:s + cfg.seqlen] for s in starts.tolist()])
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(cfg.bf16)):
            loss = lm_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            model.eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                 enabled=bool(cfg.bf16)):
                v = perplexity(model, valid_ids, cfg.seqlen, cfg.curve_windows, batch_size=8,
                               progress=False)
            curve.append({"step": step + 1, "train_loss": sum(losses[-cfg.eval_every:])
                          / len(losses[-cfg.eval_every:]), "valid_nll": v["nll"]})
            bar.write(f"step {step + 1}: train loss {curve[-1]['train_loss']:.3f}, "
                      f"valid nll {v['nll']:.3f} (ppl {v['ppl']:.1f})")
            model.train()
    train_seconds = time.perf_counter() - started
    model.eval()
    model.config.use_cache = False
    model.half().float()  # the stored precision: evaluate what will load
    ppl = perplexity(model, valid_ids, cfg.seqlen, cfg.valid_windows, batch_size=8, progress=progress,
                     desc="perplexity PTB valid")
    # the unigram baseline scores the same predicted tokens (each window's first is context)
    windows = valid_ids[:valid_ids.numel() // cfg.seqlen * cfg.seqlen].view(
        -1, cfg.seqlen)[ppl["window_index"]]  # the windows perplexity scored
    record = {
        "config": asdict(cfg), "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens": ids.numel(), "tokens_seen": cfg.steps * cfg.batch * cfg.seqlen,
        "train_data": {"source": corpus.source, "lines": len(lines),
                       **_data_hash(data_dir, "train")},
        "train_seconds": round(train_seconds, 1), "torch_threads": cfg.threads,
        "versions": _versions(),
        "valid": {"source": valid.source, "ppl": ppl["ppl"], "windows": ppl["windows"],
                  "tokens": ppl["tokens"],
                  "unigram_ppl": unigram_perplexity(ids, windows[:, 1:].reshape(-1),
                                                    len(tokenizer))},
        "valid_curve": curve, "losses": losses,
    }
    return model, tokenizer, record


def _data_hash(data_dir, split: str) -> dict:
    from samrepro.io.data import data_dir as resolve

    folder = resolve(data_dir)
    if folder is None:
        return {}
    stem = {"train": "train", "validation": "valid", "test": "test"}[split]
    return {"sha256": file_sha256(folder / "ptb" / f"ptb.{stem}.txt")}


def _versions() -> dict:
    from samrepro.study.experiments import versions

    found = versions()
    try:
        import tokenizers

        found["tokenizers"] = tokenizers.__version__
    except ImportError:
        pass
    return found


SMOKE_LABEL = "a tiny test model of the smoke preset (not a model of the paper)"


def save(model, tokenizer, record: dict, out: Path, command: str, name: str = NAME) -> Path:
    """The checkpoint (fp16 safetensors, tokenizer), training.json, loss.{csv,png}, README.md.
    `name`: the stand-in's, or one of the smoke preset's models (models.PTB_MODELS)."""
    model.half()
    try:
        save_model(model, tokenizer, out)
    finally:
        model.float()
    label = "STAND-IN for the OPT family (not an OPT checkpoint)" if name == NAME else SMOKE_LABEL
    record = {"name": name, "label": label, **record, "command": command}
    write_json(out / "training.json", record)
    render(record, out)
    return out


def render(record: dict, out: Path) -> None:
    """loss.csv, loss.png and README.md (the model card) from the training record."""
    write_text(out / "loss.csv", "step,loss\n" + "".join(
        f"{i + 1},{loss:.6f}\n" for i, loss in enumerate(record["losses"])))
    _plot_losses(record["losses"], record.get("valid_curve", []), out / "loss.png",
                 f"{record['name']}: {record['label']}, PTB train")
    write_text(out / "README.md", model_card(record))


def _plot_losses(losses: list[float], curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(1, len(losses) + 1), losses, lw=0.6, alpha=0.6, label="training loss (per step)")
    if curve:
        ax.plot([c["step"] for c in curve], [c["train_loss"] for c in curve], "o-", ms=3, lw=1,
                label="training loss (mean since the last point)")
        ax.plot([c["step"] for c in curve], [c["valid_nll"] for c in curve], "s-", ms=3, lw=1,
                label="PTB valid (first windows, bf16)")
        ax.legend(fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("nats/token")
    ax.set_ylim(top=min(8.5, max(losses)))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def model_card(r: dict) -> str:
    c, v = r["config"], r["valid"]
    floor = "0" if c.get("min_lr", 0.1) == 0 else f"{c.get('min_lr', 0.1):g}× the peak"
    schedule = (f"AdamW (β 0.9/0.95, lr {c['lr']}, linear warm-up {c['warmup']} steps, cosine "
                f"to {floor}, weight decay {c['weight_decay']} on the matrices, gradient "
                "clipping at 1.0), "
                + (f"dropout {c['dropout']:g} (OPT's `dropout`: embeddings and each block's "
                   "output; no attention or activation dropout), " if c.get("dropout") else
                   "no dropout, ")
                + ("bf16 autocast with fp32 master weights" if c.get("bf16", 0) else "fp32"))
    curve = r.get("valid_curve") or []
    curve_text = "" if not curve else (
        f"\nPTB valid during training (its first {c.get('curve_windows', 16)} windows, bf16; the "
        "final figure above is in fp32 over all windows):\n\n| step | epochs | training loss | "
        "PTB valid nll | PTB valid ppl |\n|---:|---:|---:|---:|---:|\n" + "".join(
            f"| {e['step']} | {e['step'] * c['batch'] * c['seqlen'] / r['train_tokens']:.1f} | "
            f"{e['train_loss']:.3f} | {e['valid_nll']:.3f} | {math.exp(e['valid_nll']):.1f} |\n"
            for e in curve))
    check = r.get("pruning_check")
    check_text = "" if not check else (
        f"\n## Pruning sensitivity\n\nPTB test perplexity (first {check['eval_windows']} windows "
        f"of {check['seqlen']}), calibration {check['nsamples']} PTB train windows of "
        f"{check['seqlen']} tokens (seed 0), unstructured, fp32; \"the method\" is ISC with the "
        "paper's allocation (Hutchinson sensitivities). Written by "
        f"`python -m samrepro.standin check --dir <this folder>`:\n\n| method | "
        + " | ".join(f"{p:.0%}" for p in check["sparsities"]) + " |\n|---|"
        + "---:|" * len(check["sparsities"]) + "\n"
        + f"| dense | {check['dense']:.2f} |" + " |" * (len(check["sparsities"]) - 1) + "\n"
        + "".join(f"| {label} | " + " | ".join(
            f"{row[str(p)]:.2f} ({row[str(p)] / check['dense'] - 1:+.0%})"
            for p in check["sparsities"]) + " |\n" for label, row in check["rows"].items())
        + ("" if r["name"] != NAME else
           "\nIssue 20's bar (magnitude at least 25% worse than dense, and SparseGPT's increase "
           "at most a third of magnitude's, as on real OPT models): " + "; ".join(
               f"{'holds' if _opt_like(check, p) else 'does not hold'} at {p:.0%}"
               for p in check["sparsities"]) + ".\n"))
    return f"""# {r['name']}: {r['label']}

{_about(r)}

- architecture: {_architecture(c)}; {r['parameters']:,} parameters,
  stored in fp16 (`model.safetensors`), loaded as fp32
- tokenizer: byte-level BPE, {c['vocab_size']} tokens, trained on the same PTB train text; adds no BOS
- data: PTB train only, {r['train_data']['source']} ({r['train_data']['lines']} lines stripped and joined
  with " ", {r['train_tokens']:,} tokens), sha256 `{r['train_data'].get('sha256', 'n/a')}`;
  training windows of {c['seqlen']} tokens at uniformly random offsets (seeded). Neither PTB
  valid/test nor any C4 text was trained on; PTB valid is only scored (the curve below)
- training: {c['steps']} steps × {c['batch']} windows × {c['seqlen']} tokens ({r['tokens_seen']:,} tokens,
  {r['tokens_seen'] / r['train_tokens']:.1f} epochs of PTB train), {schedule};
  seed {c['seed']}, {r['torch_threads']} torch threads, deterministic algorithms;
  {r['train_seconds'] / 60:.1f} min on this CPU
- **PTB valid perplexity {v['ppl']:.2f}** ({v['windows']} windows of {c['seqlen']} tokens), against
  {v['unigram_ppl']:.1f} for an add-one smoothed unigram model (same tokenizer, fitted on PTB train,
  scored on the same tokens)
- calibration for pruning: PTB train windows (`samrepro.io.models.default_calibration`), not
  the C4 sample, which is out of the model's domain
{curve_text}{check_text}
Made with (from the repository root):

```bash
{r['command']}
```

`training.json` holds the full record (config, versions, per-step losses, the valid curve);
`loss.csv` and `loss.png` the loss curve.
"""


def _about(r: dict) -> str:
    if r["name"] == NAME:
        return """**This is not an OPT checkpoint.** It is a small `OPTForCausalLM` (the OPT architecture, with
OPT's prunable linears q/k/v/out_proj/fc1/fc2, learned positions, pre-LayerNorm blocks, ReLU
MLP) trained by samrepro on Penn Treebank, so that the pruning methods can be exercised on an
OPT-architecture model with learned weights offline, where no OPT checkpoint can be
downloaded. It knows only PTB's vocabulary and style (lower case, `<unk>`, `N` for numbers):
its WikiText-2 and C4 perplexities mean little."""
    family = "OPT" if r["config"].get("family", "opt") == "opt" else "LLaMA"
    return f"""**A test model, not a model of the paper.** A tiny {family} trained by samrepro on Penn
Treebank for the smoke preset (CI, nbval): it runs the {family} code paths in seconds, its
perplexities are far from chance, and pruning moves them far apart (dense, SparseGPT,
magnitude), so that the smoke regression checks see a broken method
(tests/regression/README.md). It knows only PTB's vocabulary and style."""


def _architecture(c: dict) -> str:
    common = (f"{c['layers']} decoder layers, hidden {c['hidden']}, {c['heads']} heads, "
              f"ffn {c['ffn']}, context {c['seqlen']}")
    if c.get("family", "opt") == "opt":
        return f"`OPTForCausalLM`, {common}, pre-LayerNorm, learned positions, tied embeddings"
    return (f"`LlamaForCausalLM`, {common}, {c.get('kv_heads') or c['heads']} key/value heads, "
            "RMSNorm, rotary positions, SwiGLU MLP, tied embeddings")


def _opt_like(check: dict, p: float) -> bool | None:
    """Issue 20's bar at sparsity p: magnitude at least 25% worse than dense, and SparseGPT's
    perplexity increase at most a third of magnitude's (None if either was not run)."""
    dense, rows = check["dense"], check["rows"]
    if "magnitude" not in rows or "SparseGPT (OBS)" not in rows:
        return None
    magnitude, sparsegpt = rows["magnitude"][str(p)], rows["SparseGPT (OBS)"][str(p)]
    return magnitude >= 1.25 * dense and sparsegpt - dense <= (magnitude - dense) / 3


def pruning_check(model: str = NAME, sparsities=(0.5,), saliencies=("magnitude", "obs"),
                  nsamples: int = 16, seqlen: int = 512, eval_windows: int = 16, data_dir=None,
                  progress: bool = False) -> dict:
    """PTB test perplexity of `model` dense and pruned by each saliency at each sparsity,
    calibrated on PTB train windows, uncached (the stand-in's sensitivity to pruning, issue 20).
    A saliency "isc+paper" is ISC with the paper's allocation (Hutchinson sensitivities)."""
    from samrepro.study.experiments import RunConfig, prune_and_evaluate

    def ppl(p, saliency, allocation="uniform"):
        cfg = RunConfig(model=model, sparsity=p, saliency=saliency, allocation=allocation,
                        calib="ptb", nsamples=nsamples, seqlen=seqlen, eval=("ptb",),
                        eval_windows=eval_windows, probes=64, rel_tol=0.2)
        return prune_and_evaluate(cfg, data_dir, progress=progress)["perplexity"]["ptb"]["ppl"]

    labels = {"magnitude": "magnitude", "wanda": "Wanda", "obs": "SparseGPT (OBS)",
              "isc": "uniform ISC", "isc+paper": "the method (ISC, paper allocation)"}
    rows = {labels.get(s, s): {str(p): ppl(p, *s.split("+")) for p in sparsities}
            for s in saliencies}
    return {"sparsities": list(sparsities), "nsamples": nsamples, "seqlen": seqlen,
            "eval_windows": eval_windows, "dense": ppl(0.0, "obs"), "rows": rows}


def _check(args) -> int:
    folder = Path(args.dir)
    record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    check = pruning_check(str(folder), tuple(float(p) for p in args.sparsities.split(",")),
                          ("magnitude", "wanda", "obs", "isc+paper"), args.nsamples,
                          record["config"]["seqlen"], args.eval_windows, args.data_dir)
    record["pruning_check"] = check
    write_json(folder / "training.json", record)
    render(record, folder)
    print(f"dense {check['dense']:.2f}")
    for label, row in check["rows"].items():
        print(f"{label:36s} " + "  ".join(f"{p}: {v:.2f}" for p, v in row.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samrepro.standin",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train the OPT stand-in (or a smoke model) on PTB train "
                       "and save it")
    p.add_argument("--out", required=True, help="a new folder for the checkpoint")
    p.add_argument("--name", default=NAME, choices=PTB_MODELS,
                   help="which committed model this is (its model card's title)")
    p.add_argument("--data-dir", default=None, help="local data folder (else SAMREPRO_DATA_DIR)")
    p.add_argument("--quiet", action="store_true")
    for name, value in asdict(TrainConfig()).items():
        kind = int if value is None else type(value)
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    k = sub.add_parser("check", help="measure a checkpoint's sensitivity to pruning (dense, "
                       "magnitude, Wanda, SparseGPT, the method; PTB test) into its training.json "
                       "and model card")
    k.add_argument("--dir", default=str(STANDIN_CHECKPOINT))
    k.add_argument("--data-dir", default=None)
    k.add_argument("--sparsities", default="0.5,0.7")
    k.add_argument("--nsamples", type=int, default=16)
    k.add_argument("--eval-windows", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return _check(args)
        out = Path(args.out)
        if out.exists() and any(out.iterdir()):
            raise UserError(f"--out {out} exists and is not empty: choose a new folder")
        cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(TrainConfig())})
        model, tokenizer, record = train(cfg, args.data_dir, not args.quiet)
        command = "python -m samrepro.standin " + " ".join(sys.argv[1:] if argv is None else argv)
        save(model, tokenizer, record, out, command.strip(), args.name)
        v = record["valid"]
        print(f"{args.name}: trained in {record['train_seconds']:.0f} s; PTB valid ppl {v['ppl']:.2f} "
              f"(unigram {v['unigram_ppl']:.1f}); saved to {out}")
    except UserError as e:
        print(f"samrepro: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
