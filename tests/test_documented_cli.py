"""Every `samrepro …`, `torchrun … -m samrepro.commands.distributed …` and `benchmarks/gpu_check.sh …`
command that README.md and docs/install.md show parses against the parser that runs it: no
documented option that does not exist, no required one left out."""

import argparse
import re
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/install.md")
STARTS = ("samrepro ", "torchrun ", "bash benchmarks/gpu_check.sh")


def documented_commands(text: str) -> list[str]:
    """Commands in fenced code blocks (continuation lines joined, comments dropped) and in
    inline code spans that carry an option (`samrepro plan --model DIR`, not `samrepro prune`)."""
    found = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
        joined = re.sub(r"\s*\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"^(\w+=\S+\s+)+", "", line)  # VAR=value prefixes
            if line.startswith(STARTS):
                found.append(line)
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", outside):
        span = re.sub(r"^(\w+=\S+\s+)+", "", span.strip())
        if span.startswith(STARTS) and " -" in span and "…" not in span:
            found.append(span)
    return found


class _Refused(Exception):
    pass


def _strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser, raising instead of exiting, also in its sub-parsers."""
    def error(message):
        raise _Refused(message)

    parser.error = error
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _strict(sub)
    return parser


def parse(command: str):
    from samrepro.commands import cli, distributed

    words = shlex.split(command)
    if words[0] == "samrepro":
        return _strict(cli.build_parser()).parse_args(words[1:])
    if words[0] == "bash":
        sys.path.insert(0, str(REPO / "benchmarks"))
        try:
            import gpu_check
        finally:
            sys.path.remove(str(REPO / "benchmarks"))
        return _strict(gpu_check.build_parser()).parse_args(words[2:])
    from torch.distributed.run import get_args_parser

    at = words.index("-m")
    assert words[at + 1] == "samrepro.commands.distributed", command
    launcher = get_args_parser()
    launcher.error = lambda message: (_ for _ in ()).throw(_Refused(message))
    launcher.parse_args(words[1:at + 2])  # torchrun's own options, up to the module
    return _strict(distributed.build_parser()).parse_args(words[at + 2:])


@pytest.mark.parametrize("doc", DOCS)
def test_every_documented_command_parses(doc):
    commands = documented_commands((REPO / doc).read_text(encoding="utf-8"))
    assert commands, f"no commands found in {doc}"
    for command in commands:
        try:
            parse(command)
        except (_Refused, SystemExit) as e:
            pytest.fail(f"{doc}: {command!r} does not parse: {e}")


def test_the_check_finds_and_refuses_what_does_not_exist():
    text = ("```bash\ntorchrun --nproc-per-node 2 -m samrepro.commands.distributed --model m \\\n"
            "    --device-map auto\nsamrepro prune --sparsity 0.5   # no --model\n```\n"
            "and inline `samrepro plan --model DIR --gpus 8xA100-80GB`.")
    commands = documented_commands(text)
    assert commands == ["torchrun --nproc-per-node 2 -m samrepro.commands.distributed --model m "
                        "--device-map auto", "samrepro prune --sparsity 0.5",
                        "samrepro plan --model DIR --gpus 8xA100-80GB"]
    for bad in commands[:2]:
        with pytest.raises(_Refused):
            parse(bad)
    assert parse(commands[2]).gpus == "8xA100-80GB"
    with pytest.raises(_Refused):
        parse("torchrun --no-such-option 2 -m samrepro.commands.distributed --model m")
