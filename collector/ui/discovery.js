// Discovery: names the catalogue does not know, seen contacted by AI tools and SDK processes
// or looking like inference APIs, with the hosts and processes behind them. "Draft entry"
// turns one into a catalogue entry to complete and publish the normal way.

import { api } from "./api.js";
import { h, link, table, card, fmtTime, fmtNum } from "./dom.js";

const REASON = { ai_process: "used by an AI tool", name_pattern: "looks like an inference API" };

function draftButton(ctx, c, out) {
  const show = async () => {
    try {
      const text = await api.discoveryDraft(c.name);
      out.replaceChildren(
        h("p", { class: "muted" }, `Save as rules/catalogue/<id>.toml, complete vendor, category, risk and a vendor source, then validate and publish.`),
        h("pre", { "data-testid": "discovery-draft" }, text));
    } catch (err) {
      ctx.showError(err);
    }
  };
  return h("button", { onclick: show, "data-testid": `discovery-draft-${c.name}` }, "Draft entry");
}

/** #/discovery */
export async function discoveryView(ctx) {
  const list = await api.discovery();
  const out = h("div", {});
  const rows = list.map((c) => [
    h("code", {}, c.name),
    c.reasons.map((r) => REASON[r] || r).join(", "),
    c.alongside.join(", "),
    h("span", {}, ...c.hosts.map((x) => link(`#/host/${encodeURIComponent(x)}`, x, "chip"))),
    c.processes.join(", "),
    fmtNum(c.hits),
    fmtTime(c.last_seen_ms),
    draftButton(ctx, c, out),
  ]);
  return [
    h("h1", {}, "Discovery"),
    card(`${list.length} unknown names`,
      h("p", { class: "muted" }, "Reported by agents at low volume: names their AI tool and SDK processes contacted, and names that look like inference APIs, which no catalogue entry covers."),
      table(["Name", "Why", "Alongside", "Hosts", "Processes", "Hits", "Last seen", ""], rows,
        { empty: "No unknown names reported.", testid: "discovery-table" }),
      out),
  ];
}
