#!/usr/bin/env bash
# Refresh the pinned dependency sets from pyproject.toml (hashes included):
#   requirements/deploy.txt  the runtime dependencies: what a deployment installs (README,
#                            "Install under /opt")
#   requirements/test.txt    the same runtime pins plus the `test` extra: what tests/run.sh
#                            (and so CI) installs — what is tested is what is deployed
# Both are universal (one file for every Python >= 3.11 and platform, with markers), made by uv
# (from PyPI, fetched into a throwaway virtualenv when not on PATH).
#
#   bash requirements/lock.sh                          after editing pyproject.toml: keeps every
#                                                      pin it can, resolves only what changed
#   bash requirements/lock.sh --upgrade                everything to the newest allowed versions
#   bash requirements/lock.sh --upgrade-package NAME   one package (repeatable)
#
# Then run the tests (bash tests/run.sh installs exactly these pins) and commit the three files.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
UV=${UV:-}
if [[ -z "$UV" ]]; then
    if command -v uv >/dev/null; then
        UV=uv
    else
        tool=$(mktemp -d)
        trap 'rm -rf "$tool"' EXIT
        python3 -m venv "$tool"
        "$tool/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
        UV="$tool/bin/uv"
    fi
fi

common=(--universal --python-version 3.11 --generate-hashes --quiet
        --custom-compile-command "bash requirements/lock.sh")
"$UV" pip compile pyproject.toml "${common[@]}" -o requirements/deploy.txt "$@"
"$UV" pip compile pyproject.toml --extra test --constraint requirements/deploy.txt \
    "${common[@]}" -o requirements/test.txt "$@"
echo "requirements/deploy.txt and requirements/test.txt are up to date"
