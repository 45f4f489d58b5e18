"""The package's import graph: no circle, counting imports inside functions too (a function-level import
must never hide a circle), and the layers of docs/developing.md (lower layers never import upper ones)."""

import ast
from pathlib import Path

import dada

PACKAGE = Path(dada.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the dada modules it imports anywhere in its file (top level or inside functions)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                    + [base]).strip(".")
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    edges.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    done, stack = set(), []

    def visit(module):
        if module in stack:
            return stack[stack.index(module):] + [module]
        if module in done:
            return None
        stack.append(module)
        for other in sorted(graph[module]):
            circle = visit(other)
            if circle:
                return circle
        stack.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        circle = visit(module)
        if circle:
            return circle
    return None


def test_no_import_circle_even_through_function_level_imports():
    graph = import_graph()
    assert len(graph) > 50 and "dada.checkpoints" in graph
    circle = find_circle(graph)
    assert circle is None, "import circle: " + " → ".join(circle)


def test_a_circle_is_found_when_there_is_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_lower_layers_never_import_upper_ones():
    graph = import_graph()
    rules = {  # module prefix → prefixes it must not import
        "dada.models": ("dada.methods", "dada.engine", "dada.evaluation", "dada.cli", "dada.demo"),
        "dada.checkpoints": ("dada.models", "dada.methods", "dada.engine", "dada.evaluation"),
        "dada.evaluation": ("dada.engine", "dada.methods", "dada.cli", "dada.demo", "dada.deploy"),
        "dada.deploy": ("dada.engine", "dada.methods", "dada.cli", "dada.demo"),
        "dada.methods": ("dada.engine", "dada.evaluation", "dada.cli", "dada.demo", "dada.config"),
        "dada.data": ("dada.benchmark", "dada.models", "dada.methods", "dada.engine", "dada.evaluation"),
    }
    wrong = [(m, i) for m, imports in graph.items() for prefix, banned in rules.items()
             if m == prefix or m.startswith(prefix + ".") for i in imports if i.startswith(banned)]
    assert not wrong, wrong

