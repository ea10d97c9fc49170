"""The bundled OCR pipeline (an ensemble of three models): its default configs against the tuned ones.

    python bench/pipeline.py [--study-file search_spaces/ocr_pipeline_cpu.yaml] [--repeats 3]

Runs the study file with ``tuner optimize`` (its storage and work folder moved to ``--workdir``),
then serves the default config (every model's own config.pbtxt) and the recommended one on fresh
servers, ``--repeats`` fresh loads each (``tuner verify``: export, load, perf_analyzer), so both
sides are measured the same way after the search. Prints, and adds to the ``runs`` of ``--out``:
the study's wall time, each side's stored and verified throughput at the study's concurrency and
p99, and each step's queue and compute per request as the study measured them. Measure on a
quiet machine: nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.reports import verify_study
from tuner.reports._explain import step_compute_ms
from tuner.storage import Store, StoredTrial, read_study
from tuner.study import config_results, default_result, recommend
from tuner.triton import cpu_model, versions
from tuner.workers import cpu_cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study-file", type=Path, default=ROOT / "search_spaces" / "ocr_pipeline_cpu.yaml")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-pipeline"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(args.study_file.read_text())
    data["model"]["repository"] = str((args.study_file.parent / data["model"]["repository"]).resolve())
    data["storage"] = f"sqlite:///{args.workdir / 'tuner.db'}"
    data["work_dir"] = str(args.workdir / "work")
    study_file = args.workdir / "study.yaml"
    study_file.write_text(yaml.safe_dump(data, sort_keys=False))
    (args.workdir / "tuner.db").unlink(missing_ok=True)

    started = time.monotonic()
    cmd = [sys.executable, "-m", "tuner.cli", "optimize", str(study_file)]
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    wall_s = time.monotonic() - started

    store = Store(data["storage"])
    study = store.load_study(data["study"])
    stored = read_study(study, store)
    results = config_results(stored.trials, stored.info)
    rec, default = recommend(results, stored.info), default_result(results)
    if rec is None or default is None:
        raise SystemExit("the study found no feasible config, or measured no default config")
    sides = {"default": default, "tuned": rec.config}
    run: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": {"cpu": cpu_model(), "cores": cpu_cores(), "versions": versions()},
        "study_file": str(args.study_file.relative_to(ROOT)),
        "trials": len(stored.trials),
        "study_wall_s": round(wall_s, 1),
    }
    for side, result in sides.items():
        verified = verify_study(study, store, number=result.number, repeats=args.repeats, workdir=args.workdir / side)
        run[side] = {
            "trial": result.number,
            "params": result.representative.params,
            "stored_throughput": round(result.values[0], 2),
            "loads": len(result.loads),
            "verified_throughput": round(verified.throughput_median, 2),
            "verified_p99_ms": round(verified.latency_p99_median_ms, 2),
            "verified_runs": [round(r.throughput, 2) for r in verified.runs],
            "concurrency": verified.concurrency,
            "steps": _steps(result.representative),
        }
    run["tuned_over_default"] = round(run["tuned"]["verified_throughput"] / run["default"]["verified_throughput"], 3)
    _report(run)
    history = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    history["runs"].append(run)
    args.out.write_text(json.dumps(history, indent=2) + "\n")


def _steps(trial: StoredTrial) -> dict[str, dict[str, float]]:
    """Each step's queue, compute and mean batch per request at the point the trial was judged by."""
    point = trial.point
    window = trial.server.get(str(point.concurrency), {}) if point else {}
    return {
        name: {
            "queue_ms": round(float(w["queue_ms"]), 3),
            "compute_ms": round(step_compute_ms(w), 3),
            "mean_batch": float(w["mean_batch"]),
        }
        for name, w in (window.get("steps") or {}).items()
    }


def _report(run: dict[str, Any]) -> None:
    print(f"study: {run['trials']} trials in {run['study_wall_s']:.0f} s")
    for side in ("default", "tuned"):
        r = run[side]
        print(
            f"{side}: trial {r['trial']}, stored {r['stored_throughput']} infer/s over {r['loads']} load(s); "
            f"verified {r['verified_throughput']} infer/s (runs {r['verified_runs']}), p99 {r['verified_p99_ms']} ms "
            f"at concurrency {r['concurrency']}"
        )
        print("  params: " + ", ".join(f"{k}={v}" for k, v in r["params"].items()))
        for name, s in r["steps"].items():
            print(f"  {name}: queue {s['queue_ms']} ms, compute {s['compute_ms']} ms, mean batch {s['mean_batch']}")
    print(f"tuned / default (verified): {run['tuned_over_default']}")


if __name__ == "__main__":
    main()
