#!/usr/bin/env bash
# collector: the PostgreSQL half of the store test suite needs Debian's PostgreSQL server
# binaries (initdb, pg_ctl under /usr/lib/postgresql/*/bin). The test starts its own
# throwaway server in a temp dir on a loopback port (as the `postgres` user when run as
# root); nothing here starts a service. Idempotent.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends postgresql
fi
# Debian's package creates the `postgres` user; make sure it exists even on odd images.
id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
