// Frame sources. Each frame goes to the engine whole, as a schema-v1 frame message with its own
// JPEG colour on the reliable data channel ("browser pairing", docs/protocol.md): the message is
// its own pairing, so a mask is always for exactly the pixels the page shows under it.
import { epochSeconds, pack, unpack } from "./protocol.js";

/**
 * The webcam (getUserMedia). Colour only: 2D masks, no 3D segments. Intrinsics are unknown to a
 * browser; we assume a 60 degree horizontal field of view (fx = fy = 0.866 * width).
 * Capture time: requestVideoFrameCallback's metadata.captureTime (the camera's timestamp on the
 * performance clock) where Chromium gives it, else the callback's time.
 */
export class WebcamSource {
  constructor(video) {
    this.video = video;
    this.kind = "webcam";
    this.hasDepth = false;
    this.running = false;
  }

  async start(sink, wantFrame) {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    this.video.srcObject = stream;
    this.video.muted = true;
    this.video.classList.add("live"); // shown (composited), or Chromium rarely calls requestVideoFrameCallback
    await this.video.play();
    this.running = true;
    const canvas = new OffscreenCanvas(2, 2);
    const ctx = canvas.getContext("2d", { willReadFrequently: true }); // CPU raster: no GPU readback per frame
    let busy = false;
    this.stats = { callbacks: 0, busy: 0, held: 0, grabbed: 0, grab_ms: 0, jpeg_ms: 0 }; // read by bench/browser.py
    const onFrame = async (now, meta) => {
      if (!this.running) return;
      this.video.requestVideoFrameCallback(onFrame);
      this.stats.callbacks += 1;
      if (busy) return void (this.stats.busy += 1);
      if (!wantFrame()) return void (this.stats.held += 1);
      busy = true;
      const started = performance.now();
      try {
        const captureMs = meta.captureTime ?? now;
        const width = this.video.videoWidth;
        const height = this.video.videoHeight;
        if (canvas.width !== width || canvas.height !== height) {
          canvas.width = width;
          canvas.height = height;
        }
        ctx.drawImage(this.video, 0, 0);
        const bitmap = await createImageBitmap(canvas);
        const encodeStarted = performance.now();
        const jpeg = new Uint8Array(await (await canvas.convertToBlob({ type: "image/jpeg", quality: 0.8 })).arrayBuffer());
        this.stats.jpeg_ms += performance.now() - encodeStarted;
        const f = 0.866 * width;
        const header = {
          type: "frame",
          width,
          height,
          intrinsics: { fx: f, fy: f, cx: (width - 1) / 2, cy: (height - 1) / 2 },
          pose: null,
          depth_scale: 1000,
        };
        sink({
          bitmap,
          width,
          height,
          captureMs,
          pose: null,
          build: (frameId) => pack({ ...header, frame_id: frameId, capture_ts: epochSeconds(captureMs) }, [{ name: "rgb", codec: "jpeg", bytes: jpeg }]),
        });
        this.stats.grabbed += 1;
        this.stats.grab_ms += performance.now() - started;
      } finally {
        busy = false;
      }
    };
    this.video.requestVideoFrameCallback(onFrame);
  }

  stop() {
    this.running = false;
    const stream = this.video.srcObject;
    if (stream) for (const t of stream.getTracks()) t.stop();
    this.video.srcObject = null;
    this.video.classList.remove("live");
  }
}

/**
 * An RGB-D clip the engine serves from a sequence folder (GET /web/clips/NAME/frames/I: a frame
 * message with JPEG colour, rdz depth, intrinsics and pose). The page stamps its own frame id and
 * capture time, shows the colour and sends the message on: a laptop without a depth camera gets
 * 3D segments.
 */
export class ClipSource {
  constructor(baseUrl, token, clip, fps = 8) {
    this.baseUrl = baseUrl;
    this.token = token;
    this.clip = clip;
    this.fps = fps;
    this.kind = "clip";
    this.hasDepth = true;
    this.running = false;
  }

  async start(sink, wantFrame) {
    this.running = true;
    let index = 0;
    let next = fetchFrame(this, index);
    const period = 1000 / this.fps;
    let due = performance.now();
    while (this.running) {
      const message = await next;
      index = (index + 1) % this.clip.frames;
      next = fetchFrame(this, index);
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      due = Math.max(due + period, performance.now() - period);
      if (!this.running) break;
      if (!wantFrame()) continue;
      const { header, payloads } = unpack(message);
      const bitmap = await createImageBitmap(new Blob([payloads.rgb.bytes], { type: "image/jpeg" }));
      const captureMs = performance.now();
      const list = Object.entries(payloads).map(([name, p]) => ({ name, codec: p.codec, bytes: p.bytes }));
      delete header.payloads;
      sink({
        bitmap,
        width: header.width,
        height: header.height,
        captureMs,
        pose: header.pose,
        build: (frameId) => pack({ ...header, frame_id: frameId, capture_ts: epochSeconds(captureMs) }, list),
      });
    }
  }

  stop() {
    this.running = false;
  }
}

async function fetchFrame(source, index) {
  const url = `${source.baseUrl}/web/clips/${encodeURIComponent(source.clip.name)}/frames/${index}`;
  const response = await fetch(url, { headers: { Authorization: `Bearer ${source.token}` } });
  if (!response.ok) throw new Error(`clip frame ${index}: HTTP ${response.status} ${await response.text()}`);
  return new Uint8Array(await response.arrayBuffer());
}
