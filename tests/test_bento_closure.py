"""The bento is complete by construction: bentofile.yaml against the serving code's import closure.

A bento installs only its own requirements and serves only its own `src/` (that is what
`bentoml containerize` builds), so a module or package that serving imports but the
bentofile leaves out is a crash on the first deploy. These tests derive the closure of
`service.py` from the source and fail, naming what is missing, when the bentofile falls
behind. The clean-environment test (test_bento.py) proves the same by serving the bento.
"""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import distributions, packages_distributions
from pathlib import Path

import pathspec
import yaml
from import_graph import ROOT, closure, module_file, third_party

BENTOFILE = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
# Distributions the bento installs that no Vigil module imports: uvicorn (which BentoML
# serves with) uses them when they are installed, and they are what makes it fast.
RUNTIME_ONLY = {"uvloop", "httptools"}
# Components that must never end up in the serving bento.
NOT_SERVING = ("cli", "demo", "monitor", "lifecycle", "converter", "loadtest")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines: list[str]) -> dict[str, str]:
    """{normalised name: version} from `name[extras]==version` lines."""
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name.split("[")[0])] = version.split(";")[0].strip()
    return pins


def _bento_files() -> set[str]:
    include = pathspec.PathSpec.from_lines("gitwildmatch", BENTOFILE["include"])
    exclude = pathspec.PathSpec.from_lines("gitwildmatch", BENTOFILE.get("exclude", []))
    files = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if ".venv" not in p.parts}
    return {f for f in files if include.match_file(f) and not exclude.match_file(f)}


SERVING = closure("service")


def _providers() -> dict[str, set[str]]:
    """{top-level module: distributions that install it}.

    `packages_distributions()` infers top-level names from a wheel's `.py` files only, so a
    distribution whose module is one compiled file (whylogs-sketching's
    `whylogs_sketching.cpython-311-*.so`, no top_level.txt) is missing from it; such a module
    is found by the file it is imported from.
    """
    found = {top: {_norm(d) for d in dists} for top, dists in packages_distributions().items()}
    by_file = None
    for top in third_party(SERVING):
        if found.get(top):
            continue
        spec = importlib.util.find_spec(top)
        if spec is None or spec.origin is None:
            continue
        if by_file is None:
            by_file = {str(Path(d.locate_file(f)).resolve()): _norm(d.metadata["Name"])
                       for d in distributions() for f in (d.files or [])}
        dist = by_file.get(str(Path(spec.origin).resolve()))
        if dist:
            found[top] = {dist}
    return found


def test_every_module_serving_imports_is_in_the_bento():
    included = _bento_files()
    missing = sorted(str(module_file(m).relative_to(ROOT)) for m in SERVING
                     if str(module_file(m).relative_to(ROOT)) not in included)
    assert not missing, f"bentofile.yaml `include` misses modules serving imports: {missing}"


def test_the_bento_carries_no_other_component():
    stray = sorted(f for f in _bento_files() if f.split("/")[0] in NOT_SERVING)
    assert not stray, f"bentofile.yaml includes code serving never imports: {stray}"


def test_every_distribution_serving_imports_is_pinned_in_the_bento():
    providers = _providers()
    packages = _pins(BENTOFILE["python"]["packages"])
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    needed = set()
    for top, users in sorted(third_party(SERVING).items()):
        dists = providers.get(top, set())
        assert dists, f"{top} (imported by {sorted(users)}) is not installed in this environment"
        found = dists & set(packages)
        assert found, f"{top} (imported by {sorted(users)}) needs one of {sorted(dists)} in bentofile.yaml packages"
        needed |= found
    for name, version in packages.items():
        assert constraints.get(name) == version, f"bentofile pins {name}=={version}, constraints.txt {constraints.get(name)}"
    extra = set(packages) - needed - RUNTIME_ONLY
    assert not extra, f"bentofile.yaml installs packages serving never imports: {sorted(extra)}"
