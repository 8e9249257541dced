#!/usr/bin/env bash
# naming: the naming tests run a real local caching resolver — Debian's dnsmasq binary
# (/usr/sbin/dnsmasq from dnsmasq-base, no service enabled) — in a test namespace.
set -euo pipefail
if [ ! -x /usr/sbin/dnsmasq ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends dnsmasq-base
fi
