"""The README stays true: its generated blocks are what results/ and the memory model give
now, every number of its results table is in results/, and every relative link of README.md,
docs/*.md and the notebooks' text resolves inside the repository."""

import json
import re
import shutil
from pathlib import Path

import pytest

from samrepro.study import readme
from samrepro.study.names import LABELS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "embedded"
# every Markdown file a user reads from the repository, and the notebooks' text cells
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), RESULTS / "TIMINGS.md"]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED_BLOCKS = {"README.md": {"forest", "claims", "gpu"}, "docs/install.md": {"gpu-all"}}


# ---- the generated blocks ---------------------------------------------------------------------

def test_every_generated_block_is_what_the_generator_writes_now():
    for name, expected in EXPECTED_BLOCKS.items():
        text = (ROOT / name).read_text(encoding="utf-8")
        found = readme.blocks(text)
        assert set(found) == expected, f"{name}: generated blocks {sorted(found)}"
        for block, body in found.items():
            assert body == readme.BLOCKS[block](), (
                f"{name}: the {block!r} block is out of date: run `make readme` "
                "(python -m samrepro.study.readme) and commit the result")
    assert readme.main(["--check"]) == 0


def _claims_table() -> list[list[str]]:
    body = readme.blocks((ROOT / "README.md").read_text(encoding="utf-8"))["claims"]
    rows = [line for line in body.splitlines() if line.startswith("| ")][1:]  # no header
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def _claims_in_results() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            found += [(path.stem, claim) for claim in data.get("claims", [])]
    return found


def test_the_results_table_shows_every_claim_of_results_with_its_verdict_and_numbers():
    """Read from the JSON files directly, not through the generator."""
    table = _claims_table()
    claims = _claims_in_results()
    assert claims and len(table) == len(claims)
    for source, claim in claims:
        rows = [r for r in table if r[0] == claim["claim"] and source in r[4]]
        first = (claim.get("evidence") or [""])[0]
        head, _, rest = first.partition(" ")  # the model named by what it is
        first = f"{LABELS[head]} {rest}" if head in LABELS else first
        shown = f"**{claim['verdict']}**"
        matching = [r for r in rows if r[2] == shown
                    and r[3] == first.replace("|", "\\|").replace("\n", " ")]
        assert matching, f"{source} {claim['claim']}: not in the README as in results/"


def test_every_number_in_the_results_table_comes_from_results():
    text = "\n".join(path.read_text(encoding="utf-8") for path in RESULTS.glob("*.json"))
    body = readme.blocks((ROOT / "README.md").read_text(encoding="utf-8"))["claims"]
    body = re.sub(r"\]\([^)]*\)", "]", body)  # link targets are file names, not numbers
    numbers = set(re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?", body))
    assert numbers
    missing = sorted(n for n in numbers if n not in text)
    assert not missing, f"numbers in the README's results table that no results file holds: {missing}"


def test_a_changed_result_changes_the_block(tmp_path):
    """The check can fail: change one number in a copy of results/ and the block differs."""
    copy = tmp_path / "embedded"
    shutil.copytree(RESULTS, copy, ignore=shutil.ignore_patterns("*.ipynb", "*.png", "*.csv"))
    path = copy / "table1.json"
    data = json.loads(path.read_text())
    first = data["claims"][0]
    assert re.search(r"\d", first["evidence"][0])
    first["evidence"][0] = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10),
                                  first["evidence"][0], count=1)
    path.write_text(json.dumps(data))
    assert readme.claims_block(copy) != readme.claims_block(RESULTS)
    first["verdict"] = "holds"
    path.write_text(json.dumps(data))
    row = next(line for line in readme.claims_block(copy).splitlines()
               if line.startswith(f"| {first['claim']} |") and "table1.md" in line)
    assert "**holds**" in row


def test_claims_are_read_in_the_papers_order_and_old_single_run_files_are_refused(tmp_path):
    counts = {"holds": 1, "fails": 0, "inconclusive": 3}
    claims = [{"claim": c, "statement": "s", "verdict": "holds 1, fails 0, inconclusive 3",
               "counts": counts, "evidence": [f"{c}: −1.2% [−2.5%, +0.1%]"]}
              for c in ("T2-sparsegpt", "C2", "C1")]
    (tmp_path / "x.json").write_text(json.dumps({"claims": claims}))
    assert [r["claim"] for r in readme.claim_rows(tmp_path)] == ["C1", "C2", "T2-sparsegpt"]
    block = readme.claims_block(tmp_path)
    assert "C1: −1.2% [−2.5%, +0.1%]" in block and "`x.json`" in block
    del claims[1]["counts"]  # a verdict without its counts: the format before intervals
    (tmp_path / "x.json").write_text(json.dumps({"claims": claims}))
    with pytest.raises(SystemExit, match="'C2' has no verdict counts.*re-run its notebook"):
        readme.claim_rows(tmp_path)


