"""The house has no import circle: every project module's imports, read from its source, form a graph
without a cycle (module level and inside functions alike)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("codeservice", "issuers", "verifiers", "sdk", "bench")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
               if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                # A module's own packages are initialised before it anyway: not an arrow of its making.
                if target in modules and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_project_module_imports_itself_back_through_others() -> None:
    graph = _graph()
    assert graph.get("codeservice.app")
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def _unexplained_local_imports(source: str, modules: set[str]) -> list[int]:
    """Lines of imports of project modules inside a function that no comment (on or above it) calls lazy."""
    lines = source.splitlines()
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["."]
            else:
                continue
            if not any(n == "." or n.split(".")[0] in modules for n in names):
                continue
            said = " ".join(lines[max(0, node.lineno - 3):node.lineno]).lower()
            if "lazy" not in said:
                found.append(node.lineno)
    return found


def test_the_local_import_finder_wants_a_reason() -> None:
    source = "def f():\n    import sdk.keys\n\ndef g():\n    # lazy: optional extra\n    import sdk.image\n"
    assert _unexplained_local_imports(source, set(PACKAGES)) == [2]
    assert _unexplained_local_imports("def f():\n    import json\n", set(PACKAGES)) == []


def test_a_function_imports_a_project_module_only_when_a_comment_says_why_it_must_be_lazy() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{line}"
                 for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))
                 for line in _unexplained_local_imports(path.read_text("utf-8"), set(PACKAGES))]
    assert offenders == []


DOMAINS = ("identity", "certificates", "consent", "accesslog", "transit", "clients")


def _domain_graph() -> dict[str, set[str]]:
    """The module graph collapsed to codeservice's domain packages (arrows between two different domains)."""
    collapsed: dict[str, set[str]] = {d: set() for d in DOMAINS}
    for source, targets in _graph().items():
        parts = source.split(".")
        if parts[0] != "codeservice" or len(parts) < 2 or parts[1] not in DOMAINS:
            continue
        for target in targets:
            other = target.split(".")
            if other[0] == "codeservice" and len(other) > 1 and other[1] in DOMAINS and other[1] != parts[1]:
                collapsed[parts[1]].add(other[1])
    return collapsed


def test_domains_depend_on_each_other_one_way() -> None:
    graph = _domain_graph()
    assert graph["consent"] >= {"certificates", "accesslog"}  # the graph is really read
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    assert graph["clients"] == set(), "clients (API keys, roles) is the ground floor of the domains"
