#!/usr/bin/env python3
"""Generate rules/catalogue/<id>.toml from the curated table tools/services.txt.

Usage: python3 rules/tools/gen_catalogue.py   (from the repository root or anywhere)
The TOML files are committed; `shadowai rules validate` checks them. Re-running the
generator overwrites every generated file and deletes generated files whose id left the table
(files without the generated header are left alone).
"""
import ipaddress
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "catalogue"
CHECKED = "2026-11-22"  # the first import: rows without checked= were read that day
V2FLY_READ = "2026-11-22"  # the day the v2fly lists (commit c975ccef) were read
LISTS_READ = "2026-11-26"  # the day models.dev (f3fc6922) and LiteLLM 1.110.2 were read
# The day every data file of v2fly c975ccef (not only the category-ai lists) was read into
# tools/v2fly-index.tsv by tools/v2fly_index.py.
V2FLY_INDEX_READ = "2026-11-26"
# The day the pinned AI-tool lists of tools/ai_lists_index.py were read into tools/ai-lists-index.tsv.
AI_LISTS_READ = "2026-11-26"
AI_LISTS_CITED = 2  # at most this many lists per entry, in the index's order of preference
HEADER = "# Generated from rules/tools/services.txt by rules/tools/gen_catalogue.py; edit the table, not this file.\n"
V2FLY = "v2fly:domain-list-community@c975ccef/data/{} (MIT)"
LITELLM = "pypi:litellm@{}/litellm/constants.py#openai_compatible_endpoints (MIT)"
MODELS_DEV = "models.dev:anomalyco/models.dev@f3fc6922/providers/{}/provider.toml (MIT)"

PROFILES = {
    # trains_on_user_data, retention, enterprise_controls
    "consumer": ("opt_out", "extended", ["sso", "audit_log", "dpa"]),
    "consumer_only": ("yes", "extended", []),
    "api": ("no", "limited", ["sso", "audit_log", "dpa", "zero_retention"]),
    "enterprise": ("no", "limited", ["sso", "scim", "audit_log", "dpa", "data_residency"]),
    "cn": ("unknown", "unknown", []),
    "saas": ("unknown", "unknown", []),
    "hub": ("no", "extended", []),
    "local": ("no", "none", []),
}
RISK_NOTE = {
    "consumer": "Consumer tiers may use conversations for training unless the user opts out; business tiers offer SSO, audit logs and a DPA.",
    "consumer_only": "No business tier with data controls known; conversations may be used for training.",
    "api": "API/business terms: no training on customer data, bounded retention, zero-retention options.",
    "enterprise": "Enterprise cloud service under the organisation's contract: no training on customer data.",
    "cn": "Data-use terms not verified for this catalogue; provider under PRC jurisdiction.",
    "saas": "Data-use terms not verified for this catalogue (attributes unknown).",
    "hub": "Hosts models and files; does not train on uploads by default; public by default.",
    "local": "Runs on the organisation's own host; data stays local unless the runtime is exposed.",
}


def q(s):
    return json.dumps(s, ensure_ascii=False)


def arr(items):
    return "[" + ", ".join(q(i) for i in items) + "]"


def instantiate(glob):
    out = []
    for label in glob.split("."):
        if label == "*":
            out.append("us-east-1" if "amazonaws" in glob else "example")
        elif label.endswith("*"):
            out.append(label[:-1] + "x1")
        elif label.startswith("*"):
            out.append("us-central1" + label[1:] if "googleapis" in glob else "contoso" + label[1:])
        else:
            out.append(label)
    return ".".join(out)


def parse(path):
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("|")
        if len(f) not in (7, 8):
            sys.exit(f"{path}:{n}: expected 7 or 8 fields, got {len(f)}")
        rows.append((n, f + [""] * (8 - len(f))))
    return rows


