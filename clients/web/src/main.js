// The xrseg page: sources -> engine (WebRTC data channels) -> masks, candidates, 3D segment, latency.
// Everything it knows about the engine is docs/protocol.md; window.xrseg exposes its state (tests).
import { EngineConnection } from "./connection.js";
import { bytesToBase64, decodePoints, decodeRle, epochSeconds } from "./protocol.js";
import { ClipSource, WebcamSource } from "./sources.js";
import { SegmentView } from "./view3d.js";
import { detectXR } from "./xr.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
for (const [k, v] of new URLSearchParams(location.search)) if (!params.has(k)) params.set(k, v);

const GAZE_HZ = 60; // gaze samples per second from the pointer (a steady clock, like an eye tracker's)
const GAZE_BATCH_MS = 50; // one gaze prompt per ~3 samples: fewer messages
const GAZE_BACKFILL_MS = 250; // after a longer stall, samples resume from now (the gap ends a fixation)
const FRAMES_KEPT = 30; // frames kept (as bitmaps, ~1.2 MB each at 640x480) to draw a mask over its own frame
const SYNC_HOLD_MS = 600; // how long the view stays on a one-off result's frame (sync on), then live again
const MAX_BUFFERED = 256 * 1024; // send a new frame only when the data channel has drained to this

const state = {
  state: "idle",
  message: "",
  sessionId: null,
  model: null,
  source: null,
  frameId: 0,
  shownFrameId: null,
  promptId: 0,
  results: 0,
  last: null, // the newest result: {prompt_id, frame_id, kind, best, selected, width, height, raw (base64), ...}
  drawn: null, // what the overlay shows: {prompt_id, frame_id, selected, at}
  latencies: [], // per result: {prompt_id, kind, capture_to_mask_ms, prompt_to_mask_ms}
  errors: [],
  view3d: null,
  xr: null,
  gazeSent: 0,
  clock_offset_s: null,
};
window.xrseg = state;

const ui = {
  video: $("video"),
  picture: $("picture"),
  overlay: $("overlay"),
  marks: $("marks"),
  status: $("status"),
  message: $("message"),
  candidates: $("candidates"),
  latency: $("latency"),
  track: $("track"),
  sync: $("sync"),
  gazeOn: $("gaze"),
  text: $("text"),
  mic: $("mic"),
  token: $("token"),
  sourceSelect: $("source"),
  connect: $("connect"),
  xr: $("xr"),
  segmentInfo: $("segment-info"),
};
const view = new SegmentView($("view3d"));
state.view3d = view.shown;

let conn = null;
let source = null;
const frames = new Map(); // frame id -> {bitmap, captureMs, width, height}
const pending = new Map(); // prompt id -> {sentMs, frameId, kind}
let masks = []; // decoded masks of state.last
let points = []; // the current object's clicks: {x, y, label}
let pointer = null; // pointer position in frame pixels, or null when outside
let drag = null;
let gazeSamples = [];
let gazeLast = null; // {t, x, y} of the newest sample
let gazeSince = 0;
let dirtyPicture = true;
let dirtyOverlay = true;
let trackedPrompt = null;

function setMessage(text, kind = "info") {
  state.message = text;
  ui.message.textContent = text;
  ui.message.className = kind;
}

function setStatus(s, detail = "") {
  state.state = s;
  ui.status.textContent = detail ? `${s}: ${detail}` : s;
}

// -- connecting ------------------------------------------------------------------------------

const baseUrl = params.get("engine") || location.origin;
ui.token.value = params.get("token") || sessionStorage.getItem("xrseg-token") || "";

async function listClips() {
  const token = ui.token.value;
  if (!token) return [];
  const response = await fetch(`${baseUrl}/web/clips`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    setMessage(`clip list: HTTP ${response.status}: ${await response.text()}`, "error");
    return [];
  }
  return (await response.json()).clips;
}

async function fillSources() {
  const clips = await listClips().catch(() => []);
  state.clips = clips;
  ui.sourceSelect.innerHTML = "";
  const add = (value, label) => ui.sourceSelect.append(new Option(label, value));
  add("webcam", "webcam (colour only: 2D masks)");
  for (const c of clips) add(`clip:${c.name}`, `RGB-D clip ${c.name} (${c.frames} frames, 3D)`);
  const wanted = params.get("source");
  if (wanted) ui.sourceSelect.value = wanted;
}

