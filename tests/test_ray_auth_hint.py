"""A front-end refused by a cluster that requires a Ray auth token is told so.

Why a test: `ray start` turns token authentication on by itself when it finds ~/.ray/auth_token,
and a driver given the cluster's address then fails with "Failed to connect", the same words as
for a cluster that is not there. That sent us looking for a network problem once.

The scenario runs in a child process with its own HOME, so no Ray state or token of this test
reaches the other Ray tests of the run.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray backend needs the `ray` extra: pip install 'xrseg[ray]'")

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    from engine.remote.cluster import _init_ray
    from engine.remote.config import RayBackendConfig
    from engine.remote.local_cluster import LocalRayHead

    with LocalRayHead(num_cpus=1) as head:
        try:
            _init_ray(RayBackendConfig(address=head.address))
        except Exception as exc:
            print("ERROR:", exc)
        else:
            print("CONNECTED")
    """
)


def test_a_cluster_that_wants_a_token_gets_a_hint_naming_ray_auth_mode(tmp_path: Path) -> None:
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert "ERROR: cannot reach the Ray cluster" in run.stdout, run.stdout + run.stderr[-2000:]
    assert "RAY_AUTH_MODE=token" in run.stdout
    assert str(tmp_path / ".ray" / "auth_token") in run.stdout
