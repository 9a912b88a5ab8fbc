"""CaptureStore: finished captures on disk, an SQLite index beside them, crash-safe.

Layout under the store's root:

    index.sqlite          captures and their files (name, size, sha256), WAL journal
    captures/<id>/<file>  the files of one capture (mesh.ply, mesh.obj, mesh.glb, view0.png, ...)
    tmp/<id>/             a capture being written (never read)

Why this order of writes: a capture is acknowledged only when it can be read back whole after a
crash at any moment. Each file is written into tmp/<id>/ and fsynced, the directory is fsynced
and renamed into captures/ in one step (rename is atomic), the parent directories are fsynced,
and only then is the index row committed (SQLite WAL, synchronous=FULL: a commit is on disk when
it returns). So an indexed capture always has all its files; a crash before the commit leaves at
most a directory without a row, which the next open removes, like any leftover in tmp/.

This module imports nothing heavy (no Open3D), so small processes (tests, tools) can use it.
Every method opens its own SQLite connection: callers may use the store from any thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.capture.config import CaptureError

_ID = re.compile(r"^[0-9a-f]{32}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    capture_id TEXT NOT NULL REFERENCES captures(id) ON DELETE CASCADE,
    name TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (capture_id, name)
);
"""


class UnknownCaptureError(CaptureError):
    """No stored capture (or file of it) by that id / name."""


class StoreError(CaptureError):
    """The store cannot be used as asked (bad name, damaged file)."""


def default_store_dir() -> Path:
    """$XRSEG_CAPTURES, else ~/.local/share/xrseg/captures."""
    env = os.environ.get("XRSEG_CAPTURES")
    return Path(env) if env else Path.home() / ".local" / "share" / "xrseg" / "captures"


def is_capture_id(value: str) -> bool:
    return bool(_ID.match(value))


def check_file_name(name: str) -> str:
    """A file name safe in a path: letters, digits, '_', '.', '-', starting alphanumeric, no '..'."""
    if not _FILE.match(name) or ".." in name:
        raise StoreError(f"file name {name!r} is not allowed: use letters, digits, '_', '.', '-' (no path)")
    return name


def sanitize_name(name: str, fallback: str = "capture") -> str:
    """A user's capture name made safe for listings and download file names (64 chars max)."""
    cleaned = re.sub(r"[^A-Za-z0-9 _.-]+", "_", name).strip(" ._")[:64]
    return cleaned or fallback


@dataclass(frozen=True)
class StoredFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class StoredCapture:
    """One acknowledged capture: id (32 hex), sanitised name, creation time, files, metadata."""

    capture_id: str
    name: str
    created: float
    files: tuple[StoredFile, ...]
    meta: Mapping[str, Any]

    def file(self, name: str) -> StoredFile:
        for f in self.files:
            if f.name == name:
                return f
        raise UnknownCaptureError(f"capture {self.capture_id} has no file {name!r}; it has {[f.name for f in self.files]}")

    def as_json(self) -> dict[str, Any]:
        return {
            "capture_id": self.capture_id,
            "name": self.name,
            "created": self.created,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
            "meta": dict(self.meta),
        }


