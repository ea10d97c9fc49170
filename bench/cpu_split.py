"""Where the cores go while a served config is measured, next to raw ONNX Runtime in the same layout.

    python bench/cpu_split.py [--repeats 2] [--seconds 6] [--max-batch 8] [--batching] [--concurrency 4]
                              [--raw-batch 1] [--precision fp32] [--accelerator openvino]
                              [--out bench/results/cpu_split.json]

On the PP-OCRv4 text detector, by default FP32 on OpenVINO (``--precision``, ``--accelerator``: another variant,
built as a study builds it), 2 instances of 1 thread, by default max batch size 8
without the batcher (the raw ceiling's layout in bench/model_analyzer.py on 2 cores), the embedded server is
measured by perf_analyzer at concurrency 4 (`--concurrency`), with the tensors over gRPC and through shared memory
(``load.shared_memory``). While it measures, the CPU time of the server's own process (Triton's core:
its gRPC, scheduling and backend threads), of each python-backend stub (one per instance: ONNX Runtime
runs there), of perf_analyzer and the machine's idle time are read over ``--seconds``, as shares of one
core. Then raw ONNX Runtime runs the same two sessions without a server (bench/model_analyzer.py's
driver) on batches of ``--raw-batch``. ``--batching`` turns Triton's dynamic batcher on (no queue delay), so
that the stubs are handed several requests at once. Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from shared_memory import MODEL, raw_side, served

from tuner.measure import EngineSettings, PerfAnalyzer, output_region_bytes, warm_up
from tuner.model import _bundled as models
from tuner.model import build_variant, validation_inputs
from tuner.model_info import read_model_info
from tuner.trial import TrialSpec
from tuner.triton import cpu_model, versions
from tuner.workers import cpu_cores


def _seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _split(server_pid: int, settle_s: float, seconds: float, into: dict[str, Any]) -> None:
    """Reads, after ``settle_s``, each process's share of a core over ``seconds`` into ``into``."""
    time.sleep(settle_s)
    server = psutil.Process(server_pid)
    parts = {"server": [server], "stubs": server.children(recursive=True),
             "perf_analyzer": [p for p in psutil.process_iter(["name"]) if p.info["name"] == "perf_analyzer"]}
    before = {k: [_seconds(p) for p in ps] for k, ps in parts.items()}
    idle, started = psutil.cpu_times().idle, time.monotonic()
    time.sleep(seconds)
    after = {k: [_seconds(p) for p in ps] for k, ps in parts.items()}
    elapsed = time.monotonic() - started
    for k in parts:
        into[f"{k}_core_pct"] = [round(100 * (b - a) / elapsed, 1) for a, b in zip(before[k], after[k])]
    into["idle_core_pct"] = round(100 * (psutil.cpu_times().idle - idle) / elapsed, 1)


def measure(onnx: Path, spec: TrialSpec, concurrency: int, mode: str, seconds: float) -> dict[str, Any]:
    """One measurement of the served config with the tensors sent as ``mode`` says, and its CPU split."""
    with tempfile.TemporaryDirectory() as folder, served(Path(folder), MODEL, onnx, spec) as (server, info, probe):
        warm_up(server.http_url, MODEL, info, 8, 2, server.access)
        settings = EngineSettings(window_ms=int((seconds + 6) * 1000), max_windows=1, shared_memory=mode,
                                  output_bytes=output_region_bytes(info) if mode != "none" else 0)
        engine = PerfAnalyzer(server.grpc_url, Path(folder) / "perf", settings, access=server.access)
        split: dict[str, Any] = {}
        reader = threading.Thread(target=_split, args=(server.pid, 4.0, seconds, split))
        reader.start()
        point = engine.measure(MODEL, concurrency, probe).point  # the probe's client stays on this thread
        reader.join()
    return {"shared_memory": mode, "throughput": round(point.throughput, 1), **split}


def variant(onnx: Path, precision: str) -> Path:
    """The model's ``precision`` variant, as a study builds it (INT8 calibrated on the made-up validation batch)."""
    if precision == "fp32":
        return onnx
    inputs = validation_inputs(MODEL, read_model_info(onnx)) if precision == "int8" else None
    return build_variant(onnx, precision, Path(tempfile.gettempdir()) / "tuner-bench-variants", inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--batching", action="store_true", help="Triton's dynamic batcher, no queue delay")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--raw-batch", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    parser.add_argument("--accelerator", default="openvino", choices=("none", "openvino"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_split.json")
    args = parser.parse_args()
    spec = TrialSpec(args.max_batch, args.batching, 0, 2, cpu_threads=1, accelerator=args.accelerator,
                     precision=args.precision)
    onnx = variant(models.prepare(MODEL, ROOT / "model_repository"), args.precision)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    runs, raw = [], []
    for _ in range(args.repeats):
        for mode in ("system", "none"):
            runs.append(measure(onnx, spec, args.concurrency, mode, args.seconds))
            print(runs[-1], flush=True)
        raw.append(raw_side(onnx, spec.instance_count, spec.cpu_threads, spec.accelerator, args.raw_batch))
        print("raw", raw[-1], flush=True)
    raw_median = statistics.median(raw)
    summary = {
        mode: {"throughput": statistics.median(r["throughput"] for r in runs if r["shared_memory"] == mode),
               "of_raw": round(statistics.median(r["throughput"] for r in runs if r["shared_memory"] == mode) / raw_median, 3)}
        for mode in ("system", "none")
    }
    results = {
        "machine": {"cpu": cpu_model(), "cores": cpu_cores(), "versions": versions()},
        "started": started, "spec": json.loads(spec.key()), "concurrency": args.concurrency, "raw_batch": args.raw_batch,
        "raw": raw, "raw_median": raw_median, "summary": summary, "runs": runs,
    }
    print(json.dumps(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
