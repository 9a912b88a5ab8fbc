// Schema v1 on the wire (docs/protocol.md): framing, data-channel chunks, rle32 masks, f32 points.
// The page's only knowledge of the engine: nothing here is specific to the Python code.

const MAGIC = [0x58, 0x52, 0x53, 0x47]; // "XRSG"
const CHUNK_HEADER = 12; // "XC" | version u8 | reserved u8 | message id u32 | index u16 | count u16
export const MAX_CHUNK = 16 * 1024;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** header object + [{name, codec, bytes: Uint8Array}] -> one v1 message (Uint8Array). */
export function pack(header, payloads = []) {
  const h = { v: 1, ...header };
  if (payloads.length) h.payloads = payloads.map((p) => ({ name: p.name, codec: p.codec, size: p.bytes.byteLength }));
  const hb = enc.encode(JSON.stringify(h));
  let total = 8 + hb.length;
  for (const p of payloads) total += p.bytes.byteLength;
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(4, hb.length, true);
  out.set(hb, 8);
  let offset = 8 + hb.length;
  for (const p of payloads) {
    out.set(p.bytes, offset);
    offset += p.bytes.byteLength;
  }
  return out;
}

/** One v1 message (string or bytes) -> {header, payloads: {name: {codec, bytes}}}. */
export function unpack(data) {
  if (typeof data === "string") return { header: JSON.parse(data), payloads: {} };
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  for (let i = 0; i < 4; i++) if (bytes[i] !== MAGIC[i]) throw new Error("not an xrseg message (no XRSG magic)");
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  const header = JSON.parse(dec.decode(bytes.subarray(8, 8 + n)));
  const payloads = {};
  let offset = 8 + n;
  for (const p of header.payloads || []) {
    payloads[p.name] = { codec: p.codec, bytes: bytes.subarray(offset, offset + p.size) };
    offset += p.size;
  }
  return { header, payloads };
}

/** A message -> the data-channel messages that carry it (itself when it fits one). */
export function split(message, messageId, maxChunk = MAX_CHUNK) {
  if (message.byteLength <= maxChunk) return [message];
  const body = maxChunk - CHUNK_HEADER;
  const count = Math.ceil(message.byteLength / body);
  const out = [];
  for (let i = 0; i < count; i++) {
    const part = message.subarray(i * body, Math.min(message.byteLength, (i + 1) * body));
    const chunk = new Uint8Array(CHUNK_HEADER + part.byteLength);
    const dv = new DataView(chunk.buffer);
    chunk[0] = 0x58; // X
    chunk[1] = 0x43; // C
    chunk[2] = 1;
    chunk[3] = 0;
    dv.setUint32(4, messageId >>> 0, true);
    dv.setUint16(8, i, true);
    dv.setUint16(10, count, true);
    chunk.set(part, CHUNK_HEADER);
    out.push(chunk);
  }
  return out;
}

/** Joins chunks of one ordered channel; feed() returns a whole message or null. */
export class Reassembler {
  constructor(maxBytes = 64 * 1024 * 1024) {
    this.maxBytes = maxBytes;
    this.parts = new Map(); // message id -> {count, chunks: []}
  }

  feed(data) {
    if (typeof data === "string") return data;
    const bytes = new Uint8Array(data);
    if (!(bytes[0] === 0x58 && bytes[1] === 0x43)) return bytes;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const id = dv.getUint32(4, true);
    const index = dv.getUint16(8, true);
    const count = dv.getUint16(10, true);
    let entry = this.parts.get(id);
    if (!entry) {
      entry = { count, chunks: [], size: 0 };
      this.parts.set(id, entry);
      while (this.parts.size > 8) this.parts.delete(this.parts.keys().next().value);
    }
    entry.chunks[index] = bytes.subarray(CHUNK_HEADER);
    entry.size += bytes.byteLength - CHUNK_HEADER;
    if (entry.size > this.maxBytes) {
      this.parts.delete(id);
      throw new Error(`message ${id} exceeds ${this.maxBytes} bytes`);
    }
    if (entry.chunks.filter(Boolean).length < count) return null;
    this.parts.delete(id);
    const out = new Uint8Array(entry.size);
    let offset = 0;
    for (const c of entry.chunks) {
      out.set(c, offset);
      offset += c.byteLength;
    }
    return out;
  }
}

/** rle32 (COCO runs, column-major, zeros first) -> row-major Uint8Array of 0/1, height*width. */
export function decodeRle(bytes, height, width) {
  const runs = new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const mask = new Uint8Array(height * width);
  let i = 0;
  for (let r = 0; r < runs.length; r++) {
    const n = runs[r];
    if (r % 2 === 1) {
      for (let k = i; k < i + n; k++) {
        const row = k % height;
        const col = (k - row) / height;
        mask[row * width + col] = 1;
      }
    }
    i += n;
  }
  return mask;
}

/** f32 payload -> Float32Array of N*3 (x, y, z). */
export function decodePoints(bytes) {
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** Seconds since the epoch on the page's clock: the clock of capture_ts and gaze sample t. */
export function epochSeconds(perfMs = performance.now()) {
  return (performance.timeOrigin + perfMs) / 1000;
}

export function bytesToBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
