#!/usr/bin/env bash
# Debian's nginx for tests/test_nginx.py (the shipped deploy/nginx example in front of a real
# daemon, started by the test on unprivileged ports).  Installs nginx-light when run as root;
# the package's own service is not started (policy-rc.d), and never left running.
set -euo pipefail

if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
    echo "ensure_nginx: using $(command -v nginx || echo /usr/sbin/nginx)"
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_nginx: nginx missing and cannot apt-get it (nginx tests will be skipped)"
    exit 0
fi
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    added_policy=1
fi
trap 'if [[ $added_policy -eq 1 ]]; then rm -f "$policy"; fi' EXIT
install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
}
if ! install; then
    apt-get update -qq >/dev/null
    install
fi
# The package may have started its default server anyway (no systemd as PID 1): stop it.
pkill -x nginx 2>/dev/null || true
echo "ensure_nginx: using $(command -v nginx || echo /usr/sbin/nginx)"
