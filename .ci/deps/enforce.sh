#!/usr/bin/env bash
# enforce: prerequisites of the enforcement tests (tests/tests/enforce_*.rs), idempotent:
# - aioquic 1.7.2 (PyPI, pinned): the real QUIC client and server;
# - /usr/bin/python3 (Debian's python3): the Python client run as another user (setpriv)
#   must not depend on an interpreter under root's home;
# - iproute2, curl, setpriv (util-linux): namespaces, clients, scoped users.
set -euo pipefail
need=()
[ -x /usr/bin/python3 ] || need+=(python3)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}"
fi
if ! python3 -c 'import aioquic, sys; sys.exit(aioquic.__version__ != "1.7.2")' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'aioquic==1.7.2' \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'aioquic==1.7.2'
fi
