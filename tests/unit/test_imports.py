"""Every module of lit_tasks imports on its own, in a fresh interpreter state, and the import
graph (module-level and function-level imports alike) has no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys

from helpers import REPO

PACKAGE = REPO / "lit_tasks"


def module_names() -> dict[str, object]:
    names = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(REPO).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return names


def imports_of(name: str, file, modules) -> set[str]:
    """The lit_tasks modules `file` imports, anywhere in it except under `if TYPE_CHECKING:`."""
    tree = ast.parse(file.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {m for m in found if m in modules and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    modules = module_names()
    graph = {name: imports_of(name, file, modules) for name, file in modules.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


# Lower layers never import higher ones (docs/architecture.md): the package's top-level
# modules (cli, commands) sit above the tasks and callbacks, which sit above data and generation,
# which sit above the zoo, tokenizers and metrics, which sit above errors and safe_load.
LAYERS = {"errors": 0, "safe_load": 0, "durations": 0, "zoo": 1, "text": 1, "metrics": 1, "plots": 1, "data": 2, "generation": 2,
          "tasks": 3, "callbacks": 3, "loggers": 3}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 4) if len(parts) > 1 else 4


def test_lower_layers_do_not_import_higher_ones():
    modules = module_names()
    upward = [f"{name} -> {dep}" for name, file in modules.items() for dep in imports_of(name, file, modules)
              if layer(dep) > layer(name)]
    assert not upward, upward


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_on_its_own():
    """One interpreter; before each module, every lit_tasks module is dropped from sys.modules,
    so each is imported first, as a user's `import lit_tasks.x` would (third-party packages stay
    loaded: this is about our own import order)."""
    script = (
        "import importlib, sys, traceback\n"
        f"names = {sorted(module_names())!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'lit_tasks' or m.startswith('lit_tasks.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc().strip().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
