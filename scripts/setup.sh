#!/usr/bin/env bash
# Creates .venv (where missing) and installs the package into it, with the extras named in
# $EXTRAS (default: test).
#
# uv installs (about 30 s where pip takes minutes); it does not read pip's configuration, so the
# indexes, find-links and constraints pip is set up with are passed on. Where uv cannot be had or
# fails, pip installs as before.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-test}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip)

pip_setting() {  # an environment variable PIP_X wins over pip's configuration files, as in pip
  local env_name="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')"
  if [ -n "${!env_name:-}" ]; then echo "${!env_name}"; return; fi
  sed -n "s/^global\.$1='\(.*\)'\$/\1/p" <<<"$pip_config"
}

install_with_uv() {
  "${pip[@]}" install --quiet uv || return 1
  local pip_config
  pip_config=$("${pip[@]}" config list 2>/dev/null || true)
  local args=(--python .venv/bin/python --quiet --index-strategy unsafe-best-match)
  local value
  value=$(pip_setting index-url); [ -n "$value" ] && args+=(--index-url "$value")
  for value in $(pip_setting extra-index-url); do args+=(--extra-index-url "$value"); done
  for value in $(pip_setting find-links); do args+=(--find-links "$value"); done
  for value in $(pip_setting constraint); do args+=(--constraint "$value"); done
  .venv/bin/uv pip install "${args[@]}" -e ".[$EXTRAS]"
}

if ! install_with_uv; then
  echo "uv could not install the packages: installing with pip" >&2
  "${pip[@]}" install --quiet --upgrade pip
  "${pip[@]}" install --quiet -e ".[$EXTRAS]"
fi
