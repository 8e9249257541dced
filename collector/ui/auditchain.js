// Checks the audit log's hash chain in the browser, the same way `shadowai audit verify`
// does offline: seq 1, 2, 3… without gaps, prev_hash = the previous entry's hash (64 zeros
// first), hash = hex(SHA-256(prev_hash + "\n" + canonical JSON of {seq, ts_ms, actor, action,
// target, details})) with object keys sorted and no whitespace. The CLI stays authoritative:
// numbers that are not safe integers cannot be re-serialised exactly here, so such an entry
// is reported as "cannot check in the browser", never as tampered.

export const GENESIS = "0".repeat(64);

class Unverifiable extends Error {}

const utf8 = new TextEncoder();

function byUtf8(a, b) {
  const x = utf8.encode(a), y = utf8.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

export function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v).sort(byUtf8).map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  if (typeof v === "number" && !Number.isSafeInteger(v)) throw new Unverifiable(`the number ${v}`);
  return JSON.stringify(v);
}

async function sha256hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", utf8.encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * → {status: "verified", count, head} | {status: "broken", seq, reason}
 *   | {status: "unverifiable", seq, reason}
 */
export async function verifyChain(entries) {
  if (!(globalThis.crypto && crypto.subtle)) {
    return { status: "unverifiable", seq: null, reason: "this page is not a secure context (no WebCrypto)" };
  }
  let prev = GENESIS;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (e.seq !== i + 1) return { status: "broken", seq: e.seq, reason: `seq is ${e.seq}, expected ${i + 1}` };
    if (e.prev_hash !== prev) return { status: "broken", seq: e.seq, reason: "prev_hash does not match the previous entry's hash" };
    let body;
    try {
      body = canonical({ seq: e.seq, ts_ms: e.ts_ms, actor: e.actor, action: e.action, target: e.target, details: e.details ?? null });
    } catch (err) {
      if (err instanceof Unverifiable) return { status: "unverifiable", seq: e.seq, reason: `${err.message} cannot be checked here` };
      throw err;
    }
    const computed = await sha256hex(`${e.prev_hash}\n${body}`);
    if (computed !== e.hash) return { status: "broken", seq: e.seq, reason: "hash does not match the entry's content" };
    prev = e.hash;
  }
  return { status: "verified", count: entries.length, head: prev };
}