async function connect() {
  disconnect();
  const token = ui.token.value.trim();
  if (!token) {
    setMessage("enter the session token the engine was started with (xrseg serve --token ...)", "error");
    return;
  }
  sessionStorage.setItem("xrseg-token", token);
  setStatus("connecting");
  try {
    conn = await EngineConnection.open(baseUrl, token, onMessage, (why) => {
      setStatus("disconnected", why);
      conn = null;
    });
  } catch (err) {
    setStatus("error");
    setMessage(`could not connect: ${err.message}`, "error");
    return;
  }
  state.sessionId = conn.sessionId;
  state.model = conn.model;
  const choice = ui.sourceSelect.value || "webcam";
  if (choice.startsWith("clip:")) {
    const clip = (state.clips || []).find((c) => `clip:${c.name}` === choice);
    source = new ClipSource(baseUrl, token, clip, Number(params.get("fps") || 8));
  } else {
    source = new WebcamSource(ui.video);
  }
  state.source = source.kind;
  state.sourceStats = () => source && source.stats;
  setStatus("streaming", `session ${conn.sessionId.slice(0, 8)}, model ${conn.model}, ${source.kind}`);
  if (!source.hasDepth) setMessage("webcam: colour only, so masks are 2D; pick an RGB-D clip for 3D segments");
  source.start(onFrame, () => conn !== null && conn.buffered < MAX_BUFFERED).catch((err) => {
    setStatus("error");
    setMessage(`source ${source.kind}: ${err.message}`, "error");
  });
}

function disconnect() {
  if (source) source.stop();
  if (conn) conn.close();
  source = null;
  conn = null;
}

ui.connect.addEventListener("click", () => connect());
window.addEventListener("pagehide", () => disconnect()); // says bye: the engine frees the session now
ui.token.addEventListener("change", () => fillSources());

// -- frames out ------------------------------------------------------------------------------

function onFrame(frame) {
  if (!conn) return frame.bitmap.close();
  const id = ++state.frameId;
  conn.sendPacked(frame.build(id));
  frames.set(id, { bitmap: frame.bitmap, captureMs: frame.captureMs, width: frame.width, height: frame.height });
  while (frames.size > FRAMES_KEPT) {
    const [oldest, f] = frames.entries().next().value;
    f.bitmap.close();
    frames.delete(oldest);
  }
  dirtyPicture = true;
}

// -- prompts ---------------------------------------------------------------------------------

function sendPrompt(items, extra = {}) {
  if (!conn || state.frameId === 0) {
    setMessage("no frame sent yet: connect a source first", "error");
    return null;
  }
  const id = ++state.promptId;
  const frameId = state.shownFrameId ?? state.frameId;
  const header = { type: "prompt", prompt_id: id, frame_id: frameId, multimask: true, want_3d: true, items, ...extra };
  pending.set(id, { sentMs: performance.now(), frameId, kind: items.map((i) => i.type).join("+") });
  while (pending.size > 512) pending.delete(pending.keys().next().value);
  if (extra.answer === "dwell") conn.sendGaze(header);
  else conn.send(header);
  return id;
}

function sendObjectPrompt(items) {
  const track = ui.track.checked;
  if (track && trackedPrompt !== null) conn.send({ type: "cancel", prompt_id: trackedPrompt });
  const id = sendPrompt(items, track ? { track: true } : {});
  if (track) trackedPrompt = id;
  return id;
}

function pointItems() {
  return points.map((p) => ({ type: "point", x: p.x, y: p.y, label: p.label }));
}

function toFrame(event) {
  const r = ui.marks.getBoundingClientRect();
  const w = ui.marks.width;
  const h = ui.marks.height;
  return {
    x: Math.min(w - 1, Math.max(0, ((event.clientX - r.left) / r.width) * w)),
    y: Math.min(h - 1, Math.max(0, ((event.clientY - r.top) / r.height) * h)),
  };
}

