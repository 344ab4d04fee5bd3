"""Evaluation corpora and calibration windows, exactly per docs/method.md §6.

Each corpus comes from a local folder when one is given (the `data_dir` argument, else the
SAMREPRO_DATA_DIR environment variable), else from the hub through `datasets`. The local
layout is that of the project's shared data folder:

    wikitext2/wiki.test.raw   (wiki.train.raw for WikiText-2 calibration, if you have it)
    ptb/ptb.{train,valid,test}.txt
    c4/c4-validation.00000-of-00008.json[.gz] and c4/c4-train.00000-of-01024.json[.gz]
        (the real shards: the exact protocol), or else
    c4/c4_validation_2k.jsonl  (a 2000-document validation sample: its first 1100 documents
        are evaluated, the other 900 calibrate, so the two never overlap; results on it are
        labelled "C4 sample")
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from samrepro.errors import UserError
from samrepro.io.files import file_sha256

DATASETS = ("wikitext2", "ptb", "c4")
C4_EVAL_DOCS = 1100  # SparseGPT: the first 1100 validation documents ...
C4_EVAL_WINDOWS = 256  # ... cut to 256 windows
C4_SAMPLE = "c4/c4_validation_2k.jsonl"
C4_SHARDS = {"validation": "en/c4-validation.00000-of-00008.json.gz",
             "train": "en/c4-train.00000-of-01024.json.gz"}


@dataclass
class Corpus:
    """Documents of one split, and where they came from (recorded with every result)."""

    name: str
    split: str
    docs: list[str]
    source: str
    joiner: str  # how the protocol joins documents into one evaluation text
    sha256: str | None = None  # of the local file read; None from the hub
    revision: str | None = None  # from the hub: the dataset's fingerprint in `datasets`

    @property
    def provenance(self) -> dict:
        """Where the documents came from, exactly: recorded with every result."""
        return {"source": self.source, "sha256": self.sha256, "revision": self.revision}

    @property
    def text(self) -> str:
        return self.joiner.join(self.docs)


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The local data folder in force, or None to use the hub."""
    folder = explicit or os.environ.get("SAMREPRO_DATA_DIR")
    if not folder:
        return None
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"data folder {path} does not exist or is not a folder: fix "
                        "--data-dir / SAMREPRO_DATA_DIR, or unset it to load from the hub")
    return path


