#!/usr/bin/env bash
# usage: tcpdump for the byte-accounting test (tests/tests/usage_bytes.rs compares the
# agent's bytes_out/bytes_in with the TCP payload bytes of a capture).
set -euo pipefail
if ! command -v tcpdump >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq tcpdump
fi
