#!/usr/bin/env bash
# catalogue: the benign corpus that rules/tests/precision.rs runs the whole catalogue against.
#   - hstspreload 2025.1.1 from PyPI (BSD-3-Clause): Chromium's HSTS preload list, ~161,000
#     real registrable names (read from its hstspreload.bin)
#   - top-sites 1.1.222 from npm (MIT): the top 500 domains by linking root domains (Moz),
#     shipped in the package (--ignore-scripts: its postinstall would refresh it online)
# Both pinned, installed once under /opt/shadowai-test-corpus (override: SHADOWAI_CORPUS_DIR).
# Idempotent: installs only what is missing. About 2 MB; a few seconds.
set -euo pipefail
dir="${SHADOWAI_CORPUS_DIR:-/opt/shadowai-test-corpus}"

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ "${#need_apt[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

hsts="$dir/hstspreload-2025.1.1"
if [ ! -f "$hsts/hstspreload/hstspreload.bin" ]; then
    rm -rf "$hsts.tmp"
    python3 -m pip install --quiet --no-deps --no-compile --target "$hsts.tmp" "hstspreload==2025.1.1"
    rm -rf "$hsts" && mv "$hsts.tmp" "$hsts"
fi

top="$dir/top-sites-1.1.222"
if [ ! -f "$top/node_modules/top-sites/top-sites.json" ]; then
    rm -rf "$top.tmp" && mkdir -p "$top.tmp"
    npm install --silent --ignore-scripts --no-audit --no-fund --prefix "$top.tmp" "top-sites@1.1.222"
    rm -rf "$top" && mv "$top.tmp" "$top"
fi
