"""The layers of the tree: imports only point down, no cycles, small modules.

    fowlctl            the D-Bus client (front end; uses the daemon's names and rules)
    fowld.cli          the `fowld` command        fowld.install `fowld install` / `uninstall`
    fowld.stdio        `fowld --stdio`            fowld.dbus   the D-Bus adapter
    fowld.mailbox      embedded mailbox server    fowld.daemon the daemon without D-Bus
    fowld.engine       sessions, forwards, streams, the wire format
    fowld.wormhole     the only code that touches magic-wormhole's internals

A module may import from its own layer and the layers below it, never above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = {
    "fowld": 0,  # the package itself: only __version__
    "fowld.wormhole": 1,
    "fowld.engine": 2,
    "fowld.daemon": 3,
    "fowld.mailbox": 3,
    "fowld.stdio": 4,
    "fowld.dbus": 4,
    "fowld.cli": 5,
    "fowld.install": 5,
    "fowld.__main__": 6,
    "fowlctl": 5,
}
# Layers of one rank that must still not know each other.
SEPARATE = {("fowld.stdio", "fowld.dbus"), ("fowld.dbus", "fowld.stdio"), ("fowld.daemon", "fowld.mailbox")}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("fowld", "fowlctl"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _layer(module: str) -> str:
    best = ""
    for layer in LAYERS:
        if (module == layer or module.startswith(layer + ".")) and len(layer) > len(best):
            best = layer
    return best


def _imports(path: Path, module: str) -> set[str]:
    """Every fowld/fowlctl module ``path`` imports, at any depth of the file (lazy imports too)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("fowld", "fowlctl")}


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` refers to (``from a import b`` may name a module or an attribute)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


MODULES = _modules()
EDGES = {
    module: {t for name in _imports(path, module) if (t := _known(name, MODULES)) not in (None, module)}
    for module, path in MODULES.items()
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    here = _layer(module)
    upward = sorted(
        target
        for target in EDGES[module]
        if LAYERS[_layer(target)] > LAYERS[here] or (here, _layer(target)) in SEPARATE
    )
    assert not upward, f"{module} ({here}) imports from above or beside it: {upward}"


def test_the_package_root_holds_only_the_version() -> None:
    assert EDGES["fowld"] == set()


def test_no_import_cycles() -> None:
    # Within a layer imports may go sideways, but never round in a circle.
    visiting, done, cycles = set(), set(), []

    def visit(module: str, trail: list[str]) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append(trail[trail.index(module) :] + [module])
            return
        visiting.add(module)
        for target in sorted(EDGES[module]):
            if target.startswith(module + "."):
                continue  # a package's __init__ re-exporting its own modules
            visit(target, [*trail, target])
        visiting.discard(module)
        done.add(module)

    for module in sorted(MODULES):
        visit(module, [module])
    assert not cycles, cycles[:3]


def test_only_the_wormhole_adapter_imports_magic_wormhole() -> None:
    offenders = []
    for module, path in MODULES.items():
        if _layer(module) == "fowld.wormhole":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name.split(".")[0] == "wormhole" for name in names):
                offenders.append(module)
    assert not offenders, f"only fowld.wormhole may use magic-wormhole: {sorted(set(offenders))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by what it does"
