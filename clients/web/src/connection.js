// One WebRTC session with the engine: HTTP offer/answer, the "xrseg" and "gaze" data channels.
import { Reassembler, pack, split, unpack } from "./protocol.js";

export class EngineConnection {
  /** Connects and resolves when the "xrseg" channel is open. onMessage({header, payloads}, raw). */
  static async open(baseUrl, token, onMessage, onClosed) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const control = pc.createDataChannel("xrseg", { ordered: true });
    const gaze = pc.createDataChannel("gaze", { ordered: false, maxRetransmits: 0 });
    control.binaryType = "arraybuffer";
    gaze.binaryType = "arraybuffer";
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringDone(pc, 3000);
    const response = await fetch(`${baseUrl}/webrtc/offer`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", token, client: "xrseg-web" }),
    });
    const answer = await response.json();
    if (!response.ok) {
      pc.close();
      throw new Error(`${answer.code}: ${answer.message}`);
    }
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    const conn = new EngineConnection(pc, control, gaze, answer, onMessage, onClosed);
    await new Promise((resolve, reject) => {
      if (control.readyState === "open") return resolve();
      const timer = setTimeout(() => reject(new Error("the data channel did not open within 20 s (ICE failed?)")), 20000);
      control.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    return conn;
  }

  constructor(pc, control, gaze, answer, onMessage, onClosed) {
    this.pc = pc;
    this.control = control;
    this.gaze = gaze;
    this.sessionId = answer.session_id;
    this.model = answer.model;
    this.limits = answer.limits;
    this.messageId = 0;
    this.reassembler = new Reassembler();
    control.onmessage = (event) => {
      const message = this.reassembler.feed(event.data);
      if (message !== null) onMessage(unpack(message), message);
    };
    const closed = () => onClosed && onClosed(pc.connectionState);
    control.onclose = closed;
    pc.onconnectionstatechange = () => ["failed", "closed"].includes(pc.connectionState) && closed();
  }

  get buffered() {
    return this.control.bufferedAmount;
  }

  /** A header (+ payloads) on the reliable channel, chunked. */
  send(header, payloads = []) {
    this.sendPacked(pack(header, payloads));
  }

  sendPacked(message) {
    if (this.control.readyState !== "open") return;
    this.messageId += 1;
    for (const chunk of split(message, this.messageId)) this.control.send(chunk);
  }

  /** A gaze prompt on the unreliable channel: one data-channel message, lost ones superseded. */
  sendGaze(header) {
    if (this.gaze.readyState === "open") this.gaze.send(pack(header));
  }

  close() {
    try {
      this.send({ type: "bye", reason: "page closed" });
    } finally {
      setTimeout(() => this.pc.close(), 100);
    }
  }
}

function iceGatheringDone(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}
