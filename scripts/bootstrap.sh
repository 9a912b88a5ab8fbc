#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs xrseg into it.
# Idempotent: a second run only re-installs when pyproject.toml or the extras changed.
#   XRSEG_EXTRAS   extras to install (default "cpu,dev": what `make test` and `make demo` need);
#                  exactly one of cpu / gpu (ONNX Runtime's CPU or GPU build), e.g. "gpu,dev" or "cpu,dev,bench".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${XRSEG_VENV:-$root/.venv}
py=${PYTHON:-python3}
extras=${XRSEG_EXTRAS:-cpu,dev}
has() { case ",$extras," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
if has cpu && has gpu; then
  echo "xrseg: XRSEG_EXTRAS=$extras: choose cpu or gpu, not both (they install the same onnxruntime folder)" >&2; exit 2
elif has gpu; then runtime=onnxruntime-gpu; other=onnxruntime
elif has cpu; then runtime=onnxruntime; other=onnxruntime-gpu
else
  echo "xrseg: XRSEG_EXTRAS=$extras has neither cpu nor gpu; add one (ONNX Runtime's CPU or GPU build)" >&2; exit 2
fi

# open3d's Python module links against libusb-1.0 (for RealSense support) even when unused.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "xrseg: installing libusb-1.0-0 (needed by open3d)" >&2
    (apt-get update -qq && apt-get install -y -qq libusb-1.0-0) >/dev/null
  else
    echo "xrseg: open3d needs the system library libusb-1.0. Install it first:" >&2
    echo "       sudo apt-get install -y libusb-1.0-0   (Debian/Ubuntu)" >&2
    exit 1
  fi
fi

# The browser tests drive Debian's chromium (never a downloaded browser build); without it they skip.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "xrseg: installing chromium (for the web page's browser tests)" >&2
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null || echo "xrseg: chromium not installed; browser tests will skip" >&2
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "xrseg: creating virtual environment in $venv" >&2
  "$py" -m venv "$venv"
fi
stamp="$venv/.xrseg-installed"
want=$( (cat "$root/pyproject.toml"; echo "$extras") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "xrseg: installing into $venv with [$extras] (first run takes a few minutes)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  # onnxruntime and onnxruntime-gpu write the same package folder: remove the one not chosen first,
  # else uninstalling it later would delete files of the one that stays.
  if "$venv/bin/python" -m pip show -q "$other" >/dev/null 2>&1; then
    echo "xrseg: replacing $other by $runtime" >&2
    "$venv/bin/python" -m pip uninstall -q -y "$other" "$runtime" >/dev/null
  fi
  "$venv/bin/python" -m pip install -q -e "$root[$extras]"
  echo "$want" > "$stamp"
fi