def load_risk():
    """rules/tools/risk.txt: researched risk factors per service (overrides the profile)."""
    out = {}
    path = HERE / "risk.txt"
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("|")
        if len(f) != 7:
            sys.exit(f"{path}:{n}: expected 7 fields, got {len(f)}")
        sid, plan, factors, certs, tiers, evidence, checked = (x.strip() for x in f)
        trains, retention, controls = factors.split("/")
        tier_rows = []
        for t in tiers.split():
            tp, _, tf = t.partition(":")
            tt, tr, tc = tf.split("/")
            tier_rows.append((tp, tt, tr, [x for x in tc.split(",") if x]))
        out[sid] = dict(plan=plan, trains=trains, retention=retention,
                        controls=[x for x in controls.split(",") if x],
                        certs=[x for x in certs.split(",") if x], tiers=tier_rows,
                        evidence=evidence.split(), checked=checked, line=n)
    return out


def load_sources():
    """rules/tools/sources.txt: further sources per service, each with the day it was read."""
    out = {}
    path = HERE / "sources.txt"
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = [x.strip() for x in line.split("|")]
        if len(f) not in (3, 4):
            sys.exit(f"{path}:{n}: expected `id | url-or-list | checked [| note]`, got {len(f)} fields")
        sid, ref, checked = f[:3]
        note = f[3] if len(f) == 4 else ""
        if len(checked) != 10 or checked[4] != "-" or checked[7] != "-":
            sys.exit(f"{path}:{n}: checked must be YYYY-MM-DD, got {checked!r}")
        kind = "url" if ref.startswith("https://") else "list"
        out.setdefault(sid, []).append((kind, ref, checked, note, n))
    return out


