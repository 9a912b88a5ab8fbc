"""The rooms' import rules (docs: README "Architecture"), read from the source with `ast`:

- engine/ (the server) imports nothing from clients/ or xrseg/, statically or lazily;
- clients/ takes from the engine only the message schema (engine.core, engine.protocol);
- models/ imports neither the engine nor the clients;
- only xrseg/ (the assembly: command line, demo) may join engine/ and clients/.

Parsing instead of importing: a lazy import inside a function counts as much as one at the top,
and no module has to be importable on this machine for the check to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `source`: import / from-import statements at any depth,
    and importlib.import_module / __import__ calls with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(room: str, allowed: object) -> list[str]:
    out = []
    for path in sorted((ROOT / room).rglob("*.py")):
        for line, module in imported_modules(path.read_text()):
            if not allowed(module):  # type: ignore[operator]
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def test_engine_imports_no_client_and_no_assembly_code() -> None:
    assert violations("engine", lambda m: _top(m) not in ("clients", "xrseg")) == []


def test_clients_take_only_the_message_schema_from_the_engine() -> None:
    def allowed(module: str) -> bool:
        if _top(module) == "xrseg":
            return False
        return _top(module) != "engine" or module == "engine" or module.startswith(("engine.core", "engine.protocol"))

    assert violations("clients", allowed) == []


def test_models_import_neither_engine_nor_clients() -> None:
    assert violations("models", lambda m: _top(m) not in ("engine", "clients", "xrseg")) == []


@pytest.mark.parametrize(
    "source",
    [
        "from clients.sources.folder import open_sequence",
        "import clients.ws_client",
        "def f():\n    from clients import stream_cli\n",
        "import importlib\nimportlib.import_module('clients.webrtc_cli')",
        "__import__('clients')",
    ],
)
def test_the_guard_sees_every_form_of_import(source: str) -> None:
    assert any(_top(m) == "clients" for _, m in imported_modules(source))
