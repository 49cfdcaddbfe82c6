#!/usr/bin/env bash
# Make sure systemd-analyze is available for tests/test_systemd.py (the unit's security exposure
# and `systemd-analyze verify`; neither needs systemd running as PID 1).  Installs the Debian
# package `systemd` when run as root; otherwise only reports (those tests skip; in CI they fail).
# Installing it in a container starts nothing: without systemd as PID 1 there is nothing to
# enable services in.
set -euo pipefail

if command -v systemd-analyze >/dev/null 2>&1; then
    echo "ensure_systemd: using $(command -v systemd-analyze) ($(systemd-analyze --version | head -n 1))"
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_systemd: systemd-analyze missing and cannot apt-get it; install the 'systemd' package (unit tests will be skipped)"
    exit 0
fi
echo "ensure_systemd: installing systemd via apt-get"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
echo "ensure_systemd: using $(command -v systemd-analyze) ($(systemd-analyze --version | head -n 1))"
