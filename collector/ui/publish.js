// Publishing from the browser: the collector composes the unsigned bundle body from the
// approved proposals; this page signs it here with WebCrypto Ed25519, using the key file the
// admin picks (`shadowai rules keygen` writes it). The key is read into this page only, never
// sent anywhere: the collector receives the signed envelope and verifies it against the keys
// it trusts, then re-checks the two-person rule, exactly as for `shadowai rules publish`.

import { api } from "./api.js";
import { h, card, table } from "./dom.js";

/** PKCS#8 wrapping of a raw 32-byte Ed25519 seed (RFC 8410). */
const PKCS8_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

const hex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");

function unhex(text, what) {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) throw new Error(`${what} is not hex`);
  return Uint8Array.from(text.match(/../g) || [], (b) => parseInt(b, 16));
}

const b64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

/** The secret key file: `#` comments and one line of 64 hex digits (the seed). */
export async function readSigningKey(file) {
  const text = await file.text();
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  if (lines.length !== 1) throw new Error(`${file.name}: expected one key line, found ${lines.length}`);
  const seed = unhex(lines[0], `${file.name}: the key line`);
  if (seed.length !== 32) throw new Error(`${file.name}: the key is ${seed.length} bytes, not 32 (is this the public key file?)`);
  const pkcs8 = new Uint8Array(PKCS8_PREFIX.length + 32);
  pkcs8.set(PKCS8_PREFIX);
  pkcs8.set(seed, PKCS8_PREFIX.length);
  let key;
  try {
    key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  } catch (e) {
    throw new Error(`this browser cannot use Ed25519 keys in WebCrypto (${e.message}); publish with \`shadowai rules publish\``);
  }
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const pub = b64url(jwk.x);
  const keyId = hex(await crypto.subtle.digest("SHA-256", pub)).slice(0, 16);
  return { key, keyId };
}

/** Signs `context || body` of a composed bundle; the envelope exactly as `shadowai rules
 *  publish` writes it (the body verbatim), as bytes. */
async function signEnvelope(composed, key, keyId) {
  const message = new Uint8Array([...unhex(composed.context_hex, "context"), ...new TextEncoder().encode(composed.body)]);
  const sig = hex(await crypto.subtle.sign({ name: "Ed25519" }, key, message));
  const envelope = `{"body":${composed.body},"key_id":${JSON.stringify(keyId)},"signature":${JSON.stringify(sig)}}\n`;
  return new TextEncoder().encode(envelope);
}

/** Composes, signs, uploads and starts the canary rollout; returns {bundle, rollout, stages}. */
export async function publish({ file, mode, canaryGroup, note }) {
  const { key, keyId } = await readSigningKey(file);
  const composed = await api.compose({ mode, valid_days: 30 });
  const envelope = await signEnvelope(composed, key, keyId);
  const bundle = await api.uploadBundle(composed.version, note || `published in the web UI (key ${keyId})`, envelope);
  const rollout = await api.startRollout(bundle.version, canaryGroup);
  const stages = await api.rolloutAgents(rollout.id);
  return { composed, keyId, bundle, rollout, stages };
}

/** Agents each stage of a rollout reaches, with the collector's warnings. */
export function stagesView(s) {
  const row = (name, st) => [name, String(st.agents), String(st.on_version), String(st.silent)];
  return h("div", { class: "stages", "data-testid": `stages-${s.rollout}` },
    table(["Stage", "Agents", `On ${s.bundle_version}`, "Silent"],
      [row("canary", s.canary), row("percent", s.percent), row("rest", s.rest)], { testid: `stages-table-${s.rollout}` }),
    s.warnings.length
      ? h("ul", { class: "warnings", "data-testid": `stage-warnings-${s.rollout}` }, ...s.warnings.map((w) => h("li", { class: "warning" }, w)))
      : null);
}

