"""Real Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a real engine.

Shared by tests/test_browser_*.py and bench/browser.py: a fake-camera clip written as y4m from an
RGB-D sequence, an in-process Engine with its WebRTC/HTTP app serving the page, and a browser
launched with the fake media flags. Never downloads a browser (no `playwright install`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.config import EngineConfig
from engine.core import RGBDFrame
from engine.server import Engine
from engine.transport.web_page import WebPageConfig
from engine.transport.webrtc import WebRTCConfig, WebRTCTransport
from models.interfaces import SegmentationModel
from xrseg.clips import open_clips

CHROMIUM = os.environ.get("XRSEG_CHROMIUM", "/usr/bin/chromium")
SHARED_RGBD = (
    Path(os.environ.get("XRSEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    / "rgbd"
)


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[dev]'"
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/bootstrap.sh does, as root)"
    return None


def rgbd_frames(n: int, step: int = 2) -> list[RGBDFrame]:
    """n frames of the shared livingroom1_micro sequence (every `step`-th), or of a synthetic
    ray-cast scene when ../shared/data is absent (a clean machine still runs the tests)."""
    folder = SHARED_RGBD / "livingroom1_micro"
    if folder.is_dir():
        from clients.sources.folder import open_sequence

        seq = open_sequence(folder)
        return [seq[i * step] for i in range(n)]
    from clients.sources.synthetic import make_scene, orbit_poses, render_sequence

    scene = make_scene(seed=3, n_objects=5)
    return [f.frame for f in render_sequence(scene, orbit_poses(scene, n, arc_deg=3.0 * n))]


def write_sequence_folder(frames: Sequence[RGBDFrame], root: Path) -> Path:
    """Frames -> a Redwood/Open3D-layout folder (color/*.jpg, depth/*.png, intrinsics.json,
    trajectory.log): the kind of folder `xrseg serve --clip` offers to the page."""
    (root / "color").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    k = frames[0].intrinsics
    matrix = [k.fx, 0.0, 0.0, 0.0, k.fy, 0.0, k.cx, k.cy, 1.0]  # column-major, as Open3D writes it
    (root / "intrinsics.json").write_text(
        json.dumps({"width": k.width, "height": k.height, "intrinsic_matrix": matrix})
    )
    log_lines = []
    for i, frame in enumerate(frames):
        cv2.imwrite(
            str(root / "color" / f"{i:05d}.jpg"), frame.rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
        depth = (
            frame.depth if frame.depth.dtype == np.uint16 else np.round(frame.depth * 1000).astype(np.uint16)
        )
        cv2.imwrite(str(root / "depth" / f"{i:05d}.png"), depth)
        pose = frame.pose.matrix if frame.pose is not None else np.eye(4)
        log_lines.append(f"{i} {i} {i + 1}")
        log_lines.extend(" ".join(f"{v:.9f}" for v in row) for row in pose)
    (root / "trajectory.log").write_text("\n".join(log_lines) + "\n")
    return root


def write_y4m(path: Path, frames: Sequence[np.ndarray], fps: int = 15) -> Path:
    """RGB uint8 (H, W, 3) frames -> a 4:2:0 y4m file, the format Chromium's fake camera reads."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg XYSCSS=420JPEG\n".encode())
        for rgb in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@dataclass
class PageServer:
    engine: Engine
    transport: WebRTCTransport
    token: str

    @property
    def url(self) -> str:
        return self.transport.url


@asynccontextmanager
async def page_server(
    token: str,
    clips: tuple[Path, ...] = (),
    model: SegmentationModel | None = None,
    cors_origins: tuple[str, ...] = (),
) -> AsyncIterator[PageServer]:
    """A started Engine whose WebRTC signalling app serves the page, on 127.0.0.1 (free port)."""
    config = EngineConfig(port=0, tokens=(token,), session_linger_s=30.0)
    async with Engine(config, model) as engine:
        rtc = WebRTCConfig(
            "127.0.0.1",
            0,
            host_addresses=("127.0.0.1",),
            idle_timeout_s=30.0,
            page=WebPageConfig(cors_origins=cors_origins, clips=open_clips(clips)),
        )
        transport = WebRTCTransport(engine, rtc)
        await transport.start()
        try:
            yield PageServer(engine, transport, token)
        finally:
            await transport.stop()


def chromium_args(fake_video: Path | None) -> list[str]:
    args = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
    ]
    if fake_video is not None:
        args.append(f"--use-file-for-fake-video-capture={fake_video}")
    return args


@asynccontextmanager
async def browser_page(fake_video: Path | None = None, width: int = 1100, height: int = 620):
    """A Playwright page in Debian's Chromium, with a fake camera playing `fake_video` (y4m)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(fake_video))
        try:
            context = await browser.new_context(viewport={"width": width, "height": height})
            page = await context.new_page()
            yield page
        finally:
            await browser.close()


# -- reading the page's state ------------------------------------------------------------------

OVERLAY_ALPHA_JS = """() => {
  const c = document.getElementById('overlay');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const a = new Uint8Array(c.width * c.height);
  for (let i = 0; i < a.length; i++) a[i] = d[4 * i + 3] > 0 ? 1 : 0;
  let s = '';
  for (let i = 0; i < a.length; i += 0x8000) s += String.fromCharCode.apply(null, a.subarray(i, i + 0x8000));
  return {width: c.width, height: c.height, alpha: btoa(s)};
}"""


async def overlay_mask(page) -> np.ndarray:  # noqa: ANN001 (playwright Page)
    """(H, W) bool: the pixels the page's mask overlay canvas paints."""
    import base64

    got = await page.evaluate(OVERLAY_ALPHA_JS)
    flat = np.frombuffer(base64.b64decode(got["alpha"]), np.uint8)
    return flat.reshape(got["height"], got["width"]).astype(bool)


async def engine_mask_of_last_result(page):  # noqa: ANN001, ANN201
    """The mask the engine sent for the page's newest result (the candidate the page selected),
    decoded from the raw message bytes the page received, by the engine's own codec; and the
    decoded ResultMessage."""
    import base64

    from engine.protocol import ResultMessage, decode_message

    last = await page.evaluate("window.xrseg.last")
    msg = decode_message(base64.b64decode(last["raw"]))
    assert isinstance(msg, ResultMessage)
    return msg.result.masks[last["selected"]].mask.decode(), msg, last