def load_v2fly_index():
    """rules/tools/v2fly-index.tsv: catalogue name -> [(v2fly data file, rule naming it)]."""
    out = {}
    for n, line in enumerate((HERE / "v2fly-index.tsv").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("\t")
        if len(f) != 3:
            sys.exit(f"v2fly-index.tsv:{n}: expected name<TAB>file<TAB>rule")
        out.setdefault(f[0], []).append((f[1], f[2]))
    return out


def load_ai_lists_index():
    """tools/ai-lists-index.tsv: catalogue name -> [(list citation, where the list names it)]."""
    path = HERE / "ai-lists-index.tsv"
    order, out = [], {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("# list "):
            order.append(line[len("# list "):])
            continue
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("\t")
        if len(f) != 3:
            sys.exit(f"ai-lists-index.tsv:{n}: expected name<TAB>list<TAB>where")
        out.setdefault(f[0], []).append((f[1], f[2]))
    return order, out


def ai_list_sources(names, index):
    """Up to AI_LISTS_CITED pinned AI-tool lists that name one of an entry's domains or hosts."""
    order, rows = index
    found = {}
    for name in names:
        for cite, where in rows.get(name.lower(), []):
            found.setdefault(cite, where)
    best = sorted(found, key=order.index)[:AI_LISTS_CITED]
    return [("list", c, AI_LISTS_READ, found[c]) for c in best]


def v2fly_sources(names, index):
    """v2fly data files (pinned at c975ccef) that name one of an entry's domains or hosts."""
    out = {}
    for name in names:
        for file, rule in index.get(name.lower(), []):
            bare = rule.split(":", 1)[-1]
            what = rule if bare == name.lower() else f"{rule}, the parent of {name}"
            out.setdefault(file, f"names {what}")
    return [("list", V2FLY.format(f), V2FLY_INDEX_READ, note) for f, note in out.items()]


def source_lines(sources):
    out = []
    for kind, ref, checked, note in sources:
        out += ["", "[[provenance.sources]]", f"{kind} = {q(ref)}", f"checked = {checked}"]
        if note:
            out.append(f"note = {q(note)}")
    return out


def main():
    table = HERE / "services.txt"
    risk_table = load_risk()
    extra_sources = load_sources()
    v2fly_index = load_v2fly_index()
    ai_lists = load_ai_lists_index()
    top = {l.strip() for l in (HERE / "top-services.txt").read_text().splitlines()
           if l.strip() and not l.startswith("#")}
    unsourced = []
    seen = set()
    written = set()
    for n, (sid, name, vendor, cat, jur, profile, patterns, extra) in parse(table):
        if sid in seen:
            sys.exit(f"{table}:{n}: duplicate id {sid}")
        seen.add(sid)
        if profile not in PROFILES:
            sys.exit(f"{table}:{n}: unknown profile {profile}")
        domains, hosts, sni = [], [], []
        for p in patterns.split():
            if "*" in p:
                sni.append(p)
            elif p.startswith("="):
                hosts.append(p[1:])
            else:
                domains.append(p)
        sources, cidrs, ports, procs, nomatch, notes, tenants = [], [], [], [], [], [], []
        envs, extra_match = [], []
        checked = CHECKED
        alone = False
        trains, retention, controls = PROFILES[profile]
        for item in filter(None, (x.strip() for x in extra.split(";"))):
            key, _, val = item.partition("=")
            if (" " in key or not val) and key != "alone" and notes:
                notes[-1] += "; " + item  # a ';' inside a note
                continue
            if key == "v2fly":
                # Re-checked on V2FLY_INDEX_READ when the index of every data file (same
                # commit) has the file naming one of the entry's names; else the first read.
                names = {n.lower() for n in domains + hosts}
                rechecked = any(f == val for n in names for f, _ in v2fly_index.get(n, []))
                sources.append(("list", V2FLY.format(val), V2FLY_INDEX_READ if rechecked else V2FLY_READ, ""))
            elif key == "src":
                sources.append(("url", val, None, ""))
            elif key == "cidr":
                cidrs.append(val)
            elif key == "port":
                ports.append(int(val))
            elif key == "proc":
                procs.append(val)
            elif key == "alone":
                alone = True
            elif key == "tenant":
                tenants.append(val)
            elif key == "note":
                notes.append(val)
            elif key == "nomatch":
                nomatch.append(val)
            elif key == "match":
                extra_match.append(val)
            elif key == "env":
                envs.append(val)
            elif key == "checked":
                checked = val
            elif key == "modelsdev":
                sources.append(("list", MODELS_DEV.format(val), LISTS_READ, ""))
            elif key == "litellm":
                sources.append(("list", LITELLM.format(val), LISTS_READ, ""))
            elif key == "risk":
                trains, retention, c = val.split("/")
                controls = [x for x in c.split(",") if x]
            else:
                sys.exit(f"{table}:{n}: unknown extra key {key}")
        # src= URLs on a row were read on the row's checked date.
        sources = [(k, r, c or checked, nt) for k, r, c, nt in sources]
        for kind, ref, c, nt, _ in extra_sources.pop(sid, []):
            sources.append((kind, ref, c, nt))
        sources = list(dict.fromkeys(sources))
        if not sources:
            # A public list that names the entry's domain beats the vendor's own home page.
            sources += v2fly_sources(domains + hosts, v2fly_index)
        if not sources:
            # Independent public lists of AI tools that name the entry's domain (pinned).
            sources += ai_list_sources(domains + hosts, ai_lists)
        first = (domains + hosts)[:1]
        if first and not sources:
            sources.append(("url", f"https://{first[0]}/", checked, "vendor-operated host"))
        if not sources:
            unsourced.append(f"{table}:{n}: {sid} has no source: add src= or a line in sources.txt")
        # Examples: every pattern's own name, a subdomain of the first suffix, CIDR and
        # runtime items; label-boundary and shared-host negatives.
        match = list(domains[:3]) + hosts[:3] + [instantiate(g) for g in sni[:3]]
        if domains:
            match.append("www." + domains[0] + ".")
            match.append(domains[0].upper())
        for c in cidrs:
            net = ipaddress.ip_network(c)
            match.append("ip:" + str(net.network_address + 1))
        if alone:
            match.append(f"port:{ports[0]}")
        for p in procs[:2]:
            match.append("process:" + p)
        if procs:
            match.append("process:/usr/local/bin/" + procs[0])
        no_match = []
        for d in domains[:1] + hosts[:1]:
            no_match.append("not" + d)
            no_match.append(d + ".example.net")
        for g in sni[:1]:
            no_match.append(instantiate(g).replace(".", "-", 1) + ".example.net")
        if procs or ports:
            no_match.append("process:bash")
        no_match = list(dict.fromkeys(no_match + nomatch))
        match = list(dict.fromkeys(match + extra_match))
        lines = [HEADER, f"id = {q(sid)}", f"name = {q(name)}", f"vendor = {q(vendor)}", f"category = {q(cat)}"]
        desc = f"{name} ({vendor}): {cat.replace('_', ' ')}."
        lines.append(f"description = {q(desc)}")
        if domains:
            lines.append(f"domains = {arr(domains)}")
        if hosts:
            lines.append(f"hosts = {arr(hosts)}")
        if sni:
            lines.append(f"sni = {arr(sni)}")
        if cidrs:
            lines.append(f"cidrs = {arr(cidrs)}")
        if ports:
            lines.append(f"ports = [{', '.join(str(p) for p in ports)}]")
        if alone:
            lines.append("port_alone = true")
        if procs:
            lines.append(f"process_hints = {arr(procs)}")
        if envs:
            lines.append(f"api_key_env = {arr(envs)}")
        researched = risk_table.pop(sid, None)
        if sid in top and not researched:
            # A category profile is not evidence: the most-used services say `unknown`
            # until their terms are researched (tools/risk.txt).
            trains, retention, controls = "unknown", "unknown", []
            notes.append("Risk factors not yet researched for this most-used service.")
        lines += ["", "[risk]"]
        if researched:
            trains, retention, controls = researched["trains"], researched["retention"], researched["controls"]
            lines.append(f"plan = {q(researched['plan'])}")
        lines += [f"trains_on_user_data = {q(trains)}", f"retention = {q(retention)}",
                  f"jurisdiction = {q(jur)}", f"enterprise_controls = {arr(controls)}"]
        if researched:
            if researched["certs"]:
                lines.append(f"certifications = {arr(researched['certs'])}")
            lines.append(f"evidence = {arr(researched['evidence'])}")
            for tp, tt, tr, tc in researched["tiers"]:
                lines += ["", "[[risk.tiers]]", f"plan = {q(tp)}", f"trains_on_user_data = {q(tt)}",
                          f"retention = {q(tr)}", f"enterprise_controls = {arr(tc)}"]
            for url in researched["evidence"]:
                if ("url", url) not in {(k, r) for k, r, _, _ in sources}:
                    sources.append(("url", url, researched["checked"], "risk evidence"))
            if sources and sources[0][3] == "vendor-operated host":
                sources.pop(0)  # a real page now backs the entry
        tenant_note = next((x for x in notes if "tenant" in x.lower() or "workspace" in x.lower()
                            or "left-most" in x or "account" in x.lower() or "region" in x.lower()), None)
        for t in tenants:
            lines += ["", "[[tenant_hints]]", f"suffix = {q(t)}", f"note = {q(tenant_note or 'left-most label names the tenant')}"]
        if tenant_note and not tenants:
            lines += ["", "[[tenant_hints]]", f"note = {q(tenant_note)}"]
        other = [x for x in notes if x != tenant_note]
        if ports or procs:
            what = ", ".join([f"default port {p}" for p in ports] + [f"executable `{p}`" for p in procs])
            other.append(f"Runtime identified by {what}.")
        prov_note = " ".join(other + ([] if researched or sid in top else [RISK_NOTE[profile]]))
        lines += ["", "[examples]", f"match = {arr(match)}", f"no_match = {arr(no_match)}"]
        lines += ["", "[provenance]"] + ([f"note = {q(prov_note)}"] if prov_note else []) + source_lines(sources) + [""]
        (OUT / f"{sid}.toml").write_text("\n".join(lines))
        written.add(f"{sid}.toml")
    if risk_table:
        sys.exit(f"risk.txt lists unknown services: {sorted(risk_table)}")
    if unsourced:
        sys.exit("\n".join(unsourced))
    if extra_sources:
        sys.exit(f"sources.txt lists unknown services: {sorted(extra_sources)}")
    for f in OUT.glob("*.toml"):
        if f.name not in written and not f.name.startswith("_") and f.read_text().startswith(HEADER):
            f.unlink()
    print(f"wrote {len(written)} services to {OUT}")


if __name__ == "__main__":
    main()