def load_corpus(name: str, split: str, folder: str | os.PathLike | None = None) -> Corpus:
    """The documents of `name` ∈ wikitext2, ptb, c4 for `split` ∈ train, validation, test."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")
    local = data_dir(folder)
    if local is not None:
        return _LOCAL[name](local, split)
    return _from_hub(name, split)


# ---- local files ------------------------------------------------------------------------

def _local_source(folder: Path, path: Path) -> str:
    return f"local:{path.relative_to(folder)}"


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UserError(f"{what} not found: expected the file {path}. Put it there (see "
                        "samrepro.io.data for the layout), or unset SAMREPRO_DATA_DIR/--data-dir "
                        "to load it from the hub.")
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}): the file is damaged or "
                        "in the wrong format; replace it with the original") from None


def _wikitext2_local(folder: Path, split: str) -> Corpus:
    stem = {"test": "test", "validation": "valid", "train": "train"}[split]
    path = _need(folder / "wikitext2" / f"wiki.{stem}.raw", f"WikiText-2 raw {split}")
    lines = _read_text(path).split("\n")[:-1]
    # The hub's rows: a blank line (" " in the file) is "", any other line is line + "\n".
    rows = [line + "\n" if line.strip() else "" for line in lines]
    return Corpus("wikitext2", split, rows, _local_source(folder, path), "\n\n",
                  file_sha256(path))


def _ptb_local(folder: Path, split: str) -> Corpus:
    stem = {"test": "test", "validation": "valid", "train": "train"}[split]
    path = _need(folder / "ptb" / f"ptb.{stem}.txt", f"PTB {split}")
    # The hub loader strips every line; unstripped lines give a wrong (lower) perplexity.
    rows = [line.strip() for line in _read_text(path).splitlines()]
    return Corpus("ptb", split, rows, _local_source(folder, path), " ", file_sha256(path))


def _c4_local(folder: Path, split: str) -> Corpus:
    if split == "test":
        raise UserError("C4 has no test split: the protocol evaluates on validation")
    shard = folder / "c4" / Path(C4_SHARDS[split]).name
    for candidate in (shard, shard.with_suffix("")):  # .json.gz or .json
        if candidate.is_file():
            return Corpus("c4", split, _read_jsonl_texts(candidate),
                          _local_source(folder, candidate), " ", file_sha256(candidate))
    sample = _need(folder / C4_SAMPLE, f"C4 {split} (shard {shard.name} or the sample)")
    docs = _read_jsonl_texts(sample)
    if len(docs) <= C4_EVAL_DOCS:
        raise UserError(f"{sample} holds {len(docs)} documents; the C4 sample needs more than "
                        f"{C4_EVAL_DOCS} (the first {C4_EVAL_DOCS} evaluate, the rest calibrate)")
    # Disjoint parts of the same sample: evaluation documents never calibrate.
    docs = docs[:C4_EVAL_DOCS] if split == "validation" else docs[C4_EVAL_DOCS:]
    return Corpus("c4", split, docs, f"{_local_source(folder, sample)} (C4 sample)", " ",
                  file_sha256(sample))


def _read_jsonl_texts(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    number = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    texts.append(json.loads(line)["text"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise UserError(f"{path}, line {number}: expected a JSON object with a "
                                    "'text' field; the file is damaged, truncated or not C4 "
                                    "JSON lines: replace it with the original") from None
    except (UnicodeDecodeError, EOFError, OSError) as e:  # OSError: gzip.BadGzipFile
        raise UserError(f"{path}: unreadable after line {number} ({type(e).__name__}); the "
                        "file is damaged or truncated: replace it with the original") from None
    return texts


_LOCAL = {"wikitext2": _wikitext2_local, "ptb": _ptb_local, "c4": _c4_local}


# ---- the hub ----------------------------------------------------------------------------

# datasets ≥ 4 runs no dataset scripts, so every id here resolves to plain data files:
# WikiText-2 and C4 are data-file repositories; ptb_text_only is a script dataset whose
# parquet conversion (the hub's refs/convert/parquet branch, one folder per config) is read
# instead. The lm-eval tasks' own hub datasets (allenai/ai2_arc, Rowan/hellaswag,
# truthfulqa/truthful_qa, baber/piqa in lm-eval 0.4.13) are parquet too. HUB_DOWNLOADS says
# what each weighs; benchmarks/gpu_check.sh loads them all on a machine with the hub.
_HUB = {  # name → (load_dataset args, load_dataset keywords, text column, joiner)
    "wikitext2": (("Salesforce/wikitext", "wikitext-2-raw-v1"), {}, "text", "\n\n"),
    "ptb": (("ptb-text-only/ptb_text_only",),
            {"revision": "refs/convert/parquet", "data_dir": "penn_treebank"}, "sentence", " "),
    "c4": (("allenai/c4",), {}, "text", " "),
}
HUB_DOWNLOADS = {  # what a first use downloads (approximate sizes; then cached by datasets)
    "wikitext2": "Salesforce/wikitext wikitext-2-raw-v1: 3 parquet files, ~7 MB (all splits)",
    "ptb": "ptb-text-only/ptb_text_only@refs/convert/parquet penn_treebank: 3 parquet files, "
           "~3 MB",
    "c4": "allenai/c4 en: c4-validation.00000-of-00008.json.gz ~40 MB (evaluation), "
          "c4-train.00000-of-01024.json.gz ~320 MB (calibration)",
    "arc_challenge": "allenai/ai2_arc ARC-Challenge: 3 parquet files, ~0.4 MB",
    "hellaswag": "Rowan/hellaswag: 3 parquet files, ~45 MB",
    "truthfulqa_mc2": "truthfulqa/truthful_qa multiple_choice: 1 parquet file, ~0.3 MB",
    "piqa": "baber/piqa: 3 parquet files, ~5 MB",
}


def _from_hub(name: str, split: str) -> Corpus:
    args, keywords, column, joiner = _HUB[name]
    kwargs = {"split": split, **keywords}
    if name == "c4":
        if split == "test":
            raise UserError("C4 has no test split: the protocol evaluates on validation")
        kwargs["data_files"] = {split: C4_SHARDS[split]}
    try:
        import datasets

        dataset = datasets.load_dataset(*args, **kwargs)
        rows = dataset[column]
    except Exception as e:  # the hub raises many types (connection, offline mode, ...)
        raise UserError(
            f"{name} {split} could not be loaded from the hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Offline, point SAMREPRO_DATA_DIR "
            f"(or --data-dir) at a folder with the local files (layout in samrepro.io.data)."
        ) from None
    if name == "ptb":
        rows = [row.strip() for row in rows]
    revision = f"@{keywords['revision']}" if "revision" in keywords else ""
    return Corpus(name, split, list(rows), f"hub:{'/'.join(args)}{revision}", joiner,
                  revision=getattr(dataset, "_fingerprint", None))


# ---- token streams ----------------------------------------------------------------------

def tokenize(tokenizer, text: str) -> torch.Tensor:
    """1-D LongTensor of token ids for a whole text (no length warning: we cut it ourselves).

    A SentencePiece-style tokenizer (LLaMA's: a Metaspace pre-tokenizer) gives the stream of
    the slow tokenizer that the reference protocol used (slow_sentencepiece_ids)."""
    if _metaspace(tokenizer):
        ids = slow_sentencepiece_ids(tokenizer, text)
    else:
        ids = tokenizer(text, verbose=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def _metaspace(tokenizer) -> bool:
    from tokenizers import pre_tokenizers

    backend = getattr(tokenizer, "_tokenizer", None)
    return isinstance(getattr(backend, "pre_tokenizer", None), pre_tokenizers.Metaspace)


def slow_sentencepiece_ids(tokenizer, text: str) -> list[int]:
    """The ids that transformers' slow LlamaTokenizer (SentencePiece, the reference protocol's
    `use_fast=False`, transformers 4.28-4.31) gives, computed with the fast tokenizer.

    The slow tokenizer splits the text on special-token strings (PTB holds thousands of
    literal "<unk>") and runs SentencePiece on each other piece, which puts its dummy prefix
    "▁" in front of every piece (`legacy`: the default when tokenizer_config.json has no
    `legacy` key, as LLaMA-1's has not), or, with `legacy: false` (Llama-2's), gives the
    text one leading "▁" and leaves out the prefix where a piece starts with a space. The fast
    tokenizer adds its "▁" only at the start of the text and never doubles a space: after
    every "<unk> " of PTB it gives one token fewer. tests/test_tokenizer_parity.py checks
    these streams against SentencePiece itself on the corpora here.
    """
    legacy = getattr(tokenizer, "sentencepiece_legacy", None)  # models.load_tokenizer's
    legacy = True if legacy is None else bool(legacy)
    specials = sorted({t for t in tokenizer.all_special_tokens if t}, key=len, reverse=True)
    pieces = re.split("(" + "|".join(map(re.escape, specials)) + ")", text) if specials \
        else [text]
    if not legacy:
        pieces[0] = "▁" + pieces[0].replace("▁", " ")
        pieces = [p if i == 0 else p.replace("▁", " ") for i, p in enumerate(pieces)]
    special_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    texts = [p if (not legacy and p.startswith((" ", "▁"))) else "▁" + p
             for p in pieces if p and p not in special_ids]
    encoded = iter(tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
                   if texts else [])
    ids = [tokenizer.bos_token_id] if getattr(tokenizer, "add_bos_token", True) and \
        tokenizer.bos_token_id is not None else []
    for p in pieces:
        if p in special_ids:
            ids.append(special_ids[p])
        elif p:
            ids.extend(next(encoded))
    return ids


def eval_stream(name: str, tokenizer, seqlen: int, folder=None) -> tuple[torch.Tensor, Corpus]:
    """The token stream the protocol evaluates for `name` (docs/method.md §6), and its corpus."""
    split = "validation" if name == "c4" else "test"
    corpus = load_corpus(name, split, folder)
    if name == "c4":
        corpus.docs = corpus.docs[:C4_EVAL_DOCS]
    ids = tokenize(tokenizer, corpus.text)
    if name == "c4":
        ids = ids[:C4_EVAL_WINDOWS * seqlen]
    if ids.numel() < seqlen + 1:
        raise UserError(f"{name}: the evaluation text has {ids.numel()} tokens, fewer than "
                        f"one window of seqlen={seqlen}: use a smaller --seqlen")
    return ids, corpus


_TRAIN_IDS: dict = {}


def _train_ids(name: str, corpus, tokenizer) -> torch.Tensor:
    """The joined train text tokenized, kept in memory: every seed and run of a notebook
    samples its windows from the same stream (PTB train takes ~3 s to tokenize)."""
    key = (name, corpus.source, corpus.sha256, tokenizer.name_or_path, len(tokenizer))
    if key not in _TRAIN_IDS:
        _TRAIN_IDS[key] = tokenize(tokenizer, corpus.text)
    return _TRAIN_IDS[key]


def calibration_windows(name: str, tokenizer, nsamples: int, seqlen: int, seed: int = 0,
                        folder=None) -> tuple[torch.Tensor, Corpus]:
    """`nsamples` random windows of `seqlen` tokens from the train split (SparseGPT's sampling).

    C4: a random document longer than the window, then a random start inside it. WikiText-2
    and PTB: random starts in the joined train text.
    """
    if nsamples < 1 or seqlen < 2:
        raise UserError(f"calibration needs nsamples ≥ 1 and seqlen ≥ 2, got {nsamples}, {seqlen}")
    corpus = load_corpus(name, "train", folder)
    rng = random.Random(seed)
    windows = []
    if name == "c4":
        attempts = 0
        while len(windows) < nsamples:
            attempts += 1
            if attempts > 200 * nsamples:
                raise UserError(f"c4 calibration: found too few documents longer than "
                                f"{seqlen} tokens in {corpus.source}: use a smaller --seqlen")
            ids = tokenize(tokenizer, corpus.docs[rng.randrange(len(corpus.docs))])
            if ids.numel() <= seqlen:
                continue
            start = rng.randrange(ids.numel() - seqlen)
            windows.append(ids[start:start + seqlen])
    else:
        ids = _train_ids(name, corpus, tokenizer)
        if ids.numel() <= seqlen:
            raise UserError(f"{name} train has {ids.numel()} tokens, not more than seqlen={seqlen}")
        for _ in range(nsamples):
            start = rng.randrange(ids.numel() - seqlen)
            windows.append(ids[start:start + seqlen])
    return torch.stack(windows), corpus