/** The "Publish" card of the rules page (admins only). */
export function publishCard(ctx) {
  const out = h("div", { "data-testid": "publish-result" });
  const file = h("input", { type: "file", "data-testid": "publish-key", "aria-label": "Signing key file" });
  const mode = h("select", { "data-testid": "publish-mode", "aria-label": "Mode" },
    h("option", { value: "" }, "choose a mode…"),
    h("option", { value: "monitor" }, "monitor (report only)"),
    h("option", { value: "enforce" }, "enforce (block what is blocked)"));
  const group = h("input", { type: "text", placeholder: "canary group", "data-testid": "publish-group", "aria-label": "Canary group" });
  const go = h("button", { class: "primary", "data-testid": "publish-go" }, "Sign and publish");
  go.onclick = async () => {
    const problems = [];
    if (!file.files || !file.files[0]) problems.push("pick the signing key file");
    if (!mode.value) problems.push("choose monitor or enforce");
    if (!group.value.trim()) problems.push("name the canary group");
    if (problems.length) {
      ctx.showError(new Error(`Cannot publish yet: ${problems.join("; ")}.`));
      return;
    }
    go.disabled = true;
    try {
      const r = await publish({ file: file.files[0], mode: mode.value, canaryGroup: group.value.trim() });
      ctx.toast(`Bundle ${r.bundle.version} signed with key ${r.keyId}, rollout #${r.rollout.id} started in group ${r.rollout.canary_group}.`);
      out.replaceChildren(
        h("p", { "data-testid": "published" }, `Published ${r.bundle.version} (${r.composed.rules} rules from proposals ${r.composed.proposals.map((p) => "#" + p).join(", ") || "none"}), key ${r.keyId}; rollout #${r.rollout.id}:`),
        stagesView(r.stages));
    } catch (err) {
      ctx.showError(err);
    } finally {
      go.disabled = false;
      file.value = "";
    }
  };
  return card("Publish",
    h("p", { class: "muted" }, "Signs the approved policy with your key in this browser (the key file is never uploaded), uploads it and starts a canary rollout. The collector checks the signature and the two-person rule."),
    h("div", { class: "form-row" }, file, mode, group, go),
    out,
    modeForm(ctx));
}

/** Switching agents between monitor and enforce is a proposal a second person approves. */
function modeForm(ctx) {
  const mode = h("select", { "data-testid": "mode-proposal", "aria-label": "Proposed mode" },
    h("option", { value: "" }, "choose a mode…"),
    h("option", { value: "enforce" }, "enforce"),
    h("option", { value: "monitor" }, "monitor"));
  const reason = h("input", { type: "text", placeholder: "reason", "data-testid": "mode-reason", "aria-label": "Reason" });
  const go = h("button", { "data-testid": "mode-submit" }, "Propose mode");
  go.onclick = async () => {
    if (!mode.value || !reason.value.trim()) {
      ctx.showError(new Error("Choose a mode and give a reason."));
      return;
    }
    try {
      const p = await api.propose({ service_id: `mode:${mode.value}`, verdict: "blocked", scope: { kind: "fleet" }, reason: reason.value.trim() });
      ctx.toast(`Proposal #${p.id} (mode ${mode.value}) waits for a second person.`);
      ctx.rerender();
    } catch (err) {
      ctx.showError(err);
    }
  };
  return h("div", { class: "form-row" }, h("span", {}, "Agents' mode:"), mode, reason, go);
}

/** Advance control: an explicit percentage, never a default. */
export function advanceControl(ctx, r) {
  const pct = h("input", { type: "number", min: "1", max: "100", step: "1", placeholder: "%", class: "pct", "data-testid": `advance-pct-${r.id}`, "aria-label": "Percent of agents" });
  const go = h("button", { "data-testid": `advance-${r.id}` }, "Advance");
  go.onclick = async () => {
    const raw = pct.value.trim();
    const n = Number(raw);
    if (!(raw !== "" && Number.isInteger(n) && n >= 1 && n <= 100)) {
      ctx.showError(new Error(`"${raw}" is not a percentage from 1 to 100`));
      return;
    }
    try {
      await api.advanceRollout(r.id, n);
      ctx.rerender();
    } catch (err) {
      ctx.showError(err);
    }
  };
  return h("span", { class: "advance" }, pct, go);
}

/** A button that shows the agents per stage of a rollout below the table. */
export function stagesButton(ctx, r, box) {
  return h("button", {
    "data-testid": `show-stages-${r.id}`,
    onclick: async () => {
      try {
        box.replaceChildren(h("h3", {}, `Rollout #${r.id}`), stagesView(await api.rolloutAgents(r.id)));
      } catch (err) {
        ctx.showError(err);
      }
    },
  }, "Agents");
}

