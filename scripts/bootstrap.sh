#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs xrseg into it.
# Idempotent: a second run only re-installs when pyproject.toml changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${XRSEG_VENV:-$root/.venv}
py=${PYTHON:-python3}

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
want=$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "xrseg: installing into $venv (first run takes a few minutes)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -e "$root[dev]"
  echo "$want" > "$stamp"
fi