ui.marks.addEventListener("pointermove", (e) => {
  pointer = toFrame(e);
  if (drag) drag.to = pointer;
});
ui.marks.addEventListener("pointerleave", () => {
  pointer = null;
});
ui.marks.addEventListener("pointerdown", (e) => {
  drag = { from: toFrame(e), to: toFrame(e), alt: e.altKey, shift: e.shiftKey };
});
ui.marks.addEventListener("pointerup", (e) => {
  if (!drag) return;
  const { from, alt, shift } = drag;
  const to = toFrame(e);
  drag = null;
  if (Math.hypot(to.x - from.x, to.y - from.y) > 6) {
    const box = { type: "box", x0: Math.min(from.x, to.x), y0: Math.min(from.y, to.y), x1: Math.max(from.x, to.x), y1: Math.max(from.y, to.y) };
    if (!shift) points = []; // a new object, as a plain click; shift-drag adds the box to the clicks
    sendObjectPrompt([box, ...pointItems()]);
    return;
  }
  if (alt) points.push({ ...to, label: 0 });
  else if (shift) points.push({ ...to, label: 1 });
  else points = [{ ...to, label: 1 }];
  sendObjectPrompt(pointItems());
});
ui.marks.addEventListener("contextmenu", (e) => e.preventDefault());

$("text-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.text.value.trim();
  if (!text) return;
  const items = [{ type: "text", text }, ...pointItems()];
  if (pointer) items.push({ type: "gaze", samples: [[epochSeconds(), pointer.x, pointer.y, 1]] });
  sendObjectPrompt(items);
});

ui.track.addEventListener("change", () => {
  if (!ui.track.checked && conn) {
    conn.send({ type: "cancel", prompt_id: null });
    trackedPrompt = null;
  }
});

const Speech = window.SpeechRecognition || window.webkitSpeechRecognition;
if (Speech) {
  ui.mic.disabled = false;
  ui.mic.addEventListener("click", () => {
    const rec = new Speech();
    rec.lang = navigator.language || "en-US";
    rec.onresult = (event) => {
      ui.text.value = event.results[0][0].transcript;
      $("text-form").requestSubmit();
    };
    rec.onerror = (event) => setMessage(`speech recognition: ${event.error}`, "error");
    rec.start();
  });
} else {
  ui.mic.disabled = true;
  ui.mic.title = "this browser has no Web Speech API: type the phrase instead";
}

document.addEventListener("keydown", (e) => {
  if (e.target === ui.text || e.target === ui.token) return;
  if (!state.last || masks.length === 0) return;
  if (e.key === "Tab" || e.key === "c") {
    e.preventDefault();
    select((state.last.selected + 1) % masks.length);
  } else if (["1", "2", "3"].includes(e.key) && Number(e.key) <= masks.length) {
    select(Number(e.key) - 1);
  } else if (e.key === "Escape") {
    points = [];
  }
});

function select(i) {
  state.last.selected = i;
  dirtyOverlay = true;
  renderCandidates();
}

// -- messages in -----------------------------------------------------------------------------

function onMessage({ header, payloads }, raw) {
  switch (header.type) {
    case "result":
      return onResult(header, payloads, raw);
    case "error":
      return onError(header);
    case "pong":
      state.clock_offset_s = header.server_t - (header.t + epochSeconds()) / 2;
      return;
    default:
      return;
  }
}

function onResult(header, payloads, raw) {
  state.results += 1;
  masks = header.masks.map((m) => ({ ...m, mask: decodeRle(payloads[m.payload].bytes, header.height, header.width) }));
  state.last = {
    prompt_id: header.prompt_id,
    frame_id: header.frame_id,
    keyframe_id: header.keyframe_id,
    kind: header.kind || "answer",
    best: header.best,
    selected: header.best,
    width: header.width,
    height: header.height,
    scores: header.masks.map((m) => m.score),
    segment: header.segment ? { ...header.segment } : null,
    timestamps: header.timestamps,
    arrivalMs: performance.now(),
    raw: params.get("expose") === "0" ? null : bytesToBase64(raw instanceof Uint8Array ? raw : new Uint8Array(raw)),
  };
  const segment = header.segment;
  if (segment && segment.status === "ok" && payloads[segment.payload]) {
    view.show(segment, decodePoints(payloads[segment.payload].bytes), header.prompt_id);
    ui.segmentInfo.textContent = `${segment.num_points} points, box ${segment.box_extent.map((v) => v.toFixed(2)).join(" x ")} m (${segment.frame})`;
  } else if (segment) {
    ui.segmentInfo.textContent = `no 3D segment: ${segment.status}`;
  }
  state.view3d = view.shown;
  if (header.kind !== "track") setMessage("");
  dirtyOverlay = true;
  renderCandidates();
}

