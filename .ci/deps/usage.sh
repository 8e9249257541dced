#!/usr/bin/env bash
# usage: tcpdump for the byte-accounting test (tests/tests/usage_bytes.rs compares the
# agent's bytes_out/bytes_in with the TCP payload bytes of a capture), bpftool for the
# per-packet one (tests/tests/usage_bytes_dropped.rs reads the kernel's counters).
set -euo pipefail
need=()
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v bpftool >/dev/null 2>&1 || need+=(bpftool)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}"
fi
