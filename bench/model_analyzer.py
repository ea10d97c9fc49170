"""Triton Model Analyzer's brute search against the tuner: same model, machine, budget and wall time.

    python bench/model_analyzer.py --model-analyzer /tmp/ma/bin/model-analyzer [--max-p99-ms 100]
        [--shared-memory none|system] [--study bench/model_analyzer.yaml]

Model Analyzer pins a newer tritonclient than the tuner, so it lives in an environment of its own:
``python -m venv /tmp/ma && /tmp/ma/bin/pip install triton-model-analyzer==1.58.0``. Three parts run
one after the other, so run nothing else meanwhile:

1. **Model Analyzer** (``model-analyzer profile``, brute search) on the study file's model (by
   default the PP-OCRv4 text detector; ``--study`` takes another file of the same form, such as
   bench/model_analyzer_mlp.yaml) in a repository of its own: the ONNX file served by the tuner's python-backend runner (the embedded
   server has no onnxruntime backend) with ONNX Runtime's own thread count, which is what a user
   deploying the file would write. Its space: the study's ranges of instance count and max batch
   size, with dynamic batching, and concurrency up to ``load.concurrency_search.max``, p99 within
   the budget, throughput the objective. The wheel's
   tritonserver and the tuner's perf_analyzer run through wrapper scripts that set their library
   paths. Every line it prints is time-stamped, so each measurement's end is known.
2. **The tuner** on the study file (the same ranges of instances and batch size, plus threads,
   queue delay, accelerator and precision, ``concurrency: auto``), with
   ``search.timeout_s`` set to Model Analyzer's wall time and its default sampler.
3. **Raw ONNX Runtime**, without Triton: every precision x provider whose accuracy drop is within
   the study's bound, in sessions x threads that fit the machine's cores and batches of 1 up to the
   space's largest max batch size (powers of two), each
   session driven by its own thread: the ceiling any server config could come near.

``--shared-memory system`` has both sides' perf_analyzer pass the tensors through system shared
memory (the tuner's ``load.shared_memory``, Model Analyzer's ``perf_analyzer_flags``), as raw
ONNX Runtime passes none.

Prints each side's best feasible throughput, when it was first measured, and the tuner's best
against the ceiling, and adds the run to the ``runs`` of ``--out``. ``--skip-model-analyzer`` takes
part 1 from the last run of the same model there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.config import load_config
from tuner.measure._perf_analyzer import find_binary, library_dir, output_region_bytes
from tuner.model import build_variant, compare, reference_outputs, validation_inputs
from tuner.model_info import read_model_info
from tuner.storage import Store
from tuner.study import StudyRunner
from tuner.trial import InstanceKind, TrialSpec, execution_provider
from tuner.triton import cpu_model, versions
from tuner.triton._embedded import embedded_backends, embedded_environment, pytriton_root
from tuner.triton._model_config import RUNNER_SOURCE, build_model_config, provider_options, to_pbtxt
from tuner.workers import cpu_cores

STUDY_FILE = ROOT / "bench" / "model_analyzer.yaml"
_PROFILING = re.compile(r"Profiling (\S+): concurrency=(\d+)")
#: How long each raw run is driven.
RAW_SECONDS = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-analyzer", default="model-analyzer", help="the model-analyzer command")
    parser.add_argument("--study", type=Path, default=STUDY_FILE, help="the tuner's side; its model is both sides'")
    parser.add_argument("--max-p99-ms", type=float, default=100.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tuner-model-analyzer"))
    parser.add_argument("--skip-model-analyzer", action="store_true", help="take its side from --out")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model_analyzer.json")
    parser.add_argument(
        "--shared-memory",
        choices=("none", "system"),
        default="none",
        help="how both sides' perf_analyzer passes the tensors (the tuner's load.shared_memory)",
    )
    args = parser.parse_args()
    cfg = load_config(args.study)
    constraints = dict(cfg.constraints)
    constraints["latency_p99_ms"] = constraints["latency_p99_ms"].model_copy(update={"max": args.max_p99_ms})
    load = cfg.load.model_copy(update={"shared_memory": args.shared_memory})
    cfg = cfg.model_copy(update={"constraints": constraints, "load": load})
    runs = json.loads(args.out.read_text())["runs"] if args.out.is_file() else []
    result: dict[str, Any] = {
        "machine": _machine(),
        "model": cfg.model.name,
        "max_p99_ms": args.max_p99_ms,
        "shared_memory": args.shared_memory,
    }
    if args.skip_model_analyzer:
        # the last run of the same model (the runs before the field was kept were all of the text detector)
        same = [r for r in runs if r.get("model", "text_detection") == cfg.model.name]
        if not same:
            raise SystemExit(f"--skip-model-analyzer: no run of {cfg.model.name} in {args.out}")
        result["model_analyzer"] = same[-1]["model_analyzer"]
    else:
        result["model_analyzer"] = run_model_analyzer(args.model_analyzer, cfg, args.workdir / "ma", args.max_p99_ms)
    _report("model_analyzer", result)
    ma = result["model_analyzer"]
    result["tuner"] = run_tuner(cfg, args.workdir / "tuner", ma["wall_s"], ma["best"]["throughput"])
    _report("tuner", result)
    result["raw_onnxruntime"] = raw_ceiling(cfg, args.workdir / "variants")
    ceiling = result["raw_onnxruntime"]["best"]["throughput"]
    result["tuner_share_of_raw"] = round(result["tuner"]["best"]["throughput"] / ceiling, 3)
    result["model_analyzer_share_of_raw"] = round(ma["best"]["throughput"] / ceiling, 3)
    _report("raw_onnxruntime", result)
    print("tuner / raw:", result["tuner_share_of_raw"], " model analyzer / raw:", result["model_analyzer_share_of_raw"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": [*runs, result]}, indent=1) + "\n")


def run_model_analyzer(command: str, cfg: Any, workdir: Path, max_p99_ms: float) -> dict[str, Any]:
    """Model Analyzer's brute search (part 1 of the module doc): its measurements, wall time and best."""
    if workdir.exists():
        shutil.rmtree(workdir)
    config = _ma_setup(cfg, workdir, max_p99_ms)
    started = time.time()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        [*shlex.split(command), "profile", "-f", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workdir,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((round(time.time() - started, 1), line.rstrip()))
            print(f"[{lines[-1][0]:7.1f}] {lines[-1][1]}", flush=True)
    wall = time.time() - started
    (workdir / "model_analyzer.log").write_text("".join(f"{t:8.1f} {line}\n" for t, line in lines))
    if proc.returncode != 0:
        raise SystemExit(f"model-analyzer exited {proc.returncode}; its log: {workdir / 'model_analyzer.log'}")
    ended = _measurement_ends(lines)
    points = [{**p, "done_s": ended.get((p["config"], p["concurrency"]))} for p in _ma_points(workdir / "checkpoints")]
    feasible = [p for p in points if p["p99_ms"] <= max_p99_ms]
    best = max(feasible, key=lambda p: p["throughput"])
    return {"wall_s": round(wall, 1), "measurements": len(points), "best": best, "points": points}


def _ma_setup(cfg: Any, workdir: Path, max_p99_ms: float) -> Path:
    """Model Analyzer's repository, wrapper scripts and config file in ``workdir``; returns the config."""
    onnx = cfg.model.path
    info = read_model_info(onnx, [])
    spec = TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0, instance_count=1, cpu_threads=0)
    config = build_model_config(cfg.model.name, info, spec)
    config.ClearField("instance_group")  # Model Analyzer sets its own; its default config has none
    version = workdir / "repository" / cfg.model.name / "1"
    version.mkdir(parents=True)
    shutil.copy2(onnx, version / "model.onnx")
    shutil.copy2(RUNNER_SOURCE, version / "model.py")
    (version.parent / "config.pbtxt").write_text(to_pbtxt(config))
    env = embedded_environment({})
    backends = embedded_backends(workdir / "backends")
    server = _wrapper(
        workdir / "tritonserver",
        {"LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"], "PATH": env["PATH"].rstrip(os.pathsep)},
        [str(pytriton_root() / "bin" / "tritonserver"), f"--backend-directory={backends}"],
    )
    perf = _wrapper(
        workdir / "perf_analyzer", {"LD_LIBRARY_PATH": str(library_dir(workdir / "lib"))}, [str(find_binary())]
    )
    settings = {
        "model_repository": str(workdir / "repository"),
        "output_model_repository_path": str(workdir / "output_repository"),
        "override_output_model_repository": True,
        "export_path": str(workdir / "results"),
        "checkpoint_directory": str(workdir / "checkpoints"),
        "triton_launch_mode": "local",
        "triton_server_path": str(server),
        "perf_analyzer_path": str(perf),
        "run_config_search_mode": "brute",
        "run_config_search_max_concurrency": cfg.load.concurrency_search.max,
        "run_config_search_max_instance_count": max(_values(cfg.search.space.instance_count)),
        "run_config_search_max_model_batch_size": max(_values(cfg.search.space.max_batch_size)),
        "profile_models": {cfg.model.name: {"cpu_only": True}},
        "constraints": {"perf_latency_p99": {"max": max_p99_ms}},
        "objectives": ["perf_throughput"],
    }
    if cfg.load.shared_memory != "none":
        settings["perf_analyzer_flags"] = {
            "shared-memory": cfg.load.shared_memory,
            "output-shared-memory-size": output_region_bytes(info),
        }
    path = workdir / "model_analyzer.yaml"
    path.write_text(json.dumps(settings, indent=1))  # JSON is YAML
    return path