function onError(header) {
  state.errors.push({ code: header.code, message: header.message, ref_id: header.ref_id });
  if (state.errors.length > 50) state.errors.shift();
  if (header.code === "unsupported_prompt" && /text/i.test(header.message)) {
    setMessage(`No text encoder on this engine: ${header.message}`, "error");
  } else if (header.code === "bad_depth" && source && !source.hasDepth) {
    setMessage(`The engine's model (${state.model}) needs depth, which a webcam does not give: pick an RGB-D clip, or start the engine with an image-only model (SAM). ${header.message}`, "error");
  } else if (header.code !== "overloaded") {
    setMessage(`${header.code}: ${header.message}`, "error");
  }
}

function renderCandidates() {
  const last = state.last;
  ui.candidates.innerHTML = "";
  masks.forEach((m, i) => {
    const li = document.createElement("li");
    li.textContent = `${i + 1}. ${m.granularity} score ${m.score.toFixed(2)} area ${m.area}${m.ranking ? ` text ${m.ranking.text.toFixed(2)}` : ""}${i === last.best ? (last.segment && last.segment.status === "ok" ? " (best, in 3D)" : " (best)") : ""}`;
    if (i === last.selected) li.className = "selected";
    li.addEventListener("click", () => select(i));
    ui.candidates.append(li);
  });
}

// -- drawing (once per display frame) --------------------------------------------------------

const pictureCtx = ui.picture.getContext("2d");
const overlayCtx = ui.overlay.getContext("2d", { willReadFrequently: true });
const marksCtx = ui.marks.getContext("2d");

function resize(w, h) {
  for (const c of [ui.picture, ui.overlay, ui.marks]) {
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
      dirtyOverlay = dirtyPicture = true;
    }
  }
}

function displayFrameId(now) {
  const last = state.last;
  if (ui.sync.checked && last && now - last.arrivalMs < SYNC_HOLD_MS && frames.has(last.frame_id)) return last.frame_id;
  return state.frameId || null;
}

function drawOverlay(now) {
  const last = state.last;
  overlayCtx.clearRect(0, 0, ui.overlay.width, ui.overlay.height);
  if (!last || masks.length === 0) return;
  const { width, height } = last;
  resize(width, height);
  const mask = masks[last.selected].mask;
  const image = overlayCtx.createImageData(width, height);
  const px = image.data;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) {
      px[4 * i] = 30;
      px[4 * i + 1] = 144;
      px[4 * i + 2] = 255;
      px[4 * i + 3] = 140;
    }
  }
  overlayCtx.putImageData(image, 0, 0);
  const firstDraw = !state.drawn || state.drawn.prompt_id !== last.prompt_id || state.drawn.frame_id !== last.frame_id || state.drawn.arrivalMs !== last.arrivalMs;
  state.drawn = { prompt_id: last.prompt_id, frame_id: last.frame_id, selected: last.selected, arrivalMs: last.arrivalMs, at: now };
  if (firstDraw) recordLatency(last, now);
}

