#!/usr/bin/env bash
# Make sure the browser tests have what they drive and decode: Debian's chromium (Playwright's
# own browser download is not reachable from our machines) and zbarimg (zbar-tools) to decode
# QR codes from screenshots and stamped photos.  Installs the Debian packages when run as root;
# otherwise only reports (those tests skip; in CI they fail).
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v zbarimg >/dev/null 2>&1 || missing+=(zbar-tools)
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "ensure_browser: using $(command -v chromium) and $(command -v zbarimg)"
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_browser: missing ${missing[*]} and cannot apt-get them (browser tests will be skipped)"
    exit 0
fi
echo "ensure_browser: installing ${missing[*]}"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "ensure_browser: using $(command -v chromium) and $(command -v zbarimg)"
