"""Documents of the local zero-shot task files, in the schema of the harness's hub datasets.

lm-evaluation-harness calls these through `custom_dataset:` in the YAML files beside this
one (they are loaded by file path, hence the absolute imports). Each returns a
`datasets.DatasetDict` whose rows have the fields the harness's own task of the same name
reads, so that our YAML can use its prompts unchanged. The data folder comes in as the
task metadata `data_dir` (see samrepro.io.evaluate.zero_shot); the layout of the local data
folder (docs/method.md §8):

    arc_challenge/ARC-Challenge-Test.jsonl   hub: allenai/ai2_arc ARC-Challenge, test
    hellaswag/hellaswag_val_full.txt         hub: Rowan/hellaswag, validation (derived text)
    truthfulqa/v0/mc_task.json               hub: truthfulqa/truthful_qa multiple_choice
    piqa/valid.jsonl + piqa/valid-labels.lst hub: baber/piqa, validation
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from samrepro.errors import UserError
from samrepro.io.tasks import HELLASWAG_DOCS as _HELLASWAG_DOCS

FILES = {
    "arc_challenge": ["arc_challenge/ARC-Challenge-Test.jsonl"],
    "hellaswag": ["hellaswag/hellaswag_val_full.txt"],
    "truthfulqa_mc2": ["truthfulqa/v0/mc_task.json"],
    "piqa": ["piqa/valid.jsonl", "piqa/valid-labels.lst"],
}


def _path(data_dir, relative: str) -> Path:
    if not data_dir:
        raise UserError("the local zero-shot tasks need a data folder: set SAMREPRO_DATA_DIR "
                        "or --data-dir, or use the hub tasks (source='hub')")
    path = Path(data_dir) / relative
    if not path.is_file():
        raise UserError(f"zero-shot task file not found: {path}. Put it there (layout in "
                        "samrepro/io/tasks/loaders.py), or use the hub tasks (source='hub')")
    return path


def _malformed(path: Path, where: str, problem: str) -> UserError:
    return UserError(f"zero-shot task file {path} is malformed at {where}: {problem}. "
                     "Replace it with an intact copy (see data/SOURCES.md for its checksum)")


def _json_lines(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise _malformed(path, f"line {number}", f"not JSON ({e.msg})") from None
    if not rows:
        raise _malformed(path, "line 1", "the file holds no documents")
    return rows


def _split(name: str, rows: list[dict]) -> datasets.DatasetDict:
    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows)})


def arc_challenge(data_dir=None, **_) -> datasets.DatasetDict:
    """ARC-Challenge test: {id, question, choices: {text, label}, answerKey}."""
    path = _path(data_dir, FILES["arc_challenge"][0])
    rows = []
    for number, item in enumerate(_json_lines(path), 1):
        try:
            choices = item["question"]["choices"]
            row = {"id": item["id"], "question": item["question"]["stem"],
                   "choices": {"text": [c["text"] for c in choices],
                               "label": [c["label"] for c in choices]},
                   "answerKey": item["answerKey"]}
        except (KeyError, TypeError) as e:
            raise _malformed(path, f"line {number}", f"missing field {e}") from None
        if row["answerKey"] not in row["choices"]["label"]:
            raise _malformed(path, f"line {number}", "answerKey is not one of the labels")
        rows.append(row)
    return _split("test", rows)


def hellaswag(data_dir=None, **_) -> datasets.DatasetDict:
    """HellaSwag validation from the derived text file: 6 lines an item (context, gold
    label, 4 endings). The context is `activity_label + ": " + ctx` already cleaned of
    WikiHow's [header]/[step]/[title] tags; the ctx_a/ctx_b split is lost (see the YAML)."""
    path = _path(data_dir, FILES["hellaswag"][0])
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or len(lines) % 6:
        raise _malformed(path, f"line {len(lines)}",
                         f"{len(lines)} lines is not a whole number of 6-line items")
    rows = []
    for start in range(0, len(lines), 6):
        context, label, *endings = lines[start:start + 6]
        if label not in ("0", "1", "2", "3"):
            raise _malformed(path, f"line {start + 2}", f"gold label {label!r} is not 0-3")
        rows.append({"ctx": context, "endings": endings, "label": label})
    return _split("validation", rows)


def truthfulqa_mc2(data_dir=None, **_) -> datasets.DatasetDict:
    """TruthfulQA multiple choice (v0, the version the hub dataset and lm-eval use):
    {question, mc1_targets: {choices, labels}, mc2_targets: {choices, labels}}."""
    path = _path(data_dir, FILES["truthfulqa_mc2"][0])
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
        rows = [{"question": item["question"],
                 **{key: {"choices": list(item[key]), "labels": list(item[key].values())}
                    for key in ("mc1_targets", "mc2_targets")}}
                for item in items]
    except ValueError as e:
        raise _malformed(path, "its start", f"not JSON ({e})") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise _malformed(path, "an item", f"not a list of TruthfulQA items ({e!r})") from None
    if not rows:
        raise _malformed(path, "its start", "the file holds no questions")
    return _split("validation", rows)


def piqa(data_dir=None, **_) -> datasets.DatasetDict:
    """PIQA validation: {goal, sol1, sol2, label}, the labels from their own file."""
    docs_path = _path(data_dir, FILES["piqa"][0])
    labels_path = _path(data_dir, FILES["piqa"][1])
    docs = _json_lines(docs_path)
    labels = labels_path.read_text(encoding="utf-8").split()
    if len(labels) != len(docs):
        raise _malformed(labels_path, "its end",
                         f"{len(labels)} labels for {len(docs)} questions in {docs_path.name}")
    rows = []
    for number, (doc, label) in enumerate(zip(docs, labels), 1):
        if label not in ("0", "1") or not all(key in doc for key in ("goal", "sol1", "sol2")):
            raise _malformed(docs_path, f"line {number}", "need goal, sol1, sol2 and a 0/1 label")
        rows.append({"goal": doc["goal"], "sol1": doc["sol1"], "sol2": doc["sol2"],
                     "label": int(label)})
    return _split("validation", rows)


def hellaswag_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    """The harness's HellaSwag query and choices, cleaned by the harness's own `preprocess`;
    from the whole context, since the file has no ctx_a/ctx_b split to capitalize ctx_b."""
    from lm_eval.tasks.hellaswag.utils import preprocess

    # The harness asks for the documents several times a task: clean the 10042 rows once.
    if dataset._fingerprint not in _HELLASWAG_DOCS:
        columns = dataset.to_dict()
        _HELLASWAG_DOCS[dataset._fingerprint] = datasets.Dataset.from_dict({
            **columns,
            "query": [preprocess(ctx) for ctx in columns["ctx"]],
            "choices": [[preprocess(e) for e in endings] for endings in columns["endings"]],
            "gold": [int(label) for label in columns["label"]]})
    return _HELLASWAG_DOCS[dataset._fingerprint]


def truthfulqa_mc2_results(doc, results):
    """The harness's own MC2 scoring (probability mass of the true answers)."""
    from lm_eval.tasks.truthfulqa.utils import process_results_mc2

    return process_results_mc2(doc, results)
