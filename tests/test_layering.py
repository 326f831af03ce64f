"""The dependency direction cli -> testing -> node -> ledger -> protocol, a pure protocol
core, and a CLI that uses only the public names of the packages below it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["protocol", "ledger", "node", "testing", "cli"]  # each may import only those before it
FORBIDDEN_IN_PROTOCOL = {"trio", "libp2p", "sqlite3", "sqlite_utils", "socket", "asyncio", "multiaddr"}


def imports_of(path: Path) -> set[str]:
    """Absolute top-level names and wattshare subpackages a module imports."""
    found = set()
    package = next((folder.name for folder in path.parents if folder.name in LAYERS), path.parent.name)  # its layer
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its own package
                names = [f"wattshare.{package}"]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.add(".".join(parts[:2]) if parts[0] == "wattshare" else parts[0])
    return found


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_downward(layer):
    allowed = {f"wattshare.{name}" for name in LAYERS[: LAYERS.index(layer) + 1]}
    for path in modules(layer):
        upward = {name for name in imports_of(path) if name.startswith("wattshare.")} - allowed
        assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)} (upward)"


def private_imports(path: Path) -> set[str]:
    """The `wattshare.<package>._<module>` names a module imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        found |= {name for name in names if name.startswith("wattshare.") and "._" in name}
    return found


def test_the_cli_uses_only_public_names():
    for path in modules("cli"):
        private = private_imports(path)
        assert not private, f"{path.relative_to(ROOT)} imports {sorted(private)}: export what it needs"


def test_protocol_is_sans_io():
    for path in modules("protocol"):
        bad = imports_of(path) & FORBIDDEN_IN_PROTOCOL
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "protocol" / "_x.py"
    bad.parent.mkdir()
    bad.write_text("import trio\nfrom wattshare.node import x\nfrom . import _y\n")
    assert imports_of(bad) == {"trio", "wattshare.node", "wattshare.protocol"}
    inner = tmp_path / "cli" / "web" / "_x.py"  # a subpackage's relative imports stay in its layer
    inner.parent.mkdir(parents=True)
    inner.write_text("from .. import _y\nfrom ._z import z\n")
    assert imports_of(inner) == {"wattshare.cli"}
    bad.write_text("from wattshare.node._store import NodeStore\nfrom wattshare.node import Node\n")
    assert private_imports(bad) == {"wattshare.node._store"}
