#!/usr/bin/env bash
# Prerequisites of agent/decode's tests (idempotent):
# - tcpdump + iproute2: the namespace capture test records real client traffic on a veth;
# - curl, openssl, python3: real TLS clients and the local TLS server;
# - aioquic (PyPI): a real QUIC client/server for the QUIC capture test.
set -euo pipefail
need=()
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}"
fi
if ! python3 -c 'import aioquic' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check aioquic \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages aioquic
fi
