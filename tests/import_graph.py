"""The project's import graph, read from the source (AST), for the structure and bento tests.

Every `import` counts, also the ones inside functions (a lazy import is still a
dependency: it fails at run time when the module is missing), except those under
`if TYPE_CHECKING:`, which never run.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from vigil.paths import PROJECT_ROOT

ROOT = PROJECT_ROOT
# Folders that hold no importable project code.
NOT_CODE = {"tests", "deploy", "bentos", "build", "dist"}


def module_file(name: str) -> Path | None:
    """The file of project module `name` (a package's __init__.py), or None."""
    path = ROOT.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def project_modules() -> dict[str, Path]:
    """Every project module by dotted name (tests and non-code folders left out)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in NOT_CODE or any(part.startswith(".") for part in rel.parts):
            continue
        parts = rel.with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imported_names(path: Path, name: str) -> list[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


@dataclass
class Imports:
    """What one module imports: project modules and third-party top-level names."""

    project: set[str] = field(default_factory=set)
    third_party: set[str] = field(default_factory=set)


@lru_cache(maxsize=None)
def imports_of(name: str) -> Imports:
    """The project modules (and their parent packages) and third-party names `name` imports."""
    path = module_file(name)
    assert path is not None, f"no project module {name}"
    out = Imports()
    for target in _imported_names(path, name):
        top = target.split(".")[0]
        if module_file(top) is None:
            if top and top not in sys.stdlib_module_names:
                out.third_party.add(top)
            continue
        while target and module_file(target) is None:  # `from pkg import name`: name is not a module
            target = target.rpartition(".")[0]
        parts = target.split(".")
        # Importing a module runs its parent packages too, except the importer's own
        # ancestors, which are already running when it is imported.
        ancestors = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        out.project.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if p not in ancestors)
    out.project.discard(name)
    return out


def closure(start: str) -> set[str]:
    """Every project module `start` imports, directly or through others, `start` included."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imports_of(name).project)
    return seen


def third_party(modules: set[str]) -> dict[str, set[str]]:
    """Third-party top-level import names used by `modules`, each with the modules using it."""
    used: dict[str, set[str]] = {}
    for name in modules:
        for top in imports_of(name).third_party:
            used.setdefault(top, set()).add(name)
    return used
