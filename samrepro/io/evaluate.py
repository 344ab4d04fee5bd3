"""Perplexity by the SparseGPT protocol, and accuracy through lm-evaluation-harness (docs/method.md §6).

The token stream is cut into non-overlapping windows of `seqlen` tokens; each window is
scored on its own (no context carried over) and ppl = exp(mean NLL per predicted token).
`max_windows` keeps K of them spread evenly over the whole stream (spread_windows): the CPU
presets' cap, otherwise the same protocol.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from samrepro.io.data import data_dir as resolve_data_dir
from samrepro.errors import UserError

LOSS_CHUNK_BYTES = 25 * 10**6  # fp32 logits token_nll holds at once: ~25 MB


def loss_rows(vocab: int) -> int:
    """Positions whose fp32 logits over `vocab` fit in LOSS_CHUNK_BYTES (at least one)."""
    return max(1, LOSS_CHUNK_BYTES // (4 * vocab))


def token_nll(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """fp32 NLL of every token after the first of each window (batch × (seqlen − 1)), as
    from the model's logits. For memory and speed the fp32 logits over the whole vocabulary
    are never held: the base model's final hidden states, flattened to one row a position,
    go through the LM head and the loss loss_rows(vocab) rows at a time, each chunk a
    contiguous (rows, vocab) matrix (no transposed logits). A model without a separate LM
    head is scored from its full logits, in the same chunks."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = model.get_output_embeddings()
    if base is None or head is None:
        hidden, head = model(input_ids=batch, use_cache=False).logits, nn.Identity()
    else:
        hidden = base(input_ids=batch, use_cache=False)[0]
    rows = hidden[:, :-1].reshape(-1, hidden.shape[-1])  # position t predicts token t + 1
    targets = batch[:, 1:].reshape(-1).to(rows.device)
    step = loss_rows(model.config.vocab_size)
    nll = [F.cross_entropy(head(rows[a:a + step]).float(), targets[a:a + step], reduction="none")
           for a in range(0, len(rows), step)]
    return torch.cat(nll).view(len(batch), -1)


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, seqlen: int, max_windows: int | None = None,
               batch_size: int = 1, progress: bool = True, desc: str = "perplexity") -> dict:
    """Return {"ppl", "nll", "windows", "tokens", "window_nll"} for the 1-D token stream `ids`.

    `window_nll` lists each window's mean NLL per predicted token, in stream order: the paired
    intervals of samrepro.study.stats resample them (every window predicts seqlen − 1 tokens, so
    `nll` is their mean). `window_index`: which of the stream's windows were scored."""
    total = ids.numel() // seqlen
    if total == 0:
        raise UserError(f"the stream has {ids.numel()} tokens, fewer than seqlen={seqlen}")
    if max_windows is not None and max_windows < 1:
        raise UserError(f"the window cap must be at least 1, got {max_windows}")
    index = spread_windows(total, max_windows)
    windows = len(index)
    device = next(model.parameters()).device
    stream = ids[: total * seqlen].view(total, seqlen)[index]
    window_nll = []
    for batch in tqdm(stream.split(batch_size), desc=desc, disable=not progress):
        nll = token_nll(model, batch.to(device))
        window_nll += nll.double().mean(1).tolist()  # targets: every token after the first
    mean = math.fsum(window_nll) / windows
    return {"ppl": math.exp(mean), "nll": mean, "windows": windows,
            "tokens": windows * (seqlen - 1), "window_nll": window_nll, "window_index": index}


def spread_windows(total: int, k: int | None) -> list[int]:
    """K of a stream's `total` windows spread evenly over it (docs/method.md §6): cut the
    windows into K equal strata and take the middle one of each, window ⌊(i + ½)·total/K⌋
    for i = 0 … K−1; every window when K is None or ≥ total. Deterministic, and it stands
    for the whole test set rather than its first K·seqlen tokens."""
    if k is None or k >= total:
        return list(range(total))
    return [int((i + 0.5) * total / k) for i in range(k)]


# ---- zero-shot and leaderboard accuracy through lm-evaluation-harness (docs/method.md §6) ----

TASKS = ("arc_challenge", "hellaswag", "truthfulqa_mc2", "piqa")
# Shots per task. The paper's dense rows equal the Open LLM Leaderboard's settings.
SETTINGS = {
    "zero-shot": dict.fromkeys(TASKS, 0),
    "leaderboard": {"arc_challenge": 25, "hellaswag": 10, "truthfulqa_mc2": 0, "piqa": 0},
}
# The number each table shows: the leaderboard's metrics, and PIQA's usual accuracy.
HEADLINE = {"arc_challenge": "acc_norm", "hellaswag": "acc_norm", "truthfulqa_mc2": "acc",
            "piqa": "acc"}
