#!/usr/bin/env bash
# Sets up a fresh clone and runs a short real study: the PP-OCRv4 text-detection model on the
# embedded Triton server, stored in ./tuner.db.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/tuner models prepare
.venv/bin/tuner optimize search_spaces/text_detection_cpu.yaml "$@"
