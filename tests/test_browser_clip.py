"""The web page streaming an RGB-D clip that the engine serves: a 3D segment in the three.js view.

The engine (default geometric model, which needs depth) offers a small sequence folder written
here; the page fetches its frames (JPEG + rdz depth + pose) and streams them back over WebRTC, so
a browser without a depth camera gets world-anchored 3D segments. Real Chromium, real engine.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest

from engine.protocol import ResultMessage, decode_message
from tests.browser_support import (
    browser_page,
    chromium_missing,
    page_server,
    rgbd_frames,
    write_sequence_folder,
)

pytestmark = [
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
    pytest.mark.timeout(240),
]

TOKEN = "clip-token"
WAIT_MS = 60_000

VIEW_PIXELS_JS = """() => {
  const src = document.getElementById('view3d');
  const c = document.createElement('canvas');
  c.width = src.width; c.height = src.height;
  const ctx = c.getContext('2d');
  ctx.drawImage(src, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let points = 0, box = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
    if (g > 150 && b > 150 && r < 140) points++;          // 0x4fd1c5: the segment's points
    else if (r > 200 && g > 120 && b < 90) box++;        // 0xffb020: the oriented box
  }
  return {points, box};
}"""


async def test_clip_source_shows_a_3d_segment_and_tracks(tmp_path: Path) -> None:
    folder = write_sequence_folder(rgbd_frames(8, step=3), tmp_path / "room")
    async with page_server(TOKEN, clips=(folder,)) as server, browser_page() as page:
        await page.goto(f"{server.url}/#token={TOKEN}&autostart=1&source=clip:room&fps=6")
        await page.wait_for_function(
            "window.xrseg.state === 'streaming' && window.xrseg.frameId >= 2", timeout=WAIT_MS
        )
        assert await page.evaluate("window.xrseg.source") == "clip"
        await page.evaluate("document.getElementById('gaze').click()")  # clicks only
        box = await page.locator("#marks").bounding_box()
        assert box is not None
        chair = (box["x"] + 0.62 * box["width"], box["y"] + 0.62 * box["height"])
        await page.mouse.click(*chair)

        await page.wait_for_function(
            "window.xrseg.view3d.numPoints > 0 && window.xrseg.view3d.hasBox", timeout=WAIT_MS
        )
        last = await page.evaluate("window.xrseg.last")
        msg = decode_message(base64.b64decode(last["raw"]))
        assert isinstance(msg, ResultMessage) and msg.result.segment is not None
        segment = msg.result.segment
        assert segment.status == "ok" and segment.frame == "world" and segment.num_points > 50
        shown = await page.evaluate("window.xrseg.view3d")
        assert shown["numPoints"] == len(segment.points)
        assert np.allclose(shown["centroid"], segment.centroid, atol=1e-4)

        # the three.js canvas really draws them: points and box colours on its pixels
        await page.wait_for_timeout(300)
        pixels = await page.evaluate(VIEW_PIXELS_JS)
        assert pixels["points"] > 30 and pixels["box"] > 30, pixels

        # with "track" on, the engine keeps answering the click on new frames (results of kind track)
        await page.evaluate("document.getElementById('track').click()")
        await page.mouse.click(*chair)
        tracked = last["prompt_id"] + 1
        await page.wait_for_function(
            f"window.xrseg.last.kind === 'track' && window.xrseg.last.prompt_id === {tracked}",
            timeout=WAIT_MS,
        )
        if os.environ.get("XRSEG_DOCS_SCREENSHOTS"):
            await page.screenshot(path=str(Path(os.environ["XRSEG_DOCS_SCREENSHOTS"]) / "browser_clip.png"))
        # turning tracking off sends cancel: the page gets no more track results for that prompt
        await page.evaluate("document.getElementById('track').click()")
        await page.wait_for_timeout(3000)  # a tracking step running when the cancel came may still land
        count = await page.evaluate("window.xrseg.results")
        await page.wait_for_timeout(2000)
        assert await page.evaluate("window.xrseg.results") == count
