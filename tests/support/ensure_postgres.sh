#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl) are available for the test suite's
# throwaway cluster (tests/support/postgres.py). Installs the Debian package when run as
# root; otherwise only reports. Never starts a system-wide PostgreSQL service.
set -euo pipefail

find_initdb() {
    if command -v initdb >/dev/null 2>&1; then
        command -v initdb
        return 0
    fi
    # Debian keeps the server binaries off PATH; pick the newest major version.
    local newest
    newest=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$newest" ]]; then
        echo "$newest"
        return 0
    fi
    return 1
}

if initdb_path=$(find_initdb); then
    echo "ensure_postgres: using $initdb_path"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure_postgres: PostgreSQL not installed and not root; install the 'postgresql' package (PostgreSQL tests will be skipped)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_postgres: PostgreSQL not installed and no apt-get; install PostgreSQL server binaries manually (PostgreSQL tests will be skipped)"
    exit 0
fi

# policy-rc.d exiting 101 tells invoke-rc.d not to start services, so the package's
# default cluster is not launched. Only add (and later remove) it if none exists already.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

echo "ensure_postgres: installing postgresql via apt-get"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null

if initdb_path=$(find_initdb); then
    echo "ensure_postgres: using $initdb_path"
else
    echo "ensure_postgres: installed postgresql but still no initdb found" >&2
    exit 1
fi
