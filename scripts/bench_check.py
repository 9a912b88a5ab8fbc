"""`make bench-check`: which result files in bench/results describe code that has changed since.

A figure is only as good as the code it was measured on. Each result file carries the commit it
was measured on (bench/common.py `provenance`); this lists, per file, whether the engine, models,
clients or the benchmark itself changed after that commit (stale), whether it was measured on a
tree with uncommitted changes, and the load it was measured under. Exit code 1 when any is stale
or carries no commit. A script, not a test: staleness is a fact to read, not a failure of the code.

"The code it describes" is the bench module and every project module it imports, directly or
through others (found by reading the imports, lazy ones and dotted module names in strings
included): a change to the engine's transport does not make a decoder benchmark stale.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PACKAGES = ("engine", "models", "clients", "bench", "xrseg", "tests")  # tests: support modules benches reuse
_MODULE_STRING = re.compile(r"^(?:engine|models|clients|xrseg)(?:\.\w+)+$")


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    """Project modules a file imports (each import statement, at any depth), with their packages."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # submodules
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_STRING.match(node.value):
                names.add(node.value)  # registries that import by name
        elif isinstance(node, (ast.List, ast.Tuple)):  # a command line that runs `python -m PACKAGE`
            items = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            for flag, module in zip(items, items[1:], strict=False):
                if flag == "-m" and isinstance(module, str):
                    names.add(f"{module}.__main__")
    expanded = set()
    for name in names:
        if name.split(".")[0] in PACKAGES:
            parts = name.split(".")
            expanded.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return expanded


def code_of(bench: Path) -> list[str]:
    """The bench file and every project file it imports, transitively (repo-relative paths)."""
    seen: set[Path] = set()
    todo = [bench]
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        todo.extend(f for name in imported_names(path) if (f := module_file(name)) is not None)
    return sorted(str(p.relative_to(ROOT)) for p in seen)


def bench_module(stem: str) -> Path:
    """bench/NAME.py for NAME.json; a variant's result (NAME_fast.json, NAME_timing.json) belongs
    to the longest bench module its name starts with."""
    candidates = [p for p in (ROOT / "bench").glob("*.py") if stem == p.stem or stem.startswith(p.stem + "_")]
    return max(candidates, key=lambda p: len(p.stem)) if candidates else ROOT / "bench" / f"{stem}.py"


def changed_since(commit: str, paths: list[str]) -> list[str]:
    out = subprocess.run(
        ["git", "diff", "--name-only", commit, "HEAD", "--", *paths], cwd=ROOT, capture_output=True, text=True
    )
    if out.returncode != 0:
        return ["(commit not in this repository's history)"]
    return [line for line in out.stdout.splitlines() if line.endswith(".py")]


def main() -> int:
    bad = 0
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        prov = data.get("provenance") or {}
        commit = prov.get("commit")
        if not commit and isinstance(data.get("commit"), str):  # benches that predate provenance()
            commit = data["commit"].removesuffix("-dirty")
            dirty = data["commit"].endswith("-dirty")
            prov = {"commit": commit, "dirty": dirty, "date": data.get("written_at")}
        bench = bench_module(path.stem)
        if not commit:
            print(f"STALE   {path.name}: no commit recorded; rerun python -m bench.{path.stem}")
            bad += 1
            continue
        changed = changed_since(commit, code_of(bench))
        load = prov.get("load_avg_1m")
        note = f"commit {commit[:9]}, {prov.get('date')}, load {load}" + (
            ", dirty tree" if prov.get("dirty") else ""
        )
        if changed:
            bad += 1
            shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
            print(f"STALE   {path.name} ({note}): changed since: {shown}")
        else:
            print(f"current {path.name} ({note})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
