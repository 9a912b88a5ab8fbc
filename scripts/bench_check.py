"""`make bench-check`: which result files in bench/results describe code that has changed since.

A figure is only as good as the code it was measured on. Each result file carries the commit it
was measured on (bench/common.py `provenance`); this lists, per file, whether the engine, models,
clients or the benchmark itself changed after that commit (stale), whether it was measured on a
tree with uncommitted changes, and the load it was measured under. Exit code 1 when any is stale
or carries no commit. A script, not a test: staleness is a fact to read, not a failure of the code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CODE = ("engine", "models", "clients")


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
        bench = f"bench/{path.stem}.py"
        if not commit:
            print(
                f"STALE   {path.name}: no commit recorded (measured before provenance existed); rerun python -m bench.{path.stem}"
            )
            bad += 1
            continue
        changed = changed_since(commit, [*CODE, bench, "bench/common.py"])
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
