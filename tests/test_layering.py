"""The package's architecture holds (docs/architecture.md): sub-packages in one direction
(commands → standin → study → method → io, machine → foundations; the stand-in's training
off the run path), and inside them the module layers listed in samrepro/__init__.py's docstring: no module
imports one of its own layer or above. Every import statement counts, lazy ones too (ast)."""

import ast
import re
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "samrepro"
LAYER_LINE = re.compile(r"^\s+(\d+) [^:]+: (.+)$")
# what each sub-package may import (besides the foundations at the package's top)
ALLOWED = {"io": set(), "machine": {"io"}, "method": {"io", "machine"},
           "study": {"io", "machine", "method"}, "standin": {"io", "machine", "method", "study"},
           "commands": {"io", "machine", "method", "study", "standin"}}
ENTRY = {"io", "machine", "method", "study", "standin", "commands"}  # what __main__ may import
TOP = {"config": {"io", "machine", "method"},  # top-level modules above the foundations
       "checks": {"io", "machine", "method"}}
ALIASES = {"solver": "method", "allocation": "method"}  # contract aliases: samrepro.solver, …


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


def modules(package: Path = PACKAGE) -> dict[str, tuple[str, Path]]:
    """Module name → (its sub-package, '' at the top; its file). A sub-package's __init__ that
    holds code (standin) is the module of the sub-package's name; docstring-only ones are none."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.parts[0] in ("checkpoints", "tasks") or (len(rel.parts) > 1 and rel.parts[1] == "tasks"):
            continue
        sub = rel.parts[0] if len(rel.parts) > 1 else ""
        name = path.stem
        if name == "__init__" and sub:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if not any(not isinstance(n, ast.Expr) for n in tree.body):
                continue  # a docstring only
            name = sub
        if not sub and name in ALIASES:
            continue
        if sub and name == "__main__":
            name = f"{sub}.__main__"
        assert name not in found, f"two modules named {name}"
        found[name] = (sub, path)
    return found


def imports(path: Path, known: set[str]) -> set[tuple[str, str]]:
    """The package modules that `path` imports, as (sub-package, module) pairs."""
    found = set()

    def add(parts: list[str], names=()):
        # parts: the dotted module after 'samrepro'
        if not parts or not parts[0]:
            for n in names:
                if n in known:
                    found.add(("", n))
            return
        if parts[0] in ALLOWED and parts[0]:  # samrepro.<sub>[.module]
            if len(parts) > 1:
                found.add((parts[0], parts[1]))
            else:
                for n in names:
                    found.add((parts[0], n if n in known else parts[0]))
        else:
            found.add(("", parts[0]))

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and not (module == "samrepro" or module.startswith("samrepro.")):
                continue
            parts = module.split(".")[1:] if node.level == 0 else module.split(".") if module else []
            add(parts, [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("samrepro."):
                    add(alias.name.split(".")[1:])
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import of a module of the same layer or a higher one, every import against the
    sub-packages' direction, and every module that is in no layer."""
    layer = layers(package)
    found = modules(package)
    names = set(found)
    bad = [f"{m} is in no layer of samrepro/__init__.py" for m in sorted(names - set(layer))]
    bad += [f"{m} is listed in a layer but is no module" for m in sorted(set(layer) - names)]
    for name, (sub, path) in sorted(found.items()):
        for target_sub, target in sorted(imports(path, names)):
            if target == name or target in ALLOWED and target_sub == target:
                continue
            allowed = ENTRY if name == "__main__" else TOP.get(name) or ALLOWED.get(sub, set())
            if target_sub and target_sub != sub and target_sub not in allowed:
                bad.append(f"{sub}.{name} → {target_sub}.{target} (sub-package direction)")
            elif name in layer and target in layer and layer[target] >= layer[name]:
                bad.append(f"{name} ({layer[name]}) → {target} ({layer[target]})")
    return bad


def test_no_module_imports_one_of_its_layer_or_above():
    assert violations() == []


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "samrepro"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("checkpoints", "tasks",
                                                                 "__pycache__"))
    return copy


@pytest.mark.parametrize("line, edge", [
    ("    from samrepro.commands.cli import main\n",
     "method.solver → commands.cli (sub-package direction)"),  # up, inside a function
    ("from samrepro.method import pipeline\n", "solver (3) → pipeline (4)"),  # up, same package
    ("import samrepro.study.experiments\n",
     "method.solver → study.experiments (sub-package direction)"),  # up, absolute
    ("from samrepro.method.hessian import HessianAccumulator\n", "solver (3) → hessian (3)"),
])
def test_the_check_finds_a_bad_edge(tmp_path, line, edge):
    copy = _copy(tmp_path)
    assert violations(copy) == []
    solver = copy / "method" / "solver.py"
    text = solver.read_text(encoding="utf-8")
    if line.startswith("    "):
        text += "\n\ndef _bad():\n" + line
    else:
        text = text.replace("import torch\n", "import torch\n" + line, 1)
    solver.write_text(text, encoding="utf-8")
    assert violations(copy) == [edge]


def test_a_new_module_must_be_placed(tmp_path):
    copy = _copy(tmp_path)
    (copy / "method" / "newthing.py").write_text("from samrepro.errors import UserError\n",
                                                 encoding="utf-8")
    assert violations(copy) == ["newthing is in no layer of samrepro/__init__.py"]
