"""Zero-shot accuracy through lm-evaluation-harness on the local task files.

The local tasks must ask the harness's own questions (same templates and metrics as its hub
tasks), and the accuracy they report must equal a direct computation of the same
log-likelihood comparison with the model, written here from the raw files.
"""

import json
import math
import re
from pathlib import Path

import jinja2
import pytest
import torch
import yaml

from samrepro.errors import UserError
from samrepro.io.evaluate import LOCAL_TASKS_DIR, zero_shot
from samrepro.io.models import load_model

LIMIT = 3


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: f"!function {node.value}")


def _yaml(path: Path) -> dict:
    config = yaml.load(path.read_text(), Loader=_Loader)
    if "include" in config:
        config = {**_yaml(path.parent / config.pop("include")), **config}
    return config


def _harness_yaml(task: str) -> dict:
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks"
    folder = {"arc_challenge": "arc", "truthfulqa_mc2": "truthfulqa"}.get(task, task)
    return _yaml(root / folder / f"{task}.yaml")


@pytest.mark.parametrize("task", ["arc_challenge", "hellaswag", "truthfulqa_mc2", "piqa"])
def test_local_tasks_ask_the_harness_questions(task):
    ours, theirs = _yaml(LOCAL_TASKS_DIR / f"samrepro_{task}.yaml"), _harness_yaml(task)
    for key in ("output_type", "doc_to_text", "doc_to_choice", "doc_to_target", "metric_list"):
        assert ours[key] == theirs[key], key
    assert ours.get("num_fewshot") == theirs.get("num_fewshot")


