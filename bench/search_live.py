"""One live study per search strategy on the real server, to check the replays' ranking.

    python bench/search_live.py [--model text_detection] [--trials 12] [--samplers bo,tpe,quick,...]

Runs bench/landscapes/MODEL.yaml on the embedded Triton server once per sampler (``--seed``, default
0; the study file's own load settings), each as its own study, and records its wall time, the trials
it ran and pruned, its feasible trials' throughputs, and the trial that first came within 3% of the
recorded grid's best feasible throughput (bench/landscapes/MODEL.json), with the wall time until it
had finished. A machine other than the one that
recorded the grid measures other throughputs, so each run is also scored against the best
feasible throughput any of this invocation's runs measured (``trials_to_live_target``). Results
are merged into bench/results/search_live.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from search import LANDSCAPES, TARGET, reference

from tuner.config import load_config
from tuner.replay import Landscape
from tuner.storage import Store
from tuner.study import StudyRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="text_detection")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samplers", default="bo,tpe,quick,random,nsga2,gp")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search_live.json")
    args = parser.parse_args()
    cfg = load_config(LANDSCAPES / f"{args.model}.yaml")
    ref = reference(cfg, Landscape.load(LANDSCAPES / f"{args.model}.json"))
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows: dict[str, dict[str, Any]] = {}
    for sampler in args.samplers.split(","):
        search = cfg.search.model_copy(update={"sampler": sampler, "seed": args.seed, "n_trials": args.trials})
        # the search alone: no fresh loads of the best configs at the end (load.remeasure)
        load = cfg.load.model_copy(update={"remeasure": cfg.load.remeasure.model_copy(update={"loads": 0})})
        run_cfg = cfg.model_copy(update={"study": f"live-{sampler}-{stamp}", "search": search, "load": load})
        started, started_at = time.perf_counter(), time.time()
        summary = StudyRunner(run_cfg, Store(run_cfg.storage)).run()
        wall = time.perf_counter() - started
        trials = summary.stored.trials
        feasible = [(t.number + 1, t.metrics["throughput"]) for t in trials if t.feasible]
        reached = next((n for n, thr in feasible if thr >= TARGET * ref.best_throughput), None)
        done = {t.number + 1: t.datetime_complete for t in trials}
        row = {
            "trials": len(trials),
            "wall_s": round(wall, 1),
            # from the study's start until the trial that first came within 3% of the grid's best had finished
            "wall_s_to_target": round(done[reached].timestamp() - started_at, 1) if reached and done[reached] else None,
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "best_feasible_throughput": max((thr for _, thr in feasible), default=None),
            "trials_to_target": reached,
            "stopped": summary.stopped,
            # the busiest any trial found the machine: CPU % of processes other than the server and load
            "max_other_cpu_pct": max(
                (t.metrics.get("other_cpu_pct", 0.0) for t in trials if t.metrics),
                default=None,
            ),
            "grid_best_throughput": ref.best_throughput,
            "feasible": feasible,  # (trial, throughput) of each feasible trial
        }
        name = sampler if args.seed == 0 else f"{sampler}-seed{args.seed}"
        rows[name] = results.setdefault(args.model, {})[name] = row
        print(name, {k: v for k, v in row.items() if k != "feasible"}, flush=True)
        _score_live(rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


def _score_live(rows: dict[str, dict[str, Any]]) -> None:
    """Each run's first trial within 3% of the best feasible throughput any of the runs measured."""
    best = max((thr for row in rows.values() for _, thr in row["feasible"]), default=0.0)
    for row in rows.values():
        row["live_best_throughput"] = best
        row["trials_to_live_target"] = next((n for n, thr in row["feasible"] if thr >= TARGET * best), None)


if __name__ == "__main__":
    main()
