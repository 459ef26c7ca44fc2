"""The project's modules import each other without cycles and only along the layers: agents and envs
import nothing else of the project, harness imports them, and only tools imports tools.

The graph is read from the source with `ast`: every import statement anywhere in a file (inside
functions too) and every `importlib.import_module` of a literal name. A function-level import that
closes a cycle is therefore caught even when no test calls that function.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ('agents', 'envs', 'harness', 'tools')


def project_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of `packages` under `root`."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob('*.py')):
            parts = path.relative_to(root).with_suffix('').parts
            modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return modules


def _project_module(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that importing `name` runs: `name` itself, or the package that defines it."""
    while name and name not in modules:
        name = name.rpartition('.')[0]
    return name or None


def _imported_names(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split('.') if is_package else module.split('.')[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = '.'.join(package + ([node.module] if node.module else []))
        else:
            base = node.module
        # `from pkg import name` runs pkg.name when that is a module, else pkg itself.
        return [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base for alias in node.names]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'import_module'
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return [node.args[0].value]
    return []


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its file."""
    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported_names(node, module, path.name == '__init__.py', modules):
                target = _project_module(name, modules)
                if target is not None and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def cycle_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module: each module of a group reaches every
    other one through imports, so every group holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:                    # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycle_through(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """Shortest closed path from `start` back to itself inside `group` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1] + [start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f'{start} is in a strongly connected group but on no cycle')


def describe_cycles(graph: dict[str, set[str]]) -> list[str]:
    """One line per cycle group: a cycle through its first module, then every module of the group."""
    lines = []
    for group in cycle_groups(graph):
        cycle = ' -> '.join(cycle_through(min(group), group, graph))
        lines.append(f"{cycle} (modules in this group: {', '.join(sorted(group))})")
    return lines


def test_project_modules_import_each_other_without_cycles():
    cycles = describe_cycles(import_graph(project_modules(REPO_ROOT, PACKAGES)))
    assert not cycles, 'import cycles: ' + '; '.join(cycles)


# What each package may import of the project (docs/ARCHITECTURE.md): agents and envs are the bottom layer,
# harness sits on both, tools on everything; nothing imports tools.
ALLOWED_IMPORTS = {'agents': {'agents'}, 'envs': {'envs'}, 'harness': {'agents', 'envs', 'harness'},
                   'tools': set(PACKAGES)}


def test_packages_import_only_the_layers_below_them():
    graph = import_graph(project_modules(REPO_ROOT, PACKAGES))
    offenders = sorted(f'{module} -> {target}' for module, targets in graph.items() for target in targets
                       if target.split('.')[0] not in ALLOWED_IMPORTS[module.split('.')[0]])
    assert not offenders, 'imports against the layering: ' + ', '.join(offenders)


def test_the_graph_sees_imports_inside_functions_and_reports_the_cycle(tmp_path):
    """The checker itself: a cycle closed by a function-level import is found and named."""
    package = tmp_path / 'pkg'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / 'a.py').write_text('from pkg.b import g\n')
    (package / 'b.py').write_text('import os\n\ndef g():\n    from pkg import c\n    return c\n')
    (package / 'c.py').write_text('import importlib\n\ndef h():\n    return importlib.import_module("pkg.a")\n')
    (package / 'd.py').write_text('from . import a\n')
    graph = import_graph(project_modules(tmp_path, ('pkg',)))
    assert graph['pkg.b'] == {'pkg.c'} and graph['pkg.d'] == {'pkg.a'}
    assert describe_cycles(graph) == ['pkg.a -> pkg.b -> pkg.c -> pkg.a (modules in this group: pkg.a, pkg.b, pkg.c)']


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every project module that importing `start` runs."""
    seen, frontier = set(), [start]
    while frontier:
        node = frontier.pop()
        for target in graph[node] - seen:
            seen.add(target)
            frontier.append(target)
    return seen


def test_writing_a_plot_a_video_or_a_table_imports_no_checkpoint_code():
    """The atomic writers and the table renderers are leaves: a PNG, an mp4 or a report does not load
    orbax (harness/checkpoints.py) on the way."""
    graph = import_graph(project_modules(REPO_ROOT, PACKAGES))
    assert graph['harness.files'] == set() and graph['harness.tables'] == set()
    for module in ('harness.plots', 'harness.video', 'harness.sweep_report'):
        assert 'harness.checkpoints' not in reachable(graph, module), module
