"""The house rules of docs/architecture.md, checked on the source: packages that show the request flow, no import
cycles, small modules, settings read from the environment in one place, no torch in the UI."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDIO = ROOT / "studio"
MAX_LINES = 400
FLOW = ("core", "engine", "models", "store", "lora", "web", "ui", "cli", "serve", "toyworld")
# Where the process environment may be read: the settings (resolved once), and what third parties own —
# spaces' own switch (read before torch loads), Hugging Face OAuth and Space variables, library quietening, Ray.
ENV_READERS = {
    "studio/core/settings.py",
    "studio/spaces_support.py",
    "studio/quiet.py",
    "studio/web/headers.py",
    "studio/web/visitors.py",
    "studio/serve/cluster.py",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(STUDIO.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """The studio modules a file imports, at module level or inside functions (TYPE_CHECKING blocks excluded)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    found.add(full if full in MODULES else child.module)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles_between_studio_modules() -> None:
    graph = {name: imported_modules(path) - {name} for name, path in MODULES.items()}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_studio_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_packages_show_the_request_flow() -> None:
    packages = {p.name for p in STUDIO.iterdir() if (p / "__init__.py").is_file()}
    assert set(FLOW) <= packages
    loose = sorted(p.name for p in STUDIO.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(loose) <= 8, f"modules left loose in studio/: {loose}"


def test_the_environment_is_read_in_one_place() -> None:
    readers = set()
    for path in MODULES.values():
        text = path.read_text()
        if "os.environ" in text or "getenv(" in text:
            readers.add(str(path.relative_to(ROOT)))
    assert readers <= ENV_READERS, f"read the value from Settings instead: {sorted(readers - ENV_READERS)}"
