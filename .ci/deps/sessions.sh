#!/usr/bin/env bash
# sessions: the real AI agent CLI and MCP server that tests/tests/sessions_*.rs run.
#   - @google/gemini-cli 0.61.0 (Apache-2.0): Google's coding agent, one bundled script
#     (the stdio MCP server it starts, `npx -y @modelcontextprotocol/server-filesystem`, is
#     deliberately not installed: npx must ask the registry for it, as on a user's machine)
#   - @modelcontextprotocol/server-everything 2026.8.31: the reference server with a
#     Streamable HTTP transport, run standalone (sessions_mcp_http.rs)
# All pinned, installed once under /opt/shadowai-test-agents (override: SHADOWAI_AGENTS_DIR)
# with --ignore-scripts. The tests run them inside network namespaces without credentials:
# they only ever reach addresses the test created. Idempotent; ≈60 MB, under a minute.
set -euo pipefail
dir="${SHADOWAI_AGENTS_DIR:-/opt/shadowai-test-agents}"

if ! command -v npm >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm
fi

# gemini-cli needs Node.js 20 or newer (Debian 12's own nodejs is 18): say so plainly
# instead of letting the tests fail inside the CLI.
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
    echo "sessions.sh: Node.js >= 20 is needed for @google/gemini-cli (found: $(node --version 2>/dev/null || echo none))" >&2
    exit 1
fi

pkgs=("@google/gemini-cli@0.61.0" "@modelcontextprotocol/server-everything@2026.8.31")
stamp="$dir/.installed"
want="${pkgs[*]}"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    npm install --silent --ignore-scripts --no-audit --no-fund --prefix "$dir.tmp" "${pkgs[@]}"
    echo "$want" >"$dir.tmp/.installed"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
