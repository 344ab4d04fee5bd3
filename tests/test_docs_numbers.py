"""Every measured number a user document shows comes from a results file: the README's prose and
docs/*.md (the README's results table has its own test in test_readme.py), and the README's
time and memory of its two commands come from results/embedded/TIMINGS.md."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# where a number may come from: the results (ours and the paper's), the committed models' cards
SOURCES = [*ROOT.glob("results/**/*.json"), *ROOT.glob("results/**/*.md"),
           *ROOT.glob("results/**/*.csv"), *ROOT.glob("samrepro/checkpoints/*/README.md"),
           ROOT / "samrepro" / "study" / "paper_reference.json"]
# numbers that read as measurements: a decimal percentage (1.8%), a decimal with two or more
# places (7.11, 0.000456), a parameter count (2.7 M, 2,664,960), a range of percentages (1–5%)
MEASURED = re.compile(r"(?<![\w.,\-−])(?:\d+(?:\.\d+)?[–-]\d+(?:\.\d+)?%|\d+\.\d+%|\d+\.\d{2,}"
                      r"|\d+(?:\.\d+)? ?M(?= parameters|-parameter)|\d{1,3}(?:,\d{3})+)(?!\w|\.\d)")
TIME_OR_MEMORY = re.compile(r"\d+(?:\.\d+)? (?:h|min|s|GB|GiB|MB|MiB)\b(?: \d+ (?:min|s)\b)?")


def prose(text: str) -> str:
    """`text` without code blocks, inline code, link targets and the generated blocks."""
    text = re.sub(r"<!-- samrepro\.readme:(\S+) -->.*?<!-- /samrepro\.readme:\1 -->", "", text,
                  flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.sub(r"\s+", " ", re.sub(r"\]\([^)]*\)", "]", text))


def millions(sources: str) -> set[str]:
    """Every count of the sources (2,664,960) rounded as a text would show it ('2.7M', '3M')."""
    counts = [int(n.replace(",", "")) for n in re.findall(r"\d{1,3}(?:,\d{3})+", sources)]
    return {f"{n / 1e6:.{d}f}M" for n in counts for d in (0, 1, 2)}


def unsourced(text: str, sources: str) -> list[str]:
    normal = lambda n: n.replace(" M", "M")
    found = {normal(n) for n in MEASURED.findall(sources)} | millions(sources)
    return sorted({n for n in MEASURED.findall(prose(text))
                   if normal(n) not in found and normal(n) not in sources})


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_measured_number_of_a_document_is_in_a_results_file(path):
    sources = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    missing = unsourced(path.read_text(encoding="utf-8"), sources)
    assert not missing, f"{path.name}: numbers that no results file holds: {missing}"


def test_the_check_finds_a_number_no_results_file_holds():
    text = ("The effects are 1–5%. (1.0% and 1.8%), ppl 62.39 on a 4.3 M\nparameters model; "
            "`7.77` in code and [a](x/1.23.md) are not prose; 50% and 0.1 are settings.")
    assert unsourced(text, "62.39 and 1.8%; 2,664,960 parameters") == ["1.0%", "1–5%", "4.3 M"]
    assert unsourced("a 2.7 M parameters model", "2,664,960 parameters") == []


def readme_timings() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = re.search(r"How long they take, from .*?(?:\n\n|$)", text, flags=re.S)
    assert paragraph, "the README's paragraph on the two commands' time and memory is gone"
    return TIME_OR_MEMORY.findall(paragraph.group(0).replace("\n", " "))


def test_the_readmes_time_and_memory_are_those_of_timings_md():
    timings = (ROOT / "results" / "embedded" / "TIMINGS.md").read_text(encoding="utf-8")
    figures = readme_timings()
    assert any(unit in f for f in figures for unit in ("GB", "GiB", "MiB")) and any("min" in f for f in figures)
    missing = [f for f in figures if f not in timings]
    assert not missing, f"the README's timings that TIMINGS.md does not hold: {missing}"
