"""The shape of the code: kerasxfer's import graph has no cycles, and modules, functions and classes stay small.

Read from the source with ``ast`` (nothing is imported).  ``from package import name`` depends on the
submodule ``package.name`` when there is one, else on the package; imports inside functions count too.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FILE_LINES, MAX_FUNCTION_LINES, MAX_CLASS_LINES = 400, 60, 150


def _modules() -> dict:
    mods = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "kerasxfer")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def import_graph() -> dict:
    """module -> the kerasxfer modules it imports."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.endswith("__init__.py") else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            graph[m] |= {t for t in targets if t in mods and t != m}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = import_graph()
    graph["kerasxfer.fsio"].add("kerasxfer.config")  # fsio -> config -> rundir -> fsio would be a cycle
    assert any({"kerasxfer.config", "kerasxfer.fsio"} <= set(c) for c in cycles(graph))


def test_low_layers_import_no_run_directory_code():
    graph = import_graph()
    for low in (
        "kerasxfer.fsio",
        "kerasxfer.reporting.stats",
        "kerasxfer.data.split",
        "kerasxfer.data.pipeline",
        "kerasxfer.models.efficientnet_lite",
    ):
        assert "kerasxfer.rundir" not in graph[low], low


def test_no_module_over_400_lines_no_function_over_60_and_no_class_over_150():
    big = []
    for path in _modules().values():
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_FILE_LINES:
            big.append(f"{os.path.relpath(path, ROOT)} ({n} lines)")
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and lines > MAX_FUNCTION_LINES:
                big.append(f"{os.path.relpath(path, ROOT)}:{node.name} ({lines} lines)")
            if isinstance(node, ast.ClassDef) and lines > MAX_CLASS_LINES:
                big.append(f"{os.path.relpath(path, ROOT)}:{node.name} ({lines} lines)")
    assert big == []


def test_the_wheel_packages_every_package_of_kerasxfer():
    """A wheel holds only the packages setup.cfg lists: a folder left out installs a kerasxfer that cannot import
    it (tests/test_wheel.py builds and runs the wheel itself)."""
    import configparser

    found = {
        os.path.relpath(folder, ROOT).replace(os.sep, ".")
        for folder, _, files in os.walk(os.path.join(ROOT, "kerasxfer"))
        if "__init__.py" in files
    }
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    listed = set(cfg["options"]["packages"].split())
    assert found and listed == found | {"kerasxfer.experiments"}
