#!/usr/bin/env python3
"""Index which public AI-tool lists name which catalogue names -> tools/ai-lists-index.tsv.

Usage: python3 rules/tools/ai_lists_index.py MIRROR_DIR
MIRROR_DIR holds bare git snapshots named `<owner>+<repo>/repo` (the search tool's `fetch`).
Each list in LISTS is read at its pinned commit; every https URL (markdown lists) or host line
(hosts files) is matched against the domains and hosts of the generated catalogue, and each
match is written as one row: catalogue name, the list citation, and where the list names it
(the host it links and the heading above it). gen_catalogue.py cites these rows for entries
that have no other source; rules/tests/sources.rs checks every such citation against this
index. Only the rows are kept, never the lists themselves.
"""
import pathlib
import re
import subprocess
import sys
import tomllib

HERE = pathlib.Path(__file__).resolve().parent
CATALOGUE = HERE.parent / "catalogue"
OUT = HERE / "ai-lists-index.tsv"

# (owner/repo, commit, path, licence, kind). Order is preference: the generator cites the
# first two lists naming an entry, public-domain / permissive licences first.
LISTS = [
    ("steven2358/awesome-generative-ai", "63d863418c0a6db3db92cacf150a72f76933e15c", "README.md", "CC0-1.0", "md"),
    ("filipecalegario/awesome-generative-ai", "822bda6cb154727ff15cc0ad51bfddac2d6d5328", "README.md", "CC0-1.0", "md"),
    ("mahseema/awesome-ai-tools", "b55186e97bc01635d637f544431700f331077944", "README.md", "MIT", "md"),
    ("mahseema/awesome-ai-tools", "b55186e97bc01635d637f544431700f331077944", "IMAGE.md", "MIT", "md"),
    ("eudk/awesome-ai-tools", "626be08c52c330c8aadf000e7ad3046d16481904", "README.md", "CC0-1.0", "md"),
    ("felladrin/awesome-ai-web-search", "0d8b4e91721ca21ebafdafb01023d28c91690934", "README.md", "CC0-1.0", "md"),
    ("yousefebrahimi0/1000-AI-collection-tools", "71db7ebce4d49ed617de94ae3c511441efed8d82", "README.md", "CC0-1.0", "md"),
    ("e2b-dev/awesome-ai-agents", "6af02e9230dae8a155fe6e49526dd309c04120b7", "README.md", "CC-BY-NC-SA-4.0", "md"),
    ("laylavish/uBlockOrigin-HUGE-AI-Blocklist", "9bb188e2701138e03f73bacebd6b19b181ca0012", "noai_hosts.txt", "CC0-1.0", "hosts"),
    ("ikaijua/Awesome-AITools", "25ffc94fbd1288ab9c05a07a9e0de72276f8bd06", "README.md", "no licence stated", "md"),
    ("jamesmurdza/awesome-ai-devtools", "d7be77ffe8ff6dfac5a369d4ea93f27e80fc6768", "README.md", "no licence stated", "md"),
]
URL = re.compile(r"https?://([A-Za-z0-9.-]+)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def citation(repo, commit, path, licence):
    return f"github:{repo}@{commit[:8]}/{path} ({licence})"


def catalogue_names():
    """(name, is_domain) for every generated entry's domains and hosts."""
    out = []
    for f in sorted(CATALOGUE.glob("*.toml")):
        if f.name.startswith("_"):
            continue
        d = tomllib.loads(f.read_text())
        out += [(n.lower(), True) for n in d.get("domains", [])]
        out += [(n.lower(), False) for n in d.get("hosts", [])]
    return out


def covers(name, is_domain, host):
    return host == name or (is_domain and host.endswith("." + name))


def read(mirror, repo, commit, path):
    git = mirror / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "-C", str(git), "show", f"{commit}:{path}"], check=True,
                          capture_output=True, text=True, errors="replace").stdout


def mentions(text, kind):
    """(host, where) for each host the list names, in order."""
    heading = "the top of the list"
    for line in text.splitlines():
        if kind == "hosts":
            f = line.split()
            if len(f) == 2 and not line.startswith("#"):
                yield f[1].lower(), "in its hosts file"
            continue
        m = HEADING.match(line)
        if m:
            title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
            heading = re.sub(r"[\[\]`*|\t]", "", title).strip() or heading
            continue
        for host in URL.findall(line):
            yield host.lower().rstrip("."), f"under `{heading}`"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    mirror = pathlib.Path(sys.argv[1])
    names = catalogue_names()
    rows = []
    for repo, commit, path, licence, kind in LISTS:
        cite = citation(repo, commit, path, licence)
        seen = set()
        for host, where in mentions(read(mirror, repo, commit, path), kind):
            for name, is_domain in names:
                if (name, cite) not in seen and covers(name, is_domain, host):
                    seen.add((name, cite))
                    what = "lists" if kind == "hosts" else "links"
                    rows.append((name, cite, f"{what} {host} {where}"))
    rows.sort()
    header = ["# Which pinned public AI-tool lists name which catalogue names (tools/ai_lists_index.py).",
              "# name<TAB>list citation<TAB>where the list names it"]
    for repo, commit, path, licence, _ in LISTS:
        header.append(f"# list {citation(repo, commit, path, licence)}")
    OUT.write_text("\n".join(header + ["\t".join(r) for r in rows]) + "\n")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
