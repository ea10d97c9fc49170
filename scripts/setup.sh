#!/usr/bin/env bash
# Creates .venv (where missing) and installs the package into it, with the extras named in
# $EXTRAS (default: test) and one ONNX Runtime build: the `gpu` extra (onnxruntime-gpu: CUDA and
# TensorRT providers) where `nvidia-smi -L` lists a GPU, the `cpu` extra (onnxruntime-openvino:
# OpenVINO provider) otherwise. ORT_BUILD=cpu or ORT_BUILD=gpu overrides the pick, as does naming
# cpu or gpu in $EXTRAS. Both builds provide the one `onnxruntime` module, so a build already in
# .venv that is not the one picked is taken out first (with the picked one, to reinstall it whole).
#
# uv installs (about 30 s where pip takes minutes); it does not read pip's configuration, so the
# indexes, find-links and constraints pip is set up with are passed on. Where uv cannot be had or
# fails, pip installs as before.
#
# Sourced (`. scripts/setup.sh`), it defines its functions and runs nothing: tests/test_setup.py
# calls them.
set -euo pipefail

#: The distributions that provide the onnxruntime module; one at most may be installed.
ORT_DISTRIBUTIONS="onnxruntime onnxruntime-openvino onnxruntime-gpu"

gpu_found() {  # nvidia-smi lists a GPU (a driver without one, or a broken one, lists none)
  command -v nvidia-smi >/dev/null 2>&1 || return 1
  local listed
  listed=$(timeout 60 nvidia-smi -L 2>/dev/null) || return 1
  grep -q '^GPU [0-9]' <<<"$listed"
}

ort_build() {  # prints "BUILD WHY...": BUILD is cpu or gpu; fails, saying why, on a contradiction
  local named="" extra list=${EXTRAS:-}
  for extra in ${list//,/ }; do
    case "$extra" in
      cpu | gpu)
        if [ -n "$named" ] && [ "$named" != "$extra" ]; then
          echo "EXTRAS names both cpu and gpu: the two ONNX Runtime builds cannot be installed together" >&2
          return 1
        fi
        named=$extra ;;
    esac
  done
  case "${ORT_BUILD:-}" in
    "") ;;
    cpu | gpu)
      if [ -n "$named" ] && [ "$named" != "$ORT_BUILD" ]; then
        echo "ORT_BUILD=$ORT_BUILD, but EXTRAS names the $named build" >&2
        return 1
      fi
      echo "$ORT_BUILD ORT_BUILD=$ORT_BUILD asks for it"
      return ;;
    *)
      echo "ORT_BUILD must be cpu or gpu, not '$ORT_BUILD'" >&2
      return 1 ;;
  esac
  if [ -n "$named" ]; then
    echo "$named EXTRAS names it"
  elif gpu_found; then
    echo "gpu nvidia-smi lists a GPU"
  else
    echo "cpu nvidia-smi lists no GPU"
  fi
}

with_build() {  # the extras $1 (comma-separated) with the build $2 in place of any named there
  local extras="" extra
  for extra in ${1//,/ }; do
    case "$extra" in cpu | gpu) ;; *) extras+="$extra," ;; esac
  done
  echo "$extras$2"
}

ort_package() {  # the distribution of build $1
  if [ "$1" = gpu ]; then echo onnxruntime-gpu; else echo onnxruntime-openvino; fi
}

other_builds() {  # the ONNX Runtime distributions that the interpreter $1 has, other than $2
  "$1" - "$2" $ORT_DISTRIBUTIONS <<'EOF'
import importlib.metadata
import re
import sys

wanted, builds = sys.argv[1], set(sys.argv[2:])
names = {re.sub(r"[-_.]+", "-", d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()}
print(" ".join(sorted((names & builds) - {wanted})))
EOF
}

pip_setting() {  # an environment variable PIP_X wins over pip's configuration files, as in pip
  local env_name="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')"
  if [ -n "${!env_name:-}" ]; then echo "${!env_name}"; return; fi
  sed -n "s/^global\.$1='\(.*\)'\$/\1/p" <<<"$pip_config"
}

install_with_uv() {  # $1: the extras
  "${pip[@]}" install --quiet uv || return 1
  local pip_config
  pip_config=$("${pip[@]}" config list 2>/dev/null || true)
  local args=(--python .venv/bin/python --quiet --index-strategy unsafe-best-match)
  local value
  value=$(pip_setting index-url); [ -n "$value" ] && args+=(--index-url "$value")
  for value in $(pip_setting extra-index-url); do args+=(--extra-index-url "$value"); done
  for value in $(pip_setting find-links); do args+=(--find-links "$value"); done
  for value in $(pip_setting constraint); do args+=(--constraint "$value"); done
  .venv/bin/uv pip install "${args[@]}" -e ".[$1]"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  local python=${PYTHON:-python3}
  EXTRAS=${EXTRAS:-test}
  local choice build extras package stale present
  choice=$(ort_build)
  build=${choice%% *}
  extras=$(with_build "$EXTRAS" "$build")
  package=$(ort_package "$build")
  echo "ONNX Runtime: the $build build ($package), as ${choice#* }; ORT_BUILD=cpu or ORT_BUILD=gpu chooses" >&2
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  pip=(.venv/bin/python -m pip)
  stale=$(other_builds .venv/bin/python "$package")
  if [ -n "$stale" ]; then
    # The picked build goes too, where present: the other one may have written over its files.
    present=$(other_builds .venv/bin/python "")
    echo "taking out $present: one onnxruntime module at a time" >&2
    # shellcheck disable=SC2086  # one word per distribution
    "${pip[@]}" uninstall --quiet -y $present
  fi
  if ! install_with_uv "$extras"; then
    echo "uv could not install the packages: installing with pip" >&2
    "${pip[@]}" install --quiet --upgrade pip
    "${pip[@]}" install --quiet -e ".[$extras]"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
