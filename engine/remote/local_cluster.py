"""A throwaway single-machine Ray cluster (`ray start --head --block` in a process group of its
own), for tests and benches: a real head (GCS, raylet, object store) that the front-end reaches
by address, as it would a remote cluster, and that stops with everything it started.

Why not `ray stop`: it kills every Ray process of this user on the machine, other people's too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalRayHead:
    """Lifecycle: `with LocalRayHead(num_cpus=4) as head: ... head.address ...`."""

    num_cpus: int = 4
    object_store_mb: int = 512
    startup_timeout_s: float = 120.0
    address: str = ""
    _process: subprocess.Popen[bytes] | None = None
    _temp: Path | None = None

    def start(self) -> str:
        port = _free_port()
        self._temp = Path(tempfile.mkdtemp(prefix="xrray-", dir="/tmp"))
        log = open(self._temp / "head.log", "wb")  # noqa: SIM115 - closed by the child's exit
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={self.num_cpus}", "--num-gpus=0",
            "--include-dashboard=false", "--disable-usage-stats",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}", f"--temp-dir={self._temp}",
        ]  # fmt: skip
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self._process.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return self.address
            except OSError:  # not listening yet: wait a moment, returning at once if the head exits
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=0.25)
        self.stop()
        raise RuntimeError(f"the Ray head did not listen on {self.address} in {self.startup_timeout_s:.0f} s")

    def log_tail(self, chars: int = 2000) -> str:
        path = self._temp / "head.log" if self._temp else None
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""

    def stop(self) -> None:
        """SIGTERM to the head's process group (its raylet, GCS and workers), SIGKILL after 20 s."""
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGTERM)
                self._process.wait(timeout=20)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=10)
            self._process = None
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def __enter__(self) -> LocalRayHead:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
