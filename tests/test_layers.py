"""The dependency direction of DESIGN.md, checked on every import in the code (inside functions and under
TYPE_CHECKING too):

- packages: perfmodel <- law <- harness; kernels <- harness. Nothing below harness imports harness, perfmodel imports
  neither law nor kernels, law does not import kernels;
- harness's subpackages, lower to higher: its leaf modules (tables.py, toml_io.py) < engines < sweep < probe <
  calibrate < report < campaign < cli (< __main__). A module imports only its own subpackage or lower ones;
- modules: no two modules import each other, directly or around a longer circle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("perfmodel", "law", "kernels", "harness")
FORBIDDEN = {"perfmodel": {"harness", "law", "kernels"}, "law": {"harness", "kernels"}, "kernels": {"harness", "law"}}
HARNESS_LAYERS = (
    "tables",
    "toml_io",
    "engines",
    "sweep",
    "probe",
    "calibrate",
    "report",
    "campaign",
    "cli",
    "__main__",
)
HARNESS_RANK = {"tables": 0, "toml_io": 0} | {name: rank for rank, name in enumerate(HARNESS_LAYERS[2:], start=1)}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports: `from a.b import c` is a.b.c where c is a module, else a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                      for alias in node.names}  # fmt: skip
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle [a, b, ..., a] in `graph` (module -> modules it imports), or None where there is none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every path from it was walked
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (circle := walk(nxt)):
                return circle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (circle := walk(start)):
            return circle
    return None


def harness_rank(module: str) -> int:
    return HARNESS_RANK[module.split(".")[1]]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_packages_do_not_import_higher_ones(package):
    graph = import_graph()
    offenders = {
        module: sorted({target.split(".")[0] for target in targets} & FORBIDDEN[package])
        for module, targets in graph.items()
        if module.split(".")[0] == package
    }
    assert {module: bad for module, bad in offenders.items() if bad} == {}


def test_every_harness_module_sits_in_a_known_layer():
    places = {module.split(".")[1] for module in import_graph() if module.startswith("harness.")}
    assert places - set(HARNESS_RANK) == set(), (
        "a new harness subpackage or root module needs its place in HARNESS_LAYERS"
    )


def test_harness_subpackages_import_only_their_own_layer_or_lower_ones():
    graph = import_graph()
    upward = {
        module: sorted(t for t in targets if t.startswith("harness.") and harness_rank(t) > harness_rank(module))
        for module, targets in graph.items()
        if module.startswith("harness.")
    }
    assert {module: bad for module, bad in upward.items() if bad} == {}


def test_no_two_modules_import_each_other_around_any_circle():
    assert find_circle(import_graph()) is None


@pytest.mark.parametrize(
    "graph, circle",
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}, ["a", "b", "c", "a"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
    ],
)
def test_the_circle_finder_finds_direct_and_longer_circles_and_only_those(graph, circle):
    assert find_circle(graph) == circle


def test_a_lazy_import_counts_as_an_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from harness.sweep import rows\n    import perfmodel.arch\n")
    assert imported_modules(source, {"harness.sweep", "harness.sweep.rows", "perfmodel.arch"}) == {
        "harness.sweep.rows",
        "perfmodel.arch",
    }