def test_local_hellaswag_differs_from_the_harness_only_in_case():
    # The first validation item on the hub: ctx_a, ctx_b and the activity label.
    from lm_eval.tasks.hellaswag.utils import process_docs

    import datasets
    from samrepro.io.tasks.loaders import hellaswag, hellaswag_docs

    hub_row = {"activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.",
               "ctx_b": "he", "label": "3", "endings": [
                   "is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                   "is holding a rubik's cube.", "starts pulling up roofing on a roof."]}
    theirs = process_docs(datasets.Dataset.from_list([hub_row]))[0]
    import os
    ours = hellaswag_docs(hellaswag(os.environ["SAMREPRO_DATA_DIR"])["validation"].select([0]))[0]
    assert ours["choices"] == theirs["choices"] and ours["gold"] == theirs["gold"]
    assert ours["query"] != theirs["query"] and ours["query"].lower() == theirs["query"].lower()


# ---- the direct computation ---------------------------------------------------------------

def _docs(task: str, folder: Path) -> list[tuple[str, list[str], object]]:
    """(context, choices, gold) of the first LIMIT documents, read from the raw files."""
    out = []
    if task == "arc_challenge":
        for line in (folder / "arc_challenge/ARC-Challenge-Test.jsonl").read_text().splitlines()[:LIMIT]:
            item = json.loads(line)
            labels = [c["label"] for c in item["question"]["choices"]]
            out.append((f"Question: {item['question']['stem']}\nAnswer:",
                        [c["text"] for c in item["question"]["choices"]],
                        labels.index(item["answerKey"])))
    elif task == "piqa":
        lines = (folder / "piqa/valid.jsonl").read_text().splitlines()[:LIMIT]
        labels = (folder / "piqa/valid-labels.lst").read_text().split()
        for line, label in zip(lines, labels):
            item = json.loads(line)
            out.append((f"Question: {item['goal']}\nAnswer:", [item["sol1"], item["sol2"]],
                        int(label)))
    elif task == "hellaswag":
        lines = (folder / "hellaswag/hellaswag_val_full.txt").read_text().split("\n")

        def clean(text):  # the harness's cleaning of WikiHow artefacts
            text = re.sub(r"\[.*?\]", "", text.strip().replace(" [title]", ". "))
            return text.replace("  ", " ")

        for i in range(LIMIT):
            context, label, *endings = lines[6 * i:6 * i + 6]
            out.append((clean(context), [clean(e) for e in endings], int(label)))
    else:  # truthfulqa_mc2: the harness's primer, rendered from its own template
        template = jinja2.Template(_harness_yaml("truthfulqa_mc2")["doc_to_text"])
        items = json.loads((folder / "truthfulqa/v0/mc_task.json").read_text())[:LIMIT]
        for item in items:
            answers = item["mc2_targets"]
            out.append((template.render(question=item["question"]), list(answers),
                        list(answers.values())))
    return out


@torch.no_grad()
def _loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    prefix = tokenizer(context, add_special_tokens=False)["input_ids"]
    ids = torch.tensor(whole)
    logp = torch.log_softmax(model(ids[None, :-1]).logits[0].double(), dim=-1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(len(prefix), len(whole)))


@pytest.mark.parametrize("task", ["arc_challenge", "hellaswag", "truthfulqa_mc2", "piqa"])
def test_local_task_accuracy_equals_the_direct_loglikelihood_comparison(task, data_dir):
    model, tokenizer = load_model("tiny-llama", torch.float32, seed=3)
    got = zero_shot(model, tokenizer, [task], "zero-shot", limit=LIMIT, source="local",
                    data_dir=data_dir)["zero-shot"][task]
    assert got["documents"] == LIMIT and got["shots"] == 0

    acc, acc_norm, mc2 = [], [], []  # per document, in document order
    for context, choices, gold in _docs(task, data_dir):
        lls = [_loglikelihood(model, tokenizer, context, " " + choice) for choice in choices]
        if task == "truthfulqa_mc2":
            probs = [math.exp(ll) for ll in lls]
            mc2.append(sum(p for p, true in zip(probs, gold) if true) / sum(probs))
            continue
        norm = [ll / len(" " + choice) for ll, choice in zip(lls, choices)]
        acc.append(float(max(range(len(lls)), key=lls.__getitem__) == gold))
        acc_norm.append(float(max(range(len(norm)), key=norm.__getitem__) == gold))
    if task == "truthfulqa_mc2":
        assert got["metrics"]["acc"] == pytest.approx(sum(mc2) / LIMIT, abs=1e-6)
    else:
        assert got["metrics"]["acc"] == pytest.approx(sum(acc) / LIMIT)
        assert got["metrics"]["acc_norm"] == pytest.approx(sum(acc_norm) / LIMIT)
    assert got["value"] == got["metrics"][got["metric"]]
    headline = mc2 if task == "truthfulqa_mc2" else {"acc": acc, "acc_norm": acc_norm}[got["metric"]]
    assert got["per_document"] == pytest.approx(headline, abs=1e-6)  # document by document


def test_leaderboard_setting_gives_arc_its_25_shots_and_shares_0_shot_scores(data_dir):
    model, tokenizer = load_model("tiny-llama", torch.float32, seed=3)
    got = zero_shot(model, tokenizer, ["arc_challenge", "piqa"], ["zero-shot", "leaderboard"],
                    limit=1, source="local", data_dir=data_dir)
    arc = got["leaderboard"]["arc_challenge"]
    assert arc["shots"] == 25 and arc["documents"] == 1 and arc["metric"] == "acc_norm"
    assert got["zero-shot"]["arc_challenge"]["shots"] == 0
    assert got["zero-shot"]["piqa"] is got["leaderboard"]["piqa"]  # 0-shot in both: once


def _folder_with(tmp_path: Path, data_dir: Path, relative: str, text: str | None) -> Path:
    for name in ("arc_challenge", "hellaswag", "piqa", "truthfulqa"):
        (tmp_path / name).mkdir()
    for task_file in ("piqa/valid.jsonl", "piqa/valid-labels.lst"):
        (tmp_path / task_file).write_bytes((data_dir / task_file).read_bytes())
    if text is not None:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    return tmp_path


@pytest.mark.parametrize("task, relative, text, message", [
    ("arc_challenge", "arc_challenge/ARC-Challenge-Test.jsonl", None, "not found"),
    ("arc_challenge", "arc_challenge/ARC-Challenge-Test.jsonl", '{"id": 1}\n', "missing field"),
    ("hellaswag", "hellaswag/hellaswag_val_full.txt", "ctx\n3\na\nb\nc\n", "6-line items"),
    ("truthfulqa_mc2", "truthfulqa/v0/mc_task.json", "[{\"question\": ", "not JSON"),
    ("piqa", "piqa/valid-labels.lst", "0\n1\n", "labels for"),
])
def test_missing_or_malformed_task_file_is_a_clear_error(tmp_path, data_dir, task, relative,
                                                         text, message):
    folder = _folder_with(tmp_path, data_dir, relative, text)
    model, tokenizer = load_model("tiny-llama", torch.float32, seed=3)
    with pytest.raises(UserError, match=message) as error:
        zero_shot(model, tokenizer, [task], limit=1, source="local", data_dir=folder)
    assert str(folder / relative) in str(error.value)


def test_unknown_task_and_setting_are_user_errors():
    model, tokenizer = load_model("tiny-llama", torch.float32, seed=3)
    with pytest.raises(UserError, match="unknown task 'mmlu'"):
        zero_shot(model, tokenizer, ["mmlu"])
    with pytest.raises(UserError, match="unknown setting"):
        zero_shot(model, tokenizer, ["piqa"], settings=["five-shot"])
