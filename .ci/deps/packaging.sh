#!/usr/bin/env bash
# packaging: what tests/tests/packages.rs needs — rpm (inspect the .rpm, install it into a
# scratch root), systemd-analyze (verify the units), setpriv (run the installed agent with
# only the unit's capabilities), man (systemd-analyze verify resolves the units' man: links),
# dpkg-deb (Debian base), and the packaging tools pinned:
# cargo-deb and cargo-generate-rpm (`cargo install --locked`, only when missing; ~5 min
# of compiling on a fresh 2-core machine).
set -euo pipefail
need=()
command -v rpm >/dev/null 2>&1 || need+=(rpm)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v gzip >/dev/null 2>&1 || need+=(gzip)
command -v man >/dev/null 2>&1 || need+=(man-db)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}"
fi
cargo deb --version >/dev/null 2>&1 || cargo install --locked cargo-deb@3.8.0
cargo generate-rpm --version >/dev/null 2>&1 || cargo install --locked cargo-generate-rpm@0.21.1
