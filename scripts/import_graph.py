"""Print the package's import graph health: circles, upward imports, imports
inside functions, the longest functions and the largest modules.

The layers follow the flow (docs/development.md#layers): an import may point
to its own layer or one below, never up. Run from the project folder:

    python scripts/import_graph.py [--functions 80] [--list]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "hpa_keras"

# The lower the number, the lower the layer. The first matching prefix wins.
LAYERS = [
    ("hpa_keras.cli", 6, "cli"),
    ("hpa_keras.__main__", 6, "cli"),
    ("hpa_keras.workflows", 5, "workflows"),
    ("hpa_keras.training", 4, "training/inference"),
    ("hpa_keras.inference", 4, "training/inference"),
    ("hpa_keras.reports", 3, "reports"),
    ("hpa_keras.scoring", 2, "scoring/models/runs/cells"),
    ("hpa_keras.models", 2, "scoring/models/runs/cells"),
    ("hpa_keras.runs", 2, "scoring/models/runs/cells"),
    ("hpa_keras.cells", 2, "scoring/models/runs/cells"),
    ("hpa_keras.data", 1, "data"),
    ("hpa_keras.synthetic", 1, "data"),
    ("hpa_keras", 0, "infrastructure"),
]


def layer_of(module: str) -> tuple[int, str]:
    for prefix, rank, name in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank, name
    raise ValueError(module)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: set[str]):
    """The package modules an import statement reaches."""
    targets = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith(PACKAGE):
                targets.append(alias.name)
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        if not stem.startswith(PACKAGE):
            return []
        for alias in node.names:
            candidate = f"{stem}.{alias.name}"
            targets.append(candidate if candidate in known else stem)
    resolved = []
    for target in targets:
        while target not in known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in known:
            resolved.append(target)
    return resolved


class Collector(ast.NodeVisitor):
    def __init__(self):
        self.depth = 0
        self.type_checking = 0
        self.imports: list[tuple[ast.AST, bool]] = []  # (node, inside a function)
        self.functions: list[tuple[str, int]] = []
        self.stack: list[str] = []

    def visit_If(self, node):
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            return  # annotations only; never executed
        self.generic_visit(node)

    def _function(self, node):
        self.stack.append(node.name)
        self.functions.append((".".join(self.stack), node.end_lineno - node.lineno + 1))
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1
        self.stack.pop()

    visit_FunctionDef = _function  # noqa: N815 (ast.NodeVisitor's naming)
    visit_AsyncFunctionDef = _function  # noqa: N815

    def visit_ClassDef(self, node):
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_Import(self, node):
        self.imports.append((node, self.depth > 0))

    visit_ImportFrom = visit_Import  # noqa: N815


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=80, help="list functions longer than this")
    parser.add_argument("--list", action="store_true", help="list every import inside a function")
    arguments = parser.parse_args()

    root = Path(__file__).resolve().parents[1]
    files = sorted((root / PACKAGE).rglob("*.py"))
    names = {module_name(path, root): path for path in files}
    known = set(names)
    graph: dict[str, set[str]] = {name: set() for name in names}
    graph_with_functions: dict[str, set[str]] = {name: set() for name in names}
    inside: list[str] = []
    upward: list[str] = []
    long_functions: list[tuple[int, str]] = []
    lines: list[tuple[int, str]] = []
    for name, path in names.items():
        text = path.read_text()
        lines.append((len(text.splitlines()), name))
        tree = ast.parse(text)
        collector = Collector()
        collector.visit(tree)
        for function, length in collector.functions:
            if length > arguments.functions:
                long_functions.append((length, f"{name}.{function}"))
        is_package = path.name == "__init__.py"
        for node, in_function in collector.imports:
            targets = resolve(name, is_package, node, known)
            if in_function:
                inside.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
            for target in targets:
                if target == name or name.startswith(target + "."):
                    continue  # a package's own __init__ or itself
                if not in_function:
                    graph[name].add(target)
                graph_with_functions[name].add(target)
                if layer_of(target)[0] > layer_of(name)[0]:
                    upward.append(
                        f"{name} ({layer_of(name)[1]}) -> {target} ({layer_of(target)[1]})"
                        + (" [inside a function]" if in_function else "")
                    )
    # Python refuses a circle of imports at module level only; one closed by
    # an import inside a function runs, but its modules still depend on
    # each other, so both are counted.
    print(f"modules: {len(names)}, lines: {sum(count for count, _ in lines)}")
    graphs = (("module level", graph), ("with imports inside functions", graph_with_functions))
    for what, edges in graphs:
        circles = strongly_connected(edges)
        print(f"import circles ({what}): {len(circles)}")
        for circle in circles:
            print("  " + " <-> ".join(circle))
    print(f"upward imports: {len(upward)}")
    for line in sorted(set(upward)):
        print("  " + line)
    of_package = sum(1 for line in inside if line.split(": ", 1)[1].split()[1].startswith(PACKAGE))
    print(f"imports inside functions: {len(inside)} ({of_package} of them of this package)")
    if arguments.list:
        for line in inside:
            print("  " + line)
    print(f"functions over {arguments.functions} lines: {len(long_functions)}")
    for length, function in sorted(long_functions, reverse=True):
        print(f"  {length:4d} {function}")
    print("largest modules:")
    for count, name in sorted(lines, reverse=True)[:8]:
        print(f"  {count:5d} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