class CaptureStore:
    """See the module docstring. Opening recovers from any crash (leftovers removed)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._captures = self.root / "captures"
        self._tmp = self.root / "tmp"
        self._captures.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)
        self._recover()

    # -- writing ---------------------------------------------------------------------------------

    def save(self, name: str, files: Mapping[str, bytes], meta: Mapping[str, Any] | None = None) -> StoredCapture:
        """Write a capture atomically; when this returns it survives a crash (acknowledged).

        Args:
            name: display name (sanitised).
            files: file name (see check_file_name) -> content.
            meta: JSON-serialisable metadata (frame count, voxel size, ...).
        """
        if not files:
            raise StoreError("a capture needs at least one file")
        for file_name in files:
            check_file_name(file_name)
        meta_json = json.dumps(dict(meta or {}), allow_nan=False)
        capture_id = uuid.uuid4().hex
        staging = self._tmp / capture_id
        staging.mkdir()
        stored = []
        for file_name, data in files.items():
            _write_synced(staging / file_name, data)
            stored.append(StoredFile(file_name, len(data), hashlib.sha256(data).hexdigest()))
        _fsync_dir(staging)
        os.rename(staging, self._captures / capture_id)
        _fsync_dir(self._captures)
        _fsync_dir(self._tmp)
        created = time.time()
        clean_name = sanitize_name(name)
        with closing(self._connect()) as db, db:
            db.execute("INSERT INTO captures VALUES (?, ?, ?, ?)", (capture_id, clean_name, created, meta_json))
            db.executemany(
                "INSERT INTO files VALUES (?, ?, ?, ?)", [(capture_id, f.name, f.size, f.sha256) for f in stored]
            )
        return StoredCapture(capture_id, clean_name, created, tuple(stored), json.loads(meta_json))

    def delete(self, capture_id: str) -> None:
        self.get(capture_id)
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM files WHERE capture_id = ?", (capture_id,))
            db.execute("DELETE FROM captures WHERE id = ?", (capture_id,))
        shutil.rmtree(self._captures / capture_id, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------------

    def list(self) -> list[StoredCapture]:
        """Every acknowledged capture, newest first."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT id, name, created, meta FROM captures ORDER BY created DESC").fetchall()
            files = db.execute("SELECT capture_id, name, size, sha256 FROM files ORDER BY name").fetchall()
        by_id: dict[str, list[StoredFile]] = {}
        for cid, fname, size, sha in files:
            by_id.setdefault(cid, []).append(StoredFile(fname, size, sha))
        return [StoredCapture(cid, n, c, tuple(by_id.get(cid, ())), json.loads(m)) for cid, n, c, m in rows]

    def get(self, capture_id: str) -> StoredCapture:
        if not is_capture_id(capture_id):
            raise UnknownCaptureError(f"{capture_id!r} is not a capture id (32 hex digits)")
        with closing(self._connect()) as db:
            row = db.execute("SELECT id, name, created, meta FROM captures WHERE id = ?", (capture_id,)).fetchone()
            files = db.execute(
                "SELECT name, size, sha256 FROM files WHERE capture_id = ? ORDER BY name", (capture_id,)
            ).fetchall()
        if row is None:
            raise UnknownCaptureError(f"no capture {capture_id}; list them with GET /captures")
        return StoredCapture(row[0], row[1], row[2], tuple(StoredFile(*f) for f in files), json.loads(row[3]))

    def path(self, capture_id: str, file_name: str) -> Path:
        """Path of one file of an indexed capture (both names checked against the index)."""
        self.get(capture_id).file(check_file_name(file_name))
        return self._captures / capture_id / file_name

    def read(self, capture_id: str, file_name: str, verify: bool = True) -> bytes:
        entry = self.get(capture_id).file(check_file_name(file_name))
        data = (self._captures / capture_id / file_name).read_bytes()
        if verify and (len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256):
            raise StoreError(f"capture {capture_id} file {file_name} is damaged (size or checksum differs from the index)")
        return data

    def verify(self, capture_id: str) -> list[str]:
        """Names of the capture's files that are missing or differ from their checksum (empty: intact)."""
        bad = []
        for f in self.get(capture_id).files:
            try:
                self.read(capture_id, f.name)
            except (OSError, StoreError):
                bad.append(f.name)
        return bad

    # -- internals -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "index.sqlite", timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def _recover(self) -> None:
        """Remove what a crash left: staging directories, and capture directories with no index row."""
        for leftover in self._tmp.iterdir():
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        with closing(self._connect()) as db:
            known = {row[0] for row in db.execute("SELECT id FROM captures")}
        removed = False
        for directory in self._captures.iterdir():
            if directory.name not in known:
                shutil.rmtree(directory, ignore_errors=True)
                removed = True
        if removed:
            _fsync_dir(self._captures)


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
