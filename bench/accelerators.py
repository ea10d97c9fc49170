"""The shape of the study that motivated the tuner, on this machine's CPU, from one run.

    python bench/accelerators.py [--concurrency 10] [--window-ms 2000] [--out bench/results/accelerators.json]

text_detection (PP-OCRv4, 3x320x320) at concurrency 10: the default config, then dynamic
batching, two instances, both, then + OpenVINO, then + INT8; and INT8 on ONNX Runtime's own CPU
provider. For each: throughput, p95, the server's queue and compute time per request, and the
variant's accuracy against FP32 on rendered text pages. Also the time to build each variant.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.measure import (
    EngineSettings,
    SweepPlan,
)
from tuner.model import _bundled as models
from tuner.model import (
    build_variant,
    validation_inputs,
)
from tuner.model_info import read_model_info
from tuner.trial import TrialSpec
from tuner.workers import (
    WorkerSetup,
    cpu_cores,
)
from tuner.workers._worker import Worker

CORES = cpu_cores()
CONFIGS = [
    ("default (no batching, 1 instance)", {"max_batch_size": 4, "dynamic_batching": False, "instance_count": 1}),
    ("dynamic batching", {"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 2000, "instance_count": 1}),
    ("2 instances", {"max_batch_size": 4, "dynamic_batching": False, "instance_count": 2}),
    ("2 instances + dynamic batching", {"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 2000,
                                            "instance_count": 2}),
    ("+ OpenVINO", {"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 2000, "instance_count": 2,
                        "accelerator": "openvino"}),
    ("+ OpenVINO + INT8", {"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 2000, "instance_count": 2,
                               "accelerator": "openvino", "precision": "int8"}),
    ("2 instances + INT8 (CPU provider)", {"max_batch_size": 4, "dynamic_batching": False, "instance_count": 2,
                                               "precision": "int8"}),
]


def spec(knobs: dict) -> TrialSpec:
    knobs = {"max_queue_delay_us": 0, **knobs}
    return TrialSpec(cpu_threads=max(1, CORES // knobs["instance_count"]), **knobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--window-ms", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "accelerators.json")
    args = parser.parse_args()
    onnx = models.prepare("text_detection", ROOT / "model_repository")
    info = read_model_info(onnx)
    validation = validation_inputs("text_detection", info, count=8)
    rows, builds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp16", "int8"):
            started = time.perf_counter()
            build_variant(onnx, precision, Path(tmp) / "worker" / "variants", validation)
            builds[precision] = round(time.perf_counter() - started, 2)
            print(f"{precision} variant built in {builds[precision]} s", flush=True)
        setup = WorkerSetup(
            model_name="text_detection", model_path=onnx, model_info=info, workdir=Path(tmp) / "worker",
            sweep=SweepPlan(fixed=(args.concurrency,)), engine=EngineSettings(window_ms=args.window_ms),
            validation=validation,
        )
        with Worker(setup) as worker:
            for label, knobs in CONFIGS:
                outcome = worker.evaluate(spec(knobs))
                row = {"config": label, **knobs, "error": outcome.error}
                if outcome.points:
                    point = outcome.points[0]
                    compute = point.server_compute_input_ms + point.server_compute_infer_ms + point.server_compute_output_ms
                    outputs = (outcome.accuracy or {}).get("outputs", {})
                    cosine = min((o["cosine_similarity"] for o in outputs.values()), default=None)
                    row |= {
                        "throughput": round(point.throughput, 1),
                        "p95_ms": round(point.latency_p95_ms, 1),
                        "server_queue_ms": round(point.server_queue_ms, 1),
                        "server_compute_ms": round(compute, 1),
                        "stable": point.stable,
                        "accuracy_drop": round((outcome.accuracy or {}).get("accuracy_drop", 0.0), 4),
                        "cosine_similarity": None if cosine is None else round(cosine, 4),
                        "load_s": round(outcome.timings_s.get("load_s", 0.0), 2),
                    }
                print(json.dumps(row), flush=True)
                rows.append(row)
    result = {
        "machine": f"{platform.machine()}, {CORES} cores, Python {platform.python_version()}",
        "model": "text_detection (PP-OCRv4 det, 3x320x320)",
        "concurrency": args.concurrency,
        "window_ms": args.window_ms,
        "variant_build_s": builds,
        "configs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