/** A rollback as `shadowai rules rollback` does it: stop the rollout, have the collector
 *  compose the content of the bundle it replaced under a new, higher version, sign it here,
 *  upload it (the collector checks the two-person rule again), start a rollout of it and
 *  advance it to 100 %, so agents that already loaded the bad bundle return to the earlier
 *  content (they accept it: its version is higher). `progress(text)` is told each stage. */
export async function rollBack({ rollout: r, file, reason, progress }) {
  if (!r.previous_version) {
    throw new Error(`Rollout #${r.id} replaced no earlier bundle: there is nothing to return to. Publish a corrected bundle instead.`);
  }
  // The key is read (and checked) before anything changes.
  const { key, keyId } = await readSigningKey(file);
  const stopped = await api.rollbackRollout(r.id, reason);
  progress(`Rollout #${r.id} of ${stopped.bundle_version} stopped.`);
  const composed = await api.composeRollback(r.id, { valid_days: 30 });
  progress(`The content of ${r.previous_version} composed as ${composed.version}.`);
  const envelope = await signEnvelope(composed, key, keyId);
  progress(`Signed in this browser with key ${keyId}.`);
  const bundle = await api.uploadBundle(composed.version, `rollback of rollout ${r.id}: the content of ${r.previous_version} (signed in the web UI, key ${keyId})`, envelope);
  progress(`Bundle ${bundle.version} uploaded: signature and two-person rule checked.`);
  const started = await api.startRollout(bundle.version, stopped.canary_group);
  const all = await api.advanceRollout(started.id, 100);
  progress(`Rollout #${all.id} of ${bundle.version} advanced to ${all.stage === "all" ? "every agent" : all.stage}.`);
  const stages = await api.rolloutAgents(all.id);
  return { bundle, rollout: all, stages };
}

/** The form a "Roll back" button opens in `box`: a reason, the signing key file, and the
 *  stages of the rollback as they happen. */
export function rollbackForm(ctx, r, box) {
  const reason = h("input", { type: "text", placeholder: "reason", "data-testid": `rollback-reason-${r.id}`, "aria-label": "Reason" });
  const file = h("input", { type: "file", "data-testid": `rollback-key-${r.id}`, "aria-label": "Signing key file" });
  const log = h("ol", { class: "rollback-stages", "data-testid": `rollback-stages-${r.id}` });
  const out = h("div", { "data-testid": `rollback-result-${r.id}` });
  const go = h("button", { class: "danger", "data-testid": `rollback-go-${r.id}` }, "Sign and roll back");
  go.onclick = async () => {
    const problems = [];
    if (!reason.value.trim()) problems.push("give a reason");
    if (!file.files || !file.files[0]) problems.push("pick the signing key file");
    if (problems.length) {
      ctx.showError(new Error(`Cannot roll back yet: ${problems.join("; ")}.`));
      return;
    }
    go.disabled = true;
    log.replaceChildren();
    try {
      const done = await rollBack({
        rollout: r, file: file.files[0], reason: reason.value.trim(),
        progress: (text) => log.append(h("li", {}, text)),
      });
      ctx.toast(`Rolled back: ${done.bundle.version} (the content of ${r.previous_version}) goes to every agent.`);
      out.replaceChildren(
        h("p", { "data-testid": "rolled-back" }, `Every agent returns to the content of ${r.previous_version}, as ${done.bundle.version} (rollout #${done.rollout.id}):`),
        stagesView(done.stages));
    } catch (err) {
      log.append(h("li", { class: "warning" }, `Stopped here: ${err.message}`));
      ctx.showError(err);
      go.disabled = false;
    } finally {
      file.value = "";
    }
  };
  box.replaceChildren(
    h("h3", {}, `Roll back rollout #${r.id} (${r.bundle_version})`),
    h("p", { class: "muted" }, r.previous_version
      ? `Stops the rollout, signs the content of ${r.previous_version} again in this browser under a new, higher version (the key file is never uploaded) and rolls it out to every agent at once. The collector checks the signature and the two-person rule.`
      : "This rollout replaced no earlier bundle: there is nothing to return to."),
    h("div", { class: "form-row" }, reason, file, go),
    log, out);
}