def _values(dim: Any) -> list[int]:
    return list(dim) if isinstance(dim, list) else list(range(dim.low, dim.high + 1, dim.step))


def _powers_of_two(top: int) -> list[int]:
    return [2**i for i in range(top.bit_length()) if 2**i <= top]


def _wrapper(path: Path, env: dict[str, str], argv: list[str]) -> Path:
    exports = "".join(f"export {k}={shlex.quote(v)}${{{k}:+:${k}}}\n" for k, v in env.items())
    path.write_text(f'#!/bin/sh\n{exports}exec {shlex.join(argv)} "$@"\n')
    path.chmod(0o755)
    return path


def _measurement_ends(lines: list[tuple[float, str]]) -> dict[tuple[str, int], float]:
    """When each (config, concurrency) measurement ended: the next line that is not a warning."""
    ends: dict[tuple[str, int], float] = {}
    current: tuple[str, int] | None = None
    for t, line in lines:
        match = _PROFILING.search(line)
        if match:
            current = (match[1], int(match[2]))
        elif current is not None and "WARNING" not in line:
            ends[current] = t
            current = None
    return ends


def _ma_points(checkpoints: Path) -> list[dict[str, Any]]:
    """Every measurement in Model Analyzer's checkpoint: config, concurrency, throughput, p99."""
    data = json.loads(max(checkpoints.glob("*.ckpt"), key=lambda p: p.stat().st_mtime).read_text())
    points = []
    for variants in data["ResultManager.results"]["_results"].values():
        for variant, runs in variants.items():
            for measurement in _find(runs, "_model_config_measurements"):
                for model in measurement:
                    metrics = {name: value["_value"] for name, value in model["_non_gpu_data"]}
                    points.append(
                        {
                            "config": variant,
                            "concurrency": model["_model_specific_pa_params"]["concurrency-range"],
                            "throughput": metrics["perf_throughput"],
                            "p99_ms": metrics["perf_latency_p99"],
                        }
                    )
    return points


