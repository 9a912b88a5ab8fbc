"""Glass-to-mask from the engine's web page in a real Chromium (fake camera), over loopback.

What is measured, per click prompt: from the capture time of the frame the mask belongs to
(requestVideoFrameCallback's captureTime of the fake camera's frame, on the page's own clock)
to the moment the page drew the mask over that frame (the animation frame that painted it).
Both ends are on the page's clock, so no clock sync is involved. Also per prompt: click to mask
(the prompt leaving the page to its mask drawn), and whether the result came back on the very
frame the prompt named (the browser's frame pairing: JPEG inside the frame message, docs/protocol.md).

Setup: Debian's Chromium driven by Playwright, its fake camera playing a y4m written from the
shared RGB-D sequence (30 frames of livingroom1_micro at 640x480, looping, so the image changes
and keyframes refresh as with a real camera); the engine in-process with the geometric model in
its colour-only mode (a webcam has no depth, and the Python client's figure in
bench/results/webrtc.json used depth: compare with care). Clicks land one at a time on a grid of
points; the next click waits until the previous mask is drawn (a user does not click faster
than they see). Numbers taken while other agents load the machine are upper bounds.

    python -m bench.browser [--prompts 110] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, machine, percentiles
from models.registry import ModelSpec, build_model
from tests.browser_support import browser_page, chromium_missing, page_server, rgbd_frames, write_y4m

TOKEN = "bench-token"
CLICK_GRID = [(fx, fy) for fy in (0.3, 0.5, 0.7) for fx in (0.2, 0.4, 0.6, 0.8)]


async def one_run(y4m: Path, prompts: int) -> dict:
    colour_only = build_model(ModelSpec("geometric-rgb"))
    async with page_server(TOKEN, model=colour_only) as server, browser_page(y4m) as page:
        await page.goto(f"{server.url}/#token={TOKEN}&autostart=1&source=webcam")
        await page.wait_for_function(
            "window.xrseg.state === 'streaming' && window.xrseg.frameId >= 5", timeout=120_000
        )
        await page.evaluate("document.getElementById('gaze').click()")  # clicks only
        box = await page.locator("#marks").bounding_box()
        assert box is not None
        timeouts = 0
        started = time.monotonic()
        frames_at_start = await page.evaluate("window.xrseg.frameId")
        for i in range(prompts + 3):  # the first three warm the page and the engine up
            fx, fy = CLICK_GRID[i % len(CLICK_GRID)]
            # a user clicks on the live picture: wait until the view left the last result's frame
            await page.wait_for_function("window.xrseg.shownFrameId === window.xrseg.frameId", timeout=30_000)
            before = await page.evaluate("window.xrseg.promptId")
            await page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            try:
                await page.wait_for_function(
                    f"window.xrseg.latencies.some(l => l.prompt_id > {before})", timeout=30_000
                )
            except Exception:  # noqa: BLE001 (playwright's TimeoutError): counted, the run goes on
                timeouts += 1
        seconds = time.monotonic() - started
        frames_sent = await page.evaluate("window.xrseg.frameId") - frames_at_start
        source = await page.evaluate("window.xrseg.sourceStats()")
        entries = await page.evaluate("window.xrseg.latencies")
        errors = await page.evaluate("window.xrseg.errors")
        peers = list(server.transport.peers.values())  # in-process: /metrics lists no sessions any more
        session = dataclasses.asdict(peers[0].session.stats) if peers else {}
    answers = [e for e in entries if e["kind"] == "answer"][3:]
    return {
        "glass_to_mask_ms": [round(e["capture_to_mask_ms"], 1) for e in answers],
        "click_to_mask_ms": [round(e["prompt_to_mask_ms"], 1) for e in answers if e["prompt_to_mask_ms"]],
        "prompts": len(answers),
        "results_on_their_own_frame": sum(e["frame_id"] == e["prompt_frame_id"] for e in answers),
        "page_fps": round(frames_sent / seconds, 2),
        "page_jpeg_ms_mean": round(source["jpeg_ms"] / max(1, source["grabbed"]), 1),
        "page_grab_ms_mean": round(source["grab_ms"] / max(1, source["grabbed"]), 1),
        "timeouts": timeouts,
        "errors": errors,
        "session": session,
    }


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=110, help="click prompts per run (>= 100 for a p95)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--frames", type=int, default=30, help="frames of the fake camera clip (it loops)")
    parser.add_argument("--plot-only", action="store_true", help="redraw browser.png from browser.json")
    args = parser.parse_args(argv)
    if args.plot_only:
        plot(json.loads((RESULTS / "browser.json").read_text()), RESULTS / "browser.png")
        return
    missing = chromium_missing()
    if missing:
        raise SystemExit(f"bench.browser: {missing}")
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        frames = [f.rgb for f in rgbd_frames(args.frames, step=3)]
        y4m = write_y4m(Path(tmp) / "camera.y4m", frames, fps=15)
        runs = []
        for r in range(args.runs):
            started = time.time()
            runs.append(asyncio.run(one_run(y4m, args.prompts)))
            print(
                f"run {r + 1}: {runs[-1]['prompts']} prompts in {time.time() - started:.0f} s, "
                f"glass-to-mask {percentiles(runs[-1]['glass_to_mask_ms'])}"
            )
    all_g2m = [v for run in runs for v in run["glass_to_mask_ms"]]
    all_click = [v for run in runs for v in run["click_to_mask_ms"]]
    python_path = RESULTS / "webrtc.json"
    python = json.loads(python_path.read_text()).get("webrtc", {}) if python_path.exists() else {}
    result = {
        "what": "glass-to-mask of click prompts from the web page "
        "(Chromium, fake camera, 640x480) over loopback",
        "commit": commit(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_average_at_start": load_start,
        "load_average_at_end": list(os.getloadavg()),
        "note": "2-core machine; Chromium runs on the same cores as the engine. See the load averages: above ~2, other jobs shared the cores and figures are upper bounds",
        "model": "geometric, colour-only mode (a webcam has no depth)",
        "frame_transport": "JPEG inside the frame message on the reliable data channel (browser pairing)",
        "runs": len(runs),
        "n": len(all_g2m),
        "glass_to_mask_ms": percentiles(all_g2m),
        "glass_to_mask_ms_per_run": [percentiles(run["glass_to_mask_ms"]) for run in runs],
        "click_to_mask_ms": percentiles(all_click),
        "timeouts": sum(run["timeouts"] for run in runs),
        "pairing": {
            "results_on_their_own_frame": sum(run["results_on_their_own_frame"] for run in runs),
            "results": len(all_g2m),
            "note": "a result names the frame whose pixels its masks are in; the page shows that frame's "
            "own JPEG under the mask, so a result on the prompted frame has zero pairing error",
        },
        "page_fps_per_run": [run["page_fps"] for run in runs],
        "page_jpeg_ms_mean_per_run": [run["page_jpeg_ms_mean"] for run in runs],
        "page_grab_ms_mean_per_run": [run["page_grab_ms_mean"] for run in runs],
        "errors": [e for run in runs for e in run["errors"]][:20],
        "sessions": [run["session"] for run in runs],
        "glass_to_mask_ms_all": all_g2m,
        "python_client": {
            "source": "bench/results/webrtc.json (python -m bench.webrtc): VP8 video track + rdz depth, "
            "geometric model with depth, glass = capture_ts to result received",
            "glass_to_mask_ms_p50": python.get("glass_to_mask_ms_p50"),
            "glass_to_mask_ms_p95": python.get("glass_to_mask_ms_p95"),
            "n": len(python.get("glass_to_mask_ms_all", [])),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "browser.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / "browser.png")
    g = result["glass_to_mask_ms"]
    print(
        f"glass-to-mask p50 {g['p50']} ms, p95 {g['p95']} ms over {g['n']} prompts "
        "-> bench/results/browser.json"
    )


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.hist(
        result["glass_to_mask_ms_all"], bins=40, label=f"web page (n={result['n']}, {result['runs']} runs)"
    )
    page, python = result["glass_to_mask_ms"], result["python_client"]
    ax.axvline(
        page["p50"], color="k", linestyle="--", label=f"page p50 {page['p50']:.0f} / p95 {page['p95']:.0f} ms"
    )
    ax.axvline(page["p95"], color="k", linestyle="--")
    click = result["click_to_mask_ms"]
    ax.axvline(
        click["p50"], color="tab:green", linestyle="-.", label=f"page click-to-mask p50 {click['p50']:.0f} ms"
    )
    if python.get("glass_to_mask_ms_p50") is not None:
        p50, p95 = python["glass_to_mask_ms_p50"], python["glass_to_mask_ms_p95"]
        label = f"python client p50 {p50:.0f} / p95 {p95:.0f} ms"
        ax.axvline(python["glass_to_mask_ms_p50"], color="tab:red", linestyle=":", label=label)
        ax.axvline(python["glass_to_mask_ms_p95"], color="tab:red", linestyle=":")
    ax.set_xlabel("glass-to-mask, ms (capture of the frame -> mask drawn)")
    ax.set_ylabel("prompts")
    load = result["load_average_at_start"][0]
    ax.set_title(f"browser page over WebRTC loopback (load {load:.1f} on 2 cores at start)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
