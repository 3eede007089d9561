"""The package's import graph has no cycle: data flows one way.

Walks every module of ``deadrelu`` with ``ast`` and collects the imports that run:
top-level ones and lazy ones inside functions (``import x`` / ``from x import y``,
relative ones resolved), but not those under ``if TYPE_CHECKING:``, which never
execute. ``importlib.import_module`` with a computed name (the lazy public names of
``deadrelu/__init__.py``, the rule modules the rule registry loads) is not an
import statement and is not followed. Any strongly connected group of two or more
modules is a cycle and fails the test, naming its modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "deadrelu"

#: Cycles known and accepted for now, each with the reason and who removes it. Both are
#: a package and its submodules calling each other lazily, in areas issue 13b reworks.
ALLOWED: dict[frozenset[str], str] = {
    frozenset({"deadrelu.loading.checkpoint", "deadrelu.loading.hf"}):
        "checkpoint dispatches to hf for model directories; hf borrows LoadedModel, "
        "TORCH_SUFFIXES and the trust messages from checkpoint (issue 13b: move them below both)",
    frozenset({"deadrelu.integrations", "deadrelu.integrations.logging",
               "deadrelu.integrations.wandb"}):
        "integrations.as_logger imports the loggers, which import integrations.metrics "
        "(issue 13b: give metrics() a module of its own)",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements outside ``if TYPE_CHECKING:`` blocks, at any depth."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the else branch does run
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the deadrelu modules it imports when it (or one of its functions) runs."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    if not is_package:
                        anchor = anchor[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import sub` imports the submodule when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(frozenset(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_walk_sees_lazy_imports_and_skips_type_checking_ones():
    graph = import_graph()
    # lazy, inside a function: Report.with_thresholds re-diagnoses through the engine
    assert "deadrelu.diagnose" in graph["deadrelu.report"]
    # under TYPE_CHECKING only: the engine names the Subject for the type checker
    assert "deadrelu.diagnose.subject" not in graph["deadrelu.diagnose.engine"]
    # relative and `from package import submodule` forms resolve to the submodule
    assert "deadrelu.diagnose.engine" in graph["deadrelu.diagnose"]


def test_cycle_finder_finds_a_planted_cycle():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(planted) == [frozenset({"a", "b", "c"})]


def test_the_import_graph_has_no_cycle():
    found = [c for c in cycles(import_graph()) if c not in ALLOWED]
    stale = [c for c in ALLOWED if c not in cycles(import_graph())]
    assert not stale, f"allowed cycles that no longer exist (remove them from ALLOWED): {stale}"
    described = ["{" + ", ".join(sorted(c)) + "}" for c in found]
    assert not found, "import cycles between deadrelu modules: " + "; ".join(described)
