"""No module imports one above it: the layers listed in samrepro/__init__.py's docstring,
checked against every import statement of every module (parsed with ast, so imports inside
functions count too)."""

import ast
import re
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "samrepro"
LAYER_LINE = re.compile(r"^\s+(\d+) [^:]+: (.+)$")


def layers(package: Path = PACKAGE) -> dict[str, int]:
    """Module name → layer number, from the package docstring's `N name: a, b, c` lines."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
    found = {}
    for line in doc.splitlines():
        match = LAYER_LINE.match(line)
        if match:
            for module in match.group(2).split(","):
                assert module.strip() not in found, f"{module.strip()} is listed twice"
                found[module.strip()] = int(match.group(1))
    return found


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules that `path` imports: `from .x import …`, `from . import x`,
    `from samrepro.x import …`, `import samrepro.x`, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("samrepro"):
                continue
            parts = (node.module or "").split(".")
            if node.level == 0:
                parts = parts[1:]  # drop "samrepro"
            if parts and parts[0]:
                found.add(parts[0])
            else:  # from . import x, y / from samrepro import x
                found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("samrepro."):
                    found.add(alias.name.split(".")[1])
    return found - {path.stem}


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import of a module of the same layer or a higher one, and every module that is
    in no layer: `importer (layer) → imported (layer)`."""
    layer = layers(package)
    modules = {p.stem for p in package.glob("*.py")}
    bad = [f"{m} is in no layer of samrepro/__init__.py" for m in sorted(modules - set(layer))]
    bad += [f"{m} is listed in a layer but is no module" for m in sorted(set(layer) - modules)]
    for path in sorted(package.glob("*.py")):
        for target in sorted(imports(path, modules)):
            if path.stem in layer and target in layer and layer[target] >= layer[path.stem]:
                bad.append(f"{path.stem} ({layer[path.stem]}) → {target} ({layer[target]})")
    return bad


def test_no_module_imports_one_of_its_layer_or_above():
    assert violations() == []


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "samrepro"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("checkpoints", "tasks",
                                                                 "__pycache__"))
    return copy


@pytest.mark.parametrize("line, edge", [
    ("    from .cli import main\n", "solver (3) → cli (12)"),  # up, inside a function
    ("from . import pipeline\n", "solver (3) → pipeline (4)"),  # up, at the top
    ("import samrepro.experiments\n", "solver (3) → experiments (8)"),  # up, absolute
    ("from samrepro.hessian import HessianAccumulator\n", "solver (3) → hessian (3)"),  # sideways
])
def test_the_check_finds_a_bad_edge(tmp_path, line, edge):
    copy = _copy(tmp_path)
    assert violations(copy) == []
    solver = copy / "solver.py"
    text = solver.read_text(encoding="utf-8")
    if line.startswith("    "):
        text += "\n\ndef _bad():\n" + line
    else:
        text = text.replace("import torch\n", "import torch\n" + line, 1)
    solver.write_text(text, encoding="utf-8")
    assert violations(copy) == [edge]


def test_a_new_module_must_be_placed(tmp_path):
    copy = _copy(tmp_path)
    (copy / "newthing.py").write_text("from .errors import UserError\n", encoding="utf-8")
    assert violations(copy) == ["newthing is in no layer of samrepro/__init__.py"]
