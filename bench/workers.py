"""Trials per hour with 1 and 2 Ray workers on the same study, and where a trial's time goes.

    python bench/workers.py [--trials 10] [--window-ms 1000] [--out bench/results/workers.json]

Runs the same digits_forest study (random sampler, fixed seed) once with one worker holding
every core and once with two workers of one core each, on the real server and perf_analyzer.
Reused trials (a config proposed twice) cost nothing and are left out of the rates.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.config import parse_config
from tuner.model import _bundled as models
from tuner.storage import Store
from tuner.study import StudyRunner
from tuner.workers import cpu_cores

PHASES = ("write_s", "load_s", "warmup_s", "measure_s", "unload_s")


def run_study(folder: Path, onnx: Path, workers: int, trials: int, window_ms: int) -> dict:
    cfg = parse_config(
        {
            "study": f"bench-{workers}",
            "storage": "sqlite:///bench.db",
            "model": {"name": "digits_forest", "path": str(onnx)},
            "workers": {"count": workers, "cpus_per_worker": max(1, cpu_cores() // workers)},
            "search": {
                "sampler": "random",
                "n_trials": trials,
                "seed": 5,
                "space": {
                    "max_batch_size": [1, 4, 8, 16],
                    "dynamic_batching": [False, True],
                    "max_queue_delay_us": [0, 500, 1000, 2000],
                    "instance_count": [1, 2],
                },
            },
            "load": {"concurrency": [4], "measurement_window_ms": window_ms},
        },
        folder,
    )
    runner = StudyRunner(cfg, Store(cfg.storage))
    started = time.perf_counter()
    trials = runner.run().stored.trials
    wall = time.perf_counter() - started
    measured = [t for t in trials if t.reused_from is None and t.datetime_complete]
    span = (max(t.datetime_complete for t in measured) - min(t.datetime_start for t in measured)).total_seconds()
    phases = {p: statistics.mean(t.timings_s.get(p, 0.0) for t in measured) for p in PHASES}
    trial_s = sum(phases.values())
    return {
        "workers": workers,
        "cores_per_worker": cfg.workers.cpus_per_worker,
        "trials": len(trials),
        "measured_trials": len(measured),
        "failed": sum(t.state.name == "FAIL" for t in trials),
        "wall_s": round(wall, 1),
        "trial_span_s": round(span, 1),
        "trials_per_hour": round(len(measured) / span * 3600, 1),
        "mean_phase_s": {k: round(v, 3) for k, v in phases.items()},
        "mean_trial_s": round(trial_s, 2),
        "overhead_fraction": round(1 - phases["measure_s"] / trial_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--window-ms", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "workers.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    onnx = models.prepare("digits_forest", ROOT / "model_repository")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            result = run_study(Path(tmp), onnx, workers, args.trials, args.window_ms)
            print(json.dumps(result), flush=True)
            results.append(result)
    one, two = results
    summary = {
        "machine": f"{platform.machine()}, {cpu_cores()} cores, {platform.python_version()}",
        "window_ms": args.window_ms,
        "runs": results,
        "speedup_2_workers": round(two["trials_per_hour"] / one["trials_per_hour"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"2 workers: {summary['speedup_2_workers']}x the trials per hour of 1; written to {args.out}")


if __name__ == "__main__":
    main()
