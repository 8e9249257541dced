#!/usr/bin/env bash
# collector-ui: what the web UI's browser test needs.
#   - Debian's chromium + chromium-driver (the browser; never a downloaded build)
#   - playwright-core from the npm registry, pinned by tests/ui/package-lock.json
# Idempotent: installs only what is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ "${#need_apt[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${need_apt[@]}"
fi

if [ -f "$here/tests/ui/package.json" ] && [ ! -d "$here/tests/ui/node_modules/playwright-core" ]; then
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing, but be explicit.
    (cd "$here/tests/ui" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