TASK_SOURCES = ("local", "hub")
LOCAL_TASKS_DIR = Path(__file__).parent / "tasks"


def task_source(source: str | None, data_dir=None) -> str:
    """'local' (the package's YAML tasks over the data folder) or 'hub' (the harness's
    own tasks); None picks local when a data folder is in force, as the corpora do."""
    if source is None:
        return "local" if resolve_data_dir(data_dir) is not None else "hub"
    if source not in TASK_SOURCES:
        raise UserError(f"unknown task source {source!r}: choose from {', '.join(TASK_SOURCES)}")
    return source


def check_tasks(tasks, settings, limit: int | None = None) -> tuple[tuple, tuple]:
    """(tasks, settings) as tuples, or a UserError for an unknown one or a bad limit."""
    settings = (settings,) if isinstance(settings, str) else tuple(settings)
    if limit is not None and limit < 1:
        raise UserError(f"the document limit must be at least 1, got {limit}")
    for setting in settings or ("",):
        if setting not in SETTINGS:
            raise UserError(f"unknown setting {setting!r}: choose from {', '.join(SETTINGS)}")
    unknown = [task for task in tasks if task not in TASKS]
    if unknown or not tasks:
        raise UserError(f"unknown task {unknown[0]!r}: choose from {', '.join(TASKS)}"
                        if unknown else f"give at least one task of {', '.join(TASKS)}")
    return tuple(tasks), settings


def _task_manager(source: str, data_dir):
    from lm_eval.tasks import TaskManager

    if source == "hub":
        return TaskManager()
    folder = resolve_data_dir(data_dir)
    if folder is None:
        raise UserError("local zero-shot tasks need a data folder: set SAMREPRO_DATA_DIR "
                        "or --data-dir, or choose the hub tasks")
    return TaskManager(include_path=str(LOCAL_TASKS_DIR), include_defaults=False,
                       metadata={"data_dir": str(folder)})


def zero_shot(model: nn.Module, tokenizer, tasks=TASKS, settings=("zero-shot",),
              limit: int | None = None, source: str | None = None, data_dir=None,
              batch_size: int = 1) -> dict:
    """Accuracy of the in-memory `model` on `tasks`, scored by lm-evaluation-harness.

    `settings` holds 'zero-shot' (every task 0-shot) and/or 'leaderboard' (ARC-c 25-shot,
    HellaSwag 10-shot, TruthfulQA 0-shot, PIQA 0-shot); a task scored with the same shots
    in both is scored once. `limit` keeps the first N documents of each task (CPU presets).
    Returns {setting: {task: {"metric", "value", "stderr", "shots", "documents",
    "per_document", "metrics": {name: value}, "source"}}}, accuracies in [0, 1];
    `per_document` is the headline metric of each document in document order, which pairs
    two models' scores document by document (Table 3's intervals, samrepro.study.claims).
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    tasks, settings = check_tasks(tasks, settings, limit)
    source = task_source(source, data_dir)
    manager = _task_manager(source, data_dir)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its per-task notices drown ours
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
              device=str(next(model.parameters()).device))
    scored, results = {}, {}
    for setting in settings:
        for task in tasks:
            shots = SETTINGS[setting][task]
            if (task, shots) not in scored:
                name = f"samrepro_{task}" if source == "local" else task
                out = lm_eval.simple_evaluate(
                    model=lm, tasks=[name], num_fewshot=shots, limit=limit,
                    task_manager=manager, log_samples=True,
                    bootstrap_iters=1000)  # > 0 for stderrs (analytic for means)
                scored[task, shots] = _summary(task, name, out, source)
            results.setdefault(setting, {})[task] = scored[task, shots]
    return results


def _summary(task: str, name: str, out: dict, source: str) -> dict:
    scores = out["results"][name]
    metrics = {key.split(",")[0]: float(value) for key, value in scores.items()
               if key.endswith(",none") and "_stderr" not in key}
    metric = HEADLINE[task]
    stderr = scores.get(f"{metric}_stderr,none")
    documents = sorted(out["samples"][name], key=lambda sample: sample["doc_id"])
    return {"metric": metric, "value": metrics[metric],
            "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
            "shots": out["n-shot"][name], "documents": out["n-samples"][name]["effective"],
            "per_document": [float(sample[metric]) for sample in documents],
            "metrics": metrics, "source": f"{source}:{name}"}
