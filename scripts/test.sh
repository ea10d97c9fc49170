#!/usr/bin/env bash
# Installs what the tests need (virtual environment, packages, a running PostgreSQL) and runs them,
# after `ruff check` (tuner/, api/, tests/, bench/), `ruff format --check` and `mypy` (tuner/ and api/), which
# must pass first (the bundled models are built meanwhile).
#
# The tests run in two passes: first every test not marked `serial`, spread over $TEST_WORKERS
# pytest-xdist workers (default 4: one test waits on its servers much of the time, and four keep
# two cores busy); then the `serial` ones (measurements that other tests' load would
# disturb), one at a time. TEST_WORKERS=0 runs everything in one pass. Arguments go to both passes.
set -euo pipefail
cd "$(dirname "$0")/.."
# The transformer extra: the minilm tests. The cpu build of ONNX Runtime (OpenVINO) on any machine unless ORT_BUILD
# says otherwise: tests measure its OpenVINO provider. ORT_BUILD=gpu on a GPU machine runs the `gpu` tests, and
# fails those that need OpenVINO.
ORT_BUILD=${ORT_BUILD:-cpu} EXTRAS=test,transformer bash scripts/setup.sh

# Bytecode: every test process (pytest's workers, each `tuner` command, Ray's workers, Triton's python-backend
# stubs) imports the same modules. Compiled once into one cache, a later process reads them instead of
# compiling them again (about 3 of a `tuner optimize`'s 13 CPU seconds), also where the environment sets
# PYTHONDONTWRITEBYTECODE (uv installs without bytecode). The cache is outside the source tree: no __pycache__
# is written beside a model repository's model.py, so the files a study or an export writes stay as they are.
export PYTHONPYCACHEPREFIX="$PWD/.venv/pycache"
unset PYTHONDONTWRITEBYTECODE

# The bundled models, once, before the workers start (they would otherwise all build them at once), built while
# lint and types are checked.
.venv/bin/tuner models prepare digits_forest text_detection text_recognition ocr_pipeline >/dev/null &
prepare=$!

# Lint and types first: seconds, where the tests take minutes. mypy takes its files and settings from pyproject.toml.
checks=0
{ .venv/bin/ruff check tuner api tests bench && .venv/bin/ruff format --check tuner api && .venv/bin/mypy; } || checks=$?
wait "$prepare"
[ "$checks" = 0 ] || exit "$checks"

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

workers=${TEST_WORKERS:-4}
if [ "$workers" = 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# pytest exits 5 when a pass selects no test: fine for one pass, a failure for both.
status=0
.venv/bin/python -m pytest -n "$workers" --dist loadgroup -m "not serial" "$@" || status=$?
serial=0
.venv/bin/python -m pytest -m serial "$@" || serial=$?
if [ "$status" = 5 ] && [ "$serial" = 5 ]; then
  echo "no test was selected" >&2
  exit 5
fi
[ "$status" = 5 ] && status=0
[ "$serial" = 5 ] && serial=0
[ "$status" != 0 ] && exit "$status"
exit "$serial"