def _find(node: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in ``node``."""
    if isinstance(node, dict):
        found = [node[key]] if key in node else []
        return found + [v for child in node.values() for v in _find(child, key)]
    if isinstance(node, list):
        return [v for child in node for v in _find(child, key)]
    return []


def run_tuner(cfg: Any, workdir: Path, wall_s: float, ma_best: float) -> dict[str, Any]:
    """The tuner's study for ``wall_s`` seconds: its feasible trials, best, and when it passed ``ma_best``."""
    workdir.mkdir(parents=True, exist_ok=True)
    search = cfg.search.model_copy(update={"timeout_s": wall_s})
    run_cfg = cfg.model_copy(
        update={
            "study": f"model-analyzer-side-{time.strftime('%Y%m%d-%H%M%S')}",
            "storage": f"sqlite:///{workdir / 'tuner.db'}",
            "work_dir": workdir / "work",
            "search": search,
        }
    )
    started = time.time()
    summary = StudyRunner(run_cfg, Store(run_cfg.storage)).run()
    wall = time.time() - started
    trials = summary.stored.trials
    feasible = [
        {
            "trial": t.number,
            "throughput": round(t.metrics["throughput"], 1),
            "p99_ms": round(t.metrics["latency_p99_ms"], 1),
            "concurrency": t.metrics.get("concurrency"),
            "params": t.params,
            "done_s": round(t.datetime_complete.timestamp() - started, 1) if t.datetime_complete else None,
        }
        for t in trials
        if t.feasible
    ]
    best = max(feasible, key=lambda p: p["throughput"])
    passed = next((p for p in feasible if p["throughput"] >= ma_best), None)
    return {
        "wall_s": round(wall, 1),
        "trials": len(trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "best": best,
        "first_at_or_above_model_analyzer": passed,
        "feasible": feasible,
    }


def raw_ceiling(cfg: Any, cache: Path) -> dict[str, Any]:
    """Part 3 of the module doc: raw ONNX Runtime's best on the accurate variants."""
    import onnxruntime as ort

    onnx = cfg.model.path
    info = read_model_info(onnx, [])
    inputs = validation_inputs(cfg.model.name, info, cfg.model.validation_data, cfg.model.validation_samples)
    reference = reference_outputs(str(onnx), inputs)
    bound = cfg.constraints["accuracy_drop"].max
    cores = cpu_cores()
    layouts = [(s, t) for s in (1, 2) for t in (1, 2) if s * t <= cores]
    cache.mkdir(parents=True, exist_ok=True)
    runs = []
    for precision in cfg.search.space.precision:
        calibration = inputs if precision == "int8" else None
        path = str(build_variant(onnx, precision, cache, calibration))
        for accelerator in cfg.search.space.accelerator:
            provider = execution_provider(accelerator, InstanceKind.CPU)
            try:
                sessions = _sessions(ort, path, provider, accelerator, precision, 1, cores)
            except Exception as exc:  # noqa: BLE001  (a provider that cannot load the file: no ceiling of it)
                print(f"raw {precision} {accelerator}: cannot be loaded: {str(exc).splitlines()[0]}", flush=True)
                continue
            got = {o.name: [] for o in sessions[0].get_outputs()}
            for i in range(len(next(iter(inputs.values())))):
                for o, value in zip(got, sessions[0].run(None, {k: v[i : i + 1] for k, v in inputs.items()})):
                    got[o].append(value)
            drop = compare(info, reference, {k: np.concatenate(v) for k, v in got.items()})["accuracy_drop"]
            print(f"raw {precision} {accelerator}: accuracy drop {drop:.4f}", flush=True)
            if drop > bound:
                continue
            for count, threads in layouts:
                sessions = _sessions(ort, path, provider, accelerator, precision, count, threads)
                for batch in _powers_of_two(max(_values(cfg.search.space.max_batch_size))):
                    feed = {k: np.repeat(v[:1], batch, axis=0) for k, v in inputs.items()}
                    throughput = _drive(sessions, feed, batch)
                    runs.append(
                        {
                            "precision": precision,
                            "accelerator": accelerator,
                            "sessions": count,
                            "threads": threads,
                            "batch": batch,
                            "throughput": round(throughput, 1),
                            "accuracy_drop": round(drop, 4),
                        }
                    )
                    print("raw", runs[-1], flush=True)
    return {"best": max(runs, key=lambda r: r["throughput"]), "runs": runs}


def _sessions(ort: Any, path: str, provider: str, accelerator: str, precision: str, count: int, threads: int) -> list:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    spec = TrialSpec(1, False, 0, 1, cpu_threads=threads, accelerator=accelerator, precision=precision)
    return [
        ort.InferenceSession(path, options, providers=[provider], provider_options=[provider_options(spec)])
        for _ in range(count)
    ]


def _drive(sessions: list, feed: dict[str, np.ndarray], batch: int) -> float:
    """Inferences per second of the sessions run side by side, each by its own thread, for RAW_SECONDS."""
    for session in sessions:
        session.run(None, feed)  # warm-up
    done = [0] * len(sessions)
    stop = time.perf_counter() + RAW_SECONDS

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            sessions[i].run(None, feed)
            done[i] += batch

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def _machine() -> dict[str, Any]:
    """The CPU and the measuring packages' versions, as landscapes and verifications record them."""
    return {
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _report(part: str, result: dict[str, Any]) -> None:
    shown = {k: v for k, v in result[part].items() if k not in ("points", "feasible", "runs")}
    print(part, json.dumps(shown), flush=True)


if __name__ == "__main__":
    main()
