"""Tensors over gRPC against tensors in shared memory, next to raw ONNX Runtime: where a server's throughput goes.

    python bench/shared_memory.py [--repeats 2] [--window-ms 2000] [--out bench/results/shared_memory.json]

On the PP-OCRv4 text detector (FP32, a 1.2 MB input and 0.4 MB output per request), for each
layout of the 2-core machine's sessions (1 instance x 2 threads, 2 instances x 1 thread) and each
accelerator (ONNX Runtime's CPU provider, OpenVINO), max batch size 8 without the batcher:

1. the config served by the embedded server and measured by perf_analyzer at concurrency 2 and 4,
   with ``load.shared_memory`` ``none`` and ``system`` alternating, ``--repeats`` times each;
2. raw ONNX Runtime in the same layout without a server (``bench/model_analyzer.py``'s driver:
   each session run by its own thread, batches of 1, for 3 s).

Prints and stores each config's median throughput both ways and their share of raw's. Run nothing
else meanwhile: the load generator, the server and raw ONNX Runtime share the same cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engines import served
from model_analyzer import _drive, _sessions

from tuner.measure import EngineSettings, PerfAnalyzer, output_region_bytes, warm_up
from tuner.model import _bundled as models
from tuner.trial import InstanceKind, TrialSpec, execution_provider
from tuner.triton import cpu_model, versions
from tuner.workers import cpu_cores

MODEL = "text_detection"
LAYOUTS = ((1, 2), (2, 1))  # (instances, threads each) on 2 cores
ACCELERATORS = ("none", "openvino")
CONCURRENCIES = (2, 4)


def served_side(tmp: Path, onnx: Path, spec: TrialSpec, settings: EngineSettings, repeats: int) -> list[dict]:
    """Each concurrency measured ``repeats`` times per mode, the modes alternating."""
    rows = []
    with served(tmp, MODEL, onnx, spec) as (server, info, probe):
        warm_up(server.http_url, MODEL, info, 8, 2, server.access)
        engines = {
            mode: PerfAnalyzer(
                server.grpc_url,
                tmp / f"perf-{mode}",
                EngineSettings(
                    window_ms=settings.window_ms,
                    max_windows=settings.max_windows,
                    shared_memory=mode,
                    output_bytes=output_region_bytes(info) if mode != "none" else 0,
                ),
                access=server.access,
            )
            for mode in ("none", "system")
        }
        for concurrency in CONCURRENCIES:
            for _ in range(repeats):
                for mode, engine in engines.items():
                    point = engine.measure(MODEL, concurrency, probe).point
                    rows.append(
                        {
                            "shared_memory": mode,
                            "concurrency": concurrency,
                            "throughput": round(point.throughput, 1),
                            "p99_ms": round(point.latency_p99_ms, 2),
                            "loadgen_cpu_pct": round(point.loadgen_cpu_pct),
                            "server_cpu_pct": round(point.server_cpu_pct),
                            "other_cpu_pct": round(point.other_cpu_pct),
                        }
                    )
                    print(spec.instance_count, spec.cpu_threads, spec.accelerator, rows[-1], flush=True)
    return rows


def raw_side(onnx: Path, instances: int, threads: int, accelerator: str, batch: int = 1) -> float:
    """Raw ONNX Runtime's inferences per second: ``instances`` sessions of ``threads`` side by side, each run on
    batches of ``batch``."""
    import onnxruntime as ort

    provider = execution_provider(accelerator, InstanceKind.CPU)
    sessions = _sessions(ort, str(onnx), provider, accelerator, "fp32", instances, threads)
    dims = sessions[0].get_inputs()[0].shape
    shape = [batch, *(d if isinstance(d, int) and d > 0 else 1 for d in dims[1:])]
    feed = {sessions[0].get_inputs()[0].name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    return round(_drive(sessions, feed, batch), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--window-ms", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "shared_memory.json")
    args = parser.parse_args()
    onnx = models.prepare(MODEL, ROOT / "model_repository")
    settings = EngineSettings(window_ms=args.window_ms, max_windows=8)
    configs = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for instances, threads in LAYOUTS:
        for accelerator in ACCELERATORS:
            spec = TrialSpec(8, False, 0, instances, cpu_threads=threads, accelerator=accelerator)
            with tempfile.TemporaryDirectory() as folder:
                rows = served_side(Path(folder), onnx, spec, settings, args.repeats)
            raw = raw_side(onnx, instances, threads, accelerator)
            config = {"instances": instances, "threads": threads, "accelerator": accelerator, "raw": raw, "runs": rows}
            for concurrency in CONCURRENCIES:
                for mode in ("none", "system"):
                    median = round(
                        statistics.median(
                            r["throughput"]
                            for r in rows
                            if r["shared_memory"] == mode and r["concurrency"] == concurrency
                        ),
                        1,
                    )
                    config[f"{mode}_c{concurrency}"] = median
                    config[f"{mode}_c{concurrency}_of_raw"] = round(median / raw, 3)
            configs.append(config)
            print({k: v for k, v in config.items() if k != "runs"}, flush=True)
    results = {
        "machine": {"cpu": cpu_model(), "cores": cpu_cores(), "versions": versions()},
        "started": started,
        "window_ms": args.window_ms,
        "repeats": args.repeats,
        "configs": configs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