function recordLatency(last, now) {
  const frame = frames.get(last.frame_id);
  const sent = pending.get(last.prompt_id);
  const captureToMask = frame ? now - frame.captureMs : (epochSeconds(now) - last.timestamps.capture) * 1000;
  const entry = {
    prompt_id: last.prompt_id,
    kind: last.kind,
    frame_id: last.frame_id,
    prompt_frame_id: sent ? sent.frameId : null,
    prompt_items: sent ? sent.kind : null, // e.g. "box", "point+point", "gaze"
    capture_to_mask_ms: captureToMask,
    prompt_to_mask_ms: sent ? now - sent.sentMs : null,
  };
  state.latencies.push(entry);
  if (state.latencies.length > 2000) state.latencies.shift();
  const recent = state.latencies.slice(-50).map((l) => l.capture_to_mask_ms).sort((a, b) => a - b);
  const p50 = recent[Math.floor(recent.length / 2)];
  ui.latency.textContent =
    `prompt ${last.prompt_id} (${last.kind}): capture→mask ${captureToMask.toFixed(0)} ms` +
    (entry.prompt_to_mask_ms !== null ? `, prompt→mask ${entry.prompt_to_mask_ms.toFixed(0)} ms` : "") +
    ` · p50 of last ${recent.length}: ${p50.toFixed(0)} ms`;
}

function drawMarks() {
  marksCtx.clearRect(0, 0, ui.marks.width, ui.marks.height);
  for (const p of points) {
    marksCtx.fillStyle = p.label ? "#2ecc71" : "#e74c3c";
    marksCtx.beginPath();
    marksCtx.arc(p.x, p.y, 5, 0, 2 * Math.PI);
    marksCtx.fill();
  }
  if (drag && Math.hypot(drag.to.x - drag.from.x, drag.to.y - drag.from.y) > 6) {
    marksCtx.strokeStyle = "#ffb020";
    marksCtx.lineWidth = 2;
    marksCtx.strokeRect(drag.from.x, drag.from.y, drag.to.x - drag.from.x, drag.to.y - drag.from.y);
  }
  if (pointer && ui.gazeOn.checked) {
    marksCtx.strokeStyle = "rgba(255,255,255,0.8)";
    marksCtx.beginPath();
    marksCtx.arc(pointer.x, pointer.y, 9, 0, 2 * Math.PI);
    marksCtx.stroke();
  }
}

function gaze(now) {
  if (!conn || !pointer || !ui.gazeOn.checked || drag || state.frameId === 0) {
    gazeSamples = [];
    gazeLast = null;
    return;
  }
  // The pointer is sampled on a steady GAZE_HZ clock, as an eye tracker would be, whatever the
  // display rate: a busy page paints at 10 Hz, and gaps over 75 ms would end every fixation.
  const step = 1000 / GAZE_HZ;
  const prev = gazeLast;
  let t = prev ? prev.t + step : now;
  if (now - t > GAZE_BACKFILL_MS) t = now - GAZE_BACKFILL_MS;
  const t0 = prev ? prev.t : now;
  const span = Math.max(now - t0, 1e-6);
  for (; t <= now + 1e-6; t += step) {
    const a = prev ? Math.min(1, Math.max(0, (t - t0) / span)) : 1;
    const x = prev ? prev.x + a * (pointer.x - prev.x) : pointer.x;
    const y = prev ? prev.y + a * (pointer.y - prev.y) : pointer.y;
    gazeSamples.push([epochSeconds(t), x, y, 1.0]);
    gazeLast = { t, x, y };
  }
  if (now - gazeSince >= GAZE_BATCH_MS && gazeSamples.length) {
    sendPrompt([{ type: "gaze", samples: gazeSamples.slice(-128) }], { answer: "dwell" });
    state.gazeSent += 1;
    gazeSamples = [];
    gazeSince = now;
  }
}

let lastPing = 0;
function tick(now) {
  requestAnimationFrame(tick);
  const id = displayFrameId(now);
  if (id !== null && (id !== state.shownFrameId || dirtyPicture)) {
    const f = frames.get(id);
    if (f) {
      resize(f.width, f.height);
      pictureCtx.drawImage(f.bitmap, 0, 0);
      state.shownFrameId = id;
    }
    dirtyPicture = false;
  }
  if (dirtyOverlay) {
    drawOverlay(now);
    dirtyOverlay = false;
  }
  drawMarks();
  gaze(now);
  view.render();
  if (conn && now - lastPing > 2000) {
    conn.send({ type: "ping", t: epochSeconds(now) });
    lastPing = now;
  }
}
requestAnimationFrame(tick);

// -- start -----------------------------------------------------------------------------------

detectXR(ui.xr).then((xr) => (state.xr = xr));
fillSources().then(() => {
  if (params.get("autostart") === "1") connect();
});
