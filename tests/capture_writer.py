"""Child process of tests/test_capture_store.py: saves captures in a loop until it is killed.

    python -m tests.capture_writer ROOT SEED

After each save returns (the capture is acknowledged) it prints "ACK <id> <file>:<sha256>..."
and flushes, so the parent knows exactly which captures the store promised to keep.
"""

from __future__ import annotations

import hashlib
import random
import sys

from engine.capture.store import CaptureStore


def main() -> None:
    root, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    store = CaptureStore(root)
    print("READY", flush=True)
    i = 0
    while True:
        files = {
            "mesh.ply": rng.randbytes(rng.randint(1, 100_000)),
            "mesh.glb": rng.randbytes(rng.randint(1, 20_000)),
            "frames.json": b"[]",
        }
        saved = store.save(f"seed{seed} #{i}", files, {"i": i})
        sums = " ".join(f"{n}:{hashlib.sha256(d).hexdigest()}" for n, d in files.items())
        print(f"ACK {saved.capture_id} {sums}", flush=True)
        i += 1


if __name__ == "__main__":
    main()
