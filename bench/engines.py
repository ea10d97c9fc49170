"""The two load engines side by side: how hard each can push, whether they agree, and the noise.

    python bench/engines.py [--window-ms 1000] [--repeats 5] [--out bench/results/engines.json]

1. Highest request rate: an Identity model (FP32 [N, 4]; the server does almost nothing) at
   concurrency 1, 2, 4, 8 and 16 with each engine; the best rate of each.
2. Agreement on text_detection (1 instance, no batching) at concurrency 1 and 2: throughput and
   p50 of each engine, alternating engines so that drift in the machine hits both.
3. Noise: the same text_detection config loaded ``--repeats`` times afresh (unload, load,
   warm-up, measure with perf_analyzer at concurrency 2): mean, spread and coefficient of
   variation of throughput, and each load's window spread.

Every measurement records the CPU of other processes during its window; the table says where
it was material.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.measure import (
    BuiltinEngine,
    EngineSettings,
    PerfAnalyzer,
    Probe,
    UsageMonitor,
    warm_up,
)
from tuner.model import _bundled as models
from tuner.model_info import read_model_info
from tuner.trial import TrialSpec
from tuner.triton import RUNNER_SOURCE, build_model_config, to_pbtxt
from tuner.triton._embedded import EmbeddedServer
from tuner.workers import cpu_cores

SPEC = TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0, instance_count=1)


def identity_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@contextmanager
def served(tmp: Path, name: str, onnx_path: Path, spec: TrialSpec = SPEC) -> Iterator[tuple]:
    version = tmp / "repository" / name / "1"
    version.mkdir(parents=True)
    shutil.copy(onnx_path, version / "model.onnx")
    shutil.copy(RUNNER_SOURCE, version / "model.py")
    info = read_model_info(onnx_path)
    (version.parent / "config.pbtxt").write_text(to_pbtxt(build_model_config(name, info, spec)))
    with EmbeddedServer(tmp / "server", tmp / "repository") as server:
        server.load(name)
        monitor = UsageMonitor(lambda: server.pid)
        monitor.start()
        try:
            yield server, info, Probe(lambda: server.model_statistics(name), monitor)
        finally:
            monitor.stop()


def row(engine: str, measured) -> dict:
    p = measured.point
    return {
        "engine": engine, "concurrency": p.concurrency, "throughput": round(p.throughput, 1),
        "p50_ms": round(p.latency_p50_ms, 3), "p99_ms": round(p.latency_p99_ms, 3),
        "loadgen_cpu_pct": round(p.loadgen_cpu_pct), "server_cpu_pct": round(p.server_cpu_pct),
        "other_cpu_pct": round(p.other_cpu_pct), "saturated": p.loadgen_saturated, "stable": p.stable,
        "spread_pct": round(p.throughput_spread_pct, 1),
    }


def engines_for(server: EmbeddedServer, info, settings: EngineSettings, tmp: Path) -> dict:
    return {
        "perf_analyzer": PerfAnalyzer(server.grpc_url, tmp / "perf", settings, access=server.access),
        "builtin": BuiltinEngine(server.grpc_url, settings, info),
    }


def max_rate(tmp: Path, settings: EngineSettings) -> list[dict]:
    rows = []
    with served(tmp / "identity", "identity", identity_model(tmp / "identity.onnx")) as (server, info, probe):
        engines = engines_for(server, info, settings, tmp)
        for concurrency in (1, 2, 4, 8, 16):
            for name, engine in engines.items():
                rows.append(row(name, engine.measure("identity", concurrency, probe)))
                print(rows[-1], flush=True)
    return rows


def agreement(tmp: Path, onnx_path: Path, settings: EngineSettings) -> list[dict]:
    rows = []
    with served(tmp / "agree", "text_detection", onnx_path) as (server, info, probe):
        warm_up(server.http_url, "text_detection", info, 8, 2)
        engines = engines_for(server, info, settings, tmp)
        for concurrency in (1, 2):
            for _ in range(2):
                for name, engine in engines.items():
                    rows.append(row(name, engine.measure("text_detection", concurrency, probe)))
                    print(rows[-1], flush=True)
    return rows


def noise(tmp: Path, onnx_path: Path, settings: EngineSettings, repeats: int) -> list[dict]:
    rows = []
    with served(tmp / "noise", "text_detection", onnx_path) as (server, info, probe):
        perf = PerfAnalyzer(server.grpc_url, tmp / "perf", settings, access=server.access)
        for _ in range(repeats):
            server.unload("text_detection")
            server.load("text_detection")
            warm_up(server.http_url, "text_detection", info, 8, 2)
            rows.append(row("perf_analyzer", perf.measure("text_detection", 2, probe)))
            print(rows[-1], flush=True)
    return rows


def summarize(results: dict) -> dict:
    best = {
        engine: max(r["throughput"] for r in results["max_rate"] if r["engine"] == engine)
        for engine in ("perf_analyzer", "builtin")
    }
    agree = {}
    for concurrency in (1, 2):
        by = {e: [r for r in results["agreement"] if r["engine"] == e and r["concurrency"] == concurrency]
              for e in ("perf_analyzer", "builtin")}
        mean = {e: (statistics.mean(r["throughput"] for r in rs), statistics.mean(r["p50_ms"] for r in rs))
                for e, rs in by.items()}
        agree[str(concurrency)] = {
            "throughput_ratio": round(mean["builtin"][0] / mean["perf_analyzer"][0], 3),
            "p50_ratio": round(mean["builtin"][1] / mean["perf_analyzer"][1], 3),
        }
    tput = [r["throughput"] for r in results["noise"]]
    return {
        "max_rate": best,
        "builtin_share_of_perf_analyzer": round(best["builtin"] / best["perf_analyzer"], 3),
        "agreement": agree,
        "noise": {
            "mean": round(statistics.mean(tput), 1),
            "min": min(tput), "max": max(tput),
            "cv_pct": round(100 * statistics.stdev(tput) / statistics.mean(tput), 1) if len(tput) > 1 else 0.0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-ms", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engines.json")
    args = parser.parse_args()
    settings = EngineSettings(window_ms=args.window_ms, max_windows=8)
    detector = models.prepare("text_detection", ROOT / "model_repository")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        results = {
            "max_rate": max_rate(tmp, settings),
            "agreement": agreement(tmp, detector, settings),
            "noise": noise(tmp, detector, settings, args.repeats),
        }
    results["summary"] = summarize(results)
    results["machine"] = {"cores": cpu_cores(), "machine": platform.machine(), "python": platform.python_version()}
    results["window_ms"] = args.window_ms
    print(json.dumps(results["summary"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
