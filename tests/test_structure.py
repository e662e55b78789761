"""The one dependency rule of the tree (README, "Architecture"), checked on the source.

    shared base (vigil/)  <-  components  <-  the `vigil` command (cli/) and the demo (demo/)

Nothing imports upward, no import cycle (lazy imports count), and between components
only the edges listed in COMPONENT_EDGES, each with its reason. Serving never imports
another component, so the bento carries serving and the base only.
"""

from __future__ import annotations

from import_graph import ROOT, closure, imports_of, project_modules

BASE = "vigil"
COMPONENTS = {"service", "serving", "converter", "monitor", "lifecycle", "loadtest"}
TOP = {"cli", "demo"}
# Which other components a component may import, and why (the base is always allowed).
COMPONENT_EDGES = {
    "service": {"serving"},  # service.py wires the serving package into a BentoML service
    "serving": set(),
    "converter": set(),
    "lifecycle": {"converter"},  # a retrained version is converted before the gate sees it
    "monitor": {"lifecycle"},  # the monitor hosts the lifecycle worker and Alertmanager's webhook
    "loadtest": {"serving", "converter", "lifecycle", "monitor"},  # benchmarks train, convert, serve and watch models
}
TOP_EDGES = {"cli": COMPONENTS | {"demo"}, "demo": COMPONENTS}  # the demo never imports the command
MAX_LINES = 400


def _top(name: str) -> str:
    return name.split(".")[0]


def test_every_top_level_package_has_a_place_in_the_rule():
    assert {_top(m) for m in project_modules()} == {BASE} | COMPONENTS | TOP


def test_nothing_imports_upward_or_sideways_beyond_the_listed_edges():
    allowed = {BASE: set(), **COMPONENT_EDGES, **TOP_EDGES}
    wrong = sorted(
        f"{module} -> {target}"
        for module in project_modules()
        for target in imports_of(module).project
        if _top(target) != _top(module) and _top(target) != BASE and _top(target) not in allowed[_top(module)]
    )
    assert not wrong, f"imports against the dependency rule: {wrong}"


def test_no_import_cycles_lazy_imports_included():
    graph = {m: imports_of(m).project for m in project_modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_serving_imports_only_itself_and_the_base():
    stray = sorted(m for m in closure("service") if _top(m) not in {"service", "serving", BASE})
    assert not stray, f"service.py reaches non-serving code: {stray}"


def test_no_module_is_over_the_line_budget():
    long = {name: n for name, path in project_modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (probably two modules): {long}"


def test_the_readme_states_the_rule():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "shared base (`vigil/`) ← components" in readme and "tests/test_structure.py" in readme
