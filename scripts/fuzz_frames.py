"""Coverage-guided fuzzing of the frame decoder with atheris (a script, not a test).

    python scripts/fuzz_frames.py -runs=20000              # bounded run (default 20000 inputs)
    python scripts/fuzz_frames.py -max_total_time=120       # or bounded by time

Input bytes are fed to parse_envelope + decode_envelope, as a frame message from a client would
be, and also spliced into a valid frame's header and payloads. Any exception other than a coded
ProtocolError is a finding: atheris stops and prints the input. Install with
`pip install -e .[fuzz]` (atheris has wheels for CPython 3.11 on x86-64 Linux).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    from engine.core import CameraIntrinsics, Pose, RGBDFrame
    from engine.protocol import (
        DepthCodec,
        ErrorCode,
        ImageCodec,
        Limits,
        ProtocolError,
        decode_message,
        encode_frame,
    )

LIMITS = Limits(max_message_bytes=1 << 20)


def _seed(codec: ImageCodec, depth: DepthCodec) -> bytes:
    h, w = 24, 32
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    frame = RGBDFrame(1, rgb, np.full((h, w), 900, np.uint16), CameraIntrinsics(w, h, 30.0, 30.0, 16.0, 12.0), 1000.0,
                      Pose.identity(), 0.0)  # fmt: skip
    return encode_frame(frame, codec, depth)


SEEDS = [
    _seed(ImageCodec.PNG, DepthCodec.RDZ),
    _seed(ImageCodec.JPEG, DepthCodec.PNG16),
    _seed(ImageCodec.RAW, DepthCodec.RAW16),
]


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        message = fdp.ConsumeBytes(fdp.remaining_bytes())
    else:  # mutate a valid frame: overwrite a run of bytes at a chosen place
        seed = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
        at = fdp.ConsumeIntInRange(0, len(seed) - 1)
        patch = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64))
        seed[at : at + len(patch)] = patch
        message = bytes(seed)
    try:
        decode_message(message, LIMITS)
    except ProtocolError as exc:
        if not isinstance(exc.code, ErrorCode):
            raise


def main() -> None:
    argv = list(sys.argv)
    if not any(a.startswith(("-runs=", "-max_total_time=")) for a in argv[1:]):
        argv.append("-runs=20000")
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
