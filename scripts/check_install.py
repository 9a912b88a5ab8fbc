"""Which ONNX Runtime build each install of xrseg leaves: `[gpu]` only onnxruntime-gpu, `[cpu]` only
onnxruntime. Both distributions write the same `onnxruntime/` package folder, so an environment
holding both imports whichever was written last, and uninstalling one breaks the other.

    python3 scripts/check_install.py              # both checks, both extras (~5 min, ~300 MB download)
    python3 scripts/check_install.py --resolve    # only what pip would install into an empty venv
    python3 scripts/check_install.py --extras gpu

1. Resolution: `pip install --dry-run --ignore-installed --report` of `.[cpu]` and `.[gpu]`: the
   whole dependency tree pip would install into an empty environment (torch and the CUDA
   libraries included, metadata only), so a dependency that pulls in the other build is caught.
2. A real install, in a fresh venv in a temporary folder: the heavy packages (torch, open3d, ...)
   are made visible from an existing environment (`--from-venv`, default .venv or /work/main/.venv)
   through a folder of links that leaves out both ONNX Runtime builds, and pip installs
   `.[EXTRA]` for real: it downloads and installs the chosen ONNX Runtime build and what it
   needs. Then the installed distributions are read with importlib.metadata in that venv, and
   `import onnxruntime` must work. As a control, the other build is then installed on top, and the
   same check must fail (so the check can tell).

Exit code 0 when every check passes; each failure is one line saying what was found.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILDS = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu"}


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def verdict(extra: str, installed: set[str]) -> str | None:
    """None when `installed` (canonical distribution names) holds the build of `extra` and not the
    other one; else what is wrong, in one line."""
    want, other = BUILDS[extra], BUILDS["gpu" if extra == "cpu" else "cpu"]
    if want not in installed:
        return f"[{extra}]: {want} is not installed"
    if other in installed:
        return f"[{extra}]: both {want} and {other} are installed; they overwrite each other's onnxruntime/ folder"
    return None


def declared() -> list[str]:
    """Problems in pyproject.toml itself: ONNX Runtime in the base dependencies, or an extra that
    does not name exactly its own build."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    problems = []
    base = {canonical(r.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip())
            for r in project["dependencies"]}  # fmt: skip
    problems += [f"base dependencies name {b}; move it to the extra cpu / gpu" for b in base & set(BUILDS.values())]
    extras = project["optional-dependencies"]
    for extra, build in BUILDS.items():
        names = {canonical(r.split(">")[0].split("=")[0].split("<")[0].strip()) for r in extras.get(extra, [])}
        if names & set(BUILDS.values()) != {build}:
            problems.append(f"extra {extra} should name {build} alone among the ONNX Runtime builds, names {sorted(names)}")
    return problems


def resolve(extra: str, workdir: Path) -> set[str]:
    """Canonical names of every distribution pip would install for `.[extra]` into an empty venv."""
    report = workdir / f"report-{extra}.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
           "--report", str(report), f"{ROOT}[{extra}]"]  # fmt: skip
    run(cmd)
    return {canonical(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(f"check_install: `{' '.join(map(str, cmd))}` failed:\n{proc.stdout}{proc.stderr}")
    return proc


def visible_packages(from_venv: Path, into: Path) -> None:
    """Links in `into` to every top-level entry (and .dist-info) of `from_venv`'s distributions,
    except both ONNX Runtime builds and xrseg itself: the heavy, pinned packages become
    importable and count as installed for pip, without a copy and without either build."""
    probe = run([str(from_venv / "bin" / "python"), "-c", "import json, importlib.metadata as m; print(json.dumps("
                 "[(d.metadata['Name'], str(d._path), [str(f) for f in (d.files or [])]) for d in m.distributions()]))"])  # fmt: skip
    skip = set(BUILDS.values()) | {"xrseg"}
    into.mkdir(parents=True)
    for name, info, files in json.loads(probe.stdout):
        if canonical(name) in skip:
            continue
        site = Path(info).parent
        tops = {Path(f).parts[0] for f in files if not f.startswith("..")} | {Path(info).name}
        for top in tops:
            link, target = into / top, site / top
            if target.exists() and not link.exists() and not top.endswith(".pth") and top != "__pycache__":
                link.symlink_to(target)


def installed_in(venv: Path) -> set[str]:
    probe = run([str(venv / "bin" / "python"), "-c",
                 "import json, importlib.metadata as m; print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"])  # fmt: skip
    return {canonical(n) for n in json.loads(probe.stdout)}


def real_install(extra: str, from_venv: Path, workdir: Path) -> list[str]:
    """Install `.[extra]` for real into a fresh venv; return the failures (empty: passed)."""
    venv = workdir / f"venv-{extra}"
    run([sys.executable, "-m", "venv", str(venv)])
    site = Path(run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    visible_packages(from_venv, workdir / f"visible-{extra}")
    (site / "zz_xrseg_visible.pth").write_text(str(workdir / f"visible-{extra}") + "\n")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # Not editable: this proves what a user's `pip install 'xrseg[gpu]'` leaves.
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{ROOT}[{extra}]"], env=env)
    failures = []
    if problem := verdict(extra, installed_in(venv)):
        failures.append(f"real install: {problem}")
    probe = run([str(venv / "bin" / "python"), "-c",
                 "import onnxruntime as o, sys; print(o.__version__, o.get_available_providers())"])  # fmt: skip
    print(f"  [{extra}] real install: onnxruntime {probe.stdout.strip()}; "
          f"{', '.join(sorted(n for n in installed_in(venv) if 'onnxruntime' in n))}")
    # Control: the other build on top must make the check fail, or the check proves nothing.
    other = BUILDS["gpu" if extra == "cpu" else "cpu"]
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", other], env=env)
    if verdict(extra, installed_in(venv)) is None:
        failures.append(f"control: with {other} installed on top the check still passed")
    else:
        print(f"  [{extra}] control: with {other} on top, the check says: {verdict(extra, installed_in(venv))}")
    return failures


def default_venv() -> Path:
    for candidate in (ROOT / ".venv", Path("/work/main/.venv")):
        if (candidate / "bin" / "python").exists():
            return candidate
    return Path(sys.prefix)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", nargs="+", choices=sorted(BUILDS), default=sorted(BUILDS))
    parser.add_argument("--resolve", action="store_true", help="only the resolution check (no real install)")
    parser.add_argument("--from-venv", type=Path, default=None, help="where torch & co. are taken from")
    args = parser.parse_args()
    failures = declared()
    with tempfile.TemporaryDirectory(prefix="xrseg-install-") as tmp:
        workdir = Path(tmp)
        for extra in args.extras:
            names = resolve(extra, workdir)
            print(f"  [{extra}] resolution: {len(names)} distributions; ONNX Runtime: "
                  f"{sorted(n for n in names if n in BUILDS.values())}")  # fmt: skip
            if problem := verdict(extra, names):
                failures.append(f"resolution: {problem}")
            if not args.resolve:
                failures += real_install(extra, args.from_venv or default_venv(), workdir)
    for failure in failures:
        print(f"FAIL {failure}")
    print("ok: [cpu] installs onnxruntime alone, [gpu] onnxruntime-gpu alone" if not failures else f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