def test_the_forest_block_shows_new_format_results_only(tmp_path):
    """Results before claims.FORMAT 2 have no forest plot: the block stays empty; a result in
    the new format with its plot written beside it is shown, and no other."""
    (tmp_path / "table1.json").write_text(json.dumps({"claims": [], "rows": []}))
    (tmp_path / "table1-forest.png").write_bytes(b"")
    assert readme.forest_block(tmp_path) == ""
    (tmp_path / "table2.json").write_text(json.dumps({"claims": [], "rows": [], "format": 2}))
    assert readme.forest_block(tmp_path) == ""  # no plot beside it
    (tmp_path / "table2-forest.png").write_bytes(b"")
    block = readme.forest_block(tmp_path)
    images = re.findall(r"!\[[^]]*\]\(([^)]*)\)", block)
    assert images == ["results/embedded/table2-forest.png"]
    assert "never one arm's own interval" in block


def test_the_settings_line_lists_each_results_seed_count(tmp_path):
    claim = [{"claim": "C1", "statement": "s", "verdict": "holds 1, fails 0, inconclusive 0",
              "counts": {"holds": 1, "fails": 0, "inconclusive": 0}, "evidence": ["e"]}]
    for name, seeds in (("table1", 5), ("table4", 3), ("figure1", 3), ("table3", None)):
        settings = {"nsamples": 16, "seqlen": 512, **({"seeds": seeds} if seeds else {})}
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"preset": "embedded", "settings": settings, "claims": claim}))
    line = readme.claims_block(tmp_path).splitlines()[-1]
    assert line.startswith("Settings (those of table1; each result records its own): "
                           "preset `embedded`; 16 calibration windows of 512 tokens; ")
    assert "3 calibration seeds (figure1, table4)" in line
    assert "5 calibration seeds (table1)" in line and "one run per arm (table3)" in line


def test_the_gpu_tables_come_from_the_memory_model():
    from samrepro.machine.memory import GIB, estimate_memory, estimate_time

    body = readme.blocks((ROOT / "README.md").read_text(encoding="utf-8"))["gpu"]
    row = next(line for line in body.splitlines() if line.startswith("| llama-2-13b "))
    e = estimate_memory("llama-2-13b", 128, 2048, 80e9)
    assert f"{e['pruning']['peak'] / GIB:.1f} GiB" in row
    gpus = e["hutchinson"]["min_devices"]
    assert f"{e['hutchinson']['peak'] / GIB:.0f} GiB on {gpus} GPU{'s' * (gpus > 1)} |" in row
    # the projection is the one benchmarks/scaling.py recorded for LLaMA-13B
    scaling = json.loads((RESULTS / "scaling.json").read_text())
    t = estimate_time("llama-13b", probe_forwards=scaling["rates"]["probe_in_forwards"])
    assert t["pruning_seconds"] == pytest.approx(scaling["projection"]["pruning_seconds"])
    assert t["probe_seconds"] == pytest.approx(scaling["projection"]["probe_seconds_1x2048"])


# ---- links ------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found, seen = set(), {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match and not in_code:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    found |= set(re.findall(r'<a (?:id|name)="([^"]+)"', markdown))
    return found


def dangling_links(markdown: str, where: Path, root: Path = ROOT) -> list[str]:
    """Relative links of `markdown` (a file in folder `where`) that do not resolve inside `root`."""
    markdown = re.sub(r"```.*?```", "", markdown, flags=re.S)  # not links inside code blocks
    markdown = re.sub(r"`[^`\n]*`", "", markdown)
    bad = []
    for target in LINK.findall(markdown):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, …
            continue
        path, _, anchor = target.partition("#")
        file = (where / path).resolve() if path else None
        if file is not None:
            if not file.exists() or root.resolve() not in (file, *file.parents):
                bad.append(target)
                continue
        if anchor:
            text = file.read_text(encoding="utf-8") if file else markdown
            if (file is None or file.suffix == ".md") and anchor not in anchors(text):
                bad.append(target)
    return bad


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert path.exists()
    assert dangling_links(path.read_text(encoding="utf-8"), path.parent) == []


def test_every_link_in_the_notebooks_text_resolves():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert dangling_links(text, path.parent) == [], path.name


def test_the_link_check_finds_dangling_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## 2. Saliency: which weights go\n")
    text = ("[ok](docs/a.md) [ok](docs/a.md#2-saliency-which-weights-go) [ok](https://x.org/y) "
            "[no](docs/b.md) [no](docs/a.md#3-sensitivity) [no](../outside.md) [ok](#here)\n"
            "## Here\n`[not a link](nowhere.md)`\n")
    (tmp_path / "outside.md").write_text("")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "docs").mkdir()
    (root / "docs" / "a.md").write_text((tmp_path / "docs" / "a.md").read_text())
    assert dangling_links(text, root, root) == ["docs/b.md", "docs/a.md#3-sensitivity",
                                                "../outside.md"]


def test_no_user_document_points_outside_the_repository():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "METHOD.md" not in text, path.name
