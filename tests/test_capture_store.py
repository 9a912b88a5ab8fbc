"""The capture store: atomic saves that survive SIGKILL at any moment, safe names, integrity checks."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.capture.store import CaptureStore, StoreError, UnknownCaptureError, check_file_name, sanitize_name

ROOT = Path(__file__).resolve().parents[1]


def test_save_list_read_and_verify(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path)
    saved = store.save("my mug", {"mesh.ply": b"ply data", "view0.png": b"\x89PNG"}, {"frames": 3})
    assert [c.capture_id for c in store.list()] == [saved.capture_id]
    again = CaptureStore(tmp_path).get(saved.capture_id)  # a new instance reads the same index
    assert again.name == "my mug" and again.meta == {"frames": 3}
    assert {f.name: f.size for f in again.files} == {"mesh.ply": 8, "view0.png": 4}
    assert store.read(saved.capture_id, "mesh.ply") == b"ply data"
    assert store.verify(saved.capture_id) == []
    # damage a file behind the store's back: read refuses it, verify names it
    (tmp_path / "captures" / saved.capture_id / "mesh.ply").write_bytes(b"ply dat!")
    with pytest.raises(StoreError, match="damaged"):
        store.read(saved.capture_id, "mesh.ply")
    assert store.verify(saved.capture_id) == ["mesh.ply"]
    store.delete(saved.capture_id)
    assert store.list() == [] and not (tmp_path / "captures" / saved.capture_id).exists()


@pytest.mark.parametrize(
    "name", ["../index.sqlite", "..", "a/b", "/etc/passwd", ".hidden", "x" * 200, "a\\b", "", "mesh.ply/..", "ok\x00.ply"]
)
def test_file_names_cannot_leave_the_capture(tmp_path: Path, name: str) -> None:
    store = CaptureStore(tmp_path)
    saved = store.save("x", {"mesh.ply": b"1"})
    with pytest.raises(StoreError):
        check_file_name(name)
    with pytest.raises((StoreError, UnknownCaptureError)):
        store.read(saved.capture_id, name)
    with pytest.raises(StoreError):
        store.save("x", {name: b"1"})


def test_capture_ids_and_display_names_are_checked(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path)
    for bad in ("../captures", "0" * 31, "g" * 32, "../../etc"):
        with pytest.raises(UnknownCaptureError):
            store.get(bad)
    with pytest.raises(UnknownCaptureError, match="no capture"):
        store.get("0" * 32)
    assert sanitize_name("../../etc/passwd") == "etc_passwd"
    assert sanitize_name("chair <script>") == "chair _script"
    assert sanitize_name("///") == "capture"


def test_leftovers_of_a_crash_are_removed_on_open(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path)
    kept = store.save("kept", {"a.bin": b"a"})
    (tmp_path / "tmp" / ("f" * 32)).mkdir()  # killed while writing files
    (tmp_path / "tmp" / ("f" * 32) / "a.bin").write_bytes(b"half")
    (tmp_path / "captures" / ("e" * 32)).mkdir()  # killed after the rename, before the index commit
    reopened = CaptureStore(tmp_path)
    assert os.listdir(tmp_path / "tmp") == []
    assert sorted(os.listdir(tmp_path / "captures")) == [kept.capture_id]
    assert [c.capture_id for c in reopened.list()] == [kept.capture_id]


def test_acknowledged_captures_survive_sigkill_at_random_moments(tmp_path: Path) -> None:
    """30 writer processes, each SIGKILLed after a random 0-250 ms: the store always opens, every
    capture the writer acknowledged is listed with intact files (sha256), and every listed
    capture is intact (nothing torn), with no leftovers after reopening."""
    rng = random.Random(1234)
    acked: dict[str, dict[str, str]] = {}
    kills = 0
    for round_ in range(30):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.capture_writer", str(tmp_path), str(round_)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"READY", proc.stderr.read() if proc.stderr else b""
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        kills += proc.returncode == -signal.SIGKILL
        for line in out.decode().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "ACK" and line.endswith(tuple("0123456789abcdef")):
                acked[parts[1]] = dict(p.split(":", 1) for p in parts[2:])
        store = CaptureStore(tmp_path)  # must open after every kill
        listed = {c.capture_id: c for c in store.list()}
        missing = set(acked) - set(listed)
        assert not missing, f"round {round_}: acknowledged captures lost: {missing}"
        for cid, sums in acked.items():
            for name, sha in sums.items():
                assert hashlib.sha256(store.read(cid, name)).hexdigest() == sha
        for cid in listed:
            assert store.verify(cid) == [], f"round {round_}: capture {cid} is torn"
        assert os.listdir(tmp_path / "tmp") == []
        assert sorted(os.listdir(tmp_path / "captures")) == sorted(listed)
    assert kills == 30
    assert len(acked) >= 30, f"only {len(acked)} captures acknowledged in 30 rounds: the kills came too early to test much"
