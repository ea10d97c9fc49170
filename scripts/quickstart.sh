#!/usr/bin/env bash
# Sets up a fresh clone and runs a short real study: the PP-OCRv4 text-detection model on the
# embedded Triton server, stored in ./tuner.db.
set -euo pipefail
cd "$(dirname "$0")/.."
# The study is the CPU one, OpenVINO among its accelerators: the cpu build of ONNX Runtime on any machine
# (scripts/setup.sh alone picks the gpu build where nvidia-smi lists a GPU).
ORT_BUILD=${ORT_BUILD:-cpu} bash scripts/setup.sh
.venv/bin/tuner models prepare
.venv/bin/tuner optimize search_spaces/text_detection_cpu.yaml "$@"
