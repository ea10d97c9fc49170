"""Search efficiency: how many trials and minutes each search strategy needs, on recorded landscapes.

    python bench/search.py [--seeds 20] [--trials 40] [--variants bo,tpe,random,...] [--noise]
                           [--models text_detection,...] [--out bench/results/search.json]

For each landscape under bench/landscapes/ (a study file NAME.yaml and the grid it recorded,
NAME.json: every config measured once on the real server) and each search variant, runs the
tuner's own study loop with its trials answered from the file (``search.replay``), once per
seed, and reports:

- trials to target: configs measured until the study first has a feasible config whose
  throughput is within 3% of the best feasible throughput of the whole grid (the median over
  seeds; a run that never gets there within its budget counts as infinite). A config proposed
  again is answered from its first measurement at no cost, so it is not counted: every study
  runs until it has measured the budget's configs (or up to 3x the budget in trials);
- minutes to target: the recorded measuring time of the configs it measured until then (a
  config proposed twice is measured once);
- hypervolume after 10, 20 and 40 trials: of the feasible (throughput, p99) front, with the
  reference point (0 infer/s, the latency budget), as a share of the whole grid's.

The grid sampler is what a brute-force search does (its trials are shuffled by the seed); the
quick search is Model Analyzer's. Results go to the --out JSON, merged with what is there, so
slow variants (gp) can be run with fewer seeds on their own.

With --noise, each seed also replays a landscape redrawn from the recorded one: every
config's throughput and latencies multiplied by log-normal factors (coefficients of
variation 3% and 5%: about the spread of one measurement's windows on these machines, more
than reloading a config on a quiet one gives; docs/benchmarks.md),
the target and the reference front taken from the redrawn landscape. One recording is one
draw of the noise; a deterministic strategy gives the same answer on it for every seed, and
the redrawn landscapes show how it fares on landscapes like it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optuna._hypervolume import compute_hypervolume

from tuner.config import StudyConfig, load_config
from tuner.landscape import Landscape
from tuner.results import ATTR_METRICS, ATTR_REUSED_FROM, choose_point, is_feasible, trial_metrics, violation
from tuner.store import TrialRecord
from tuner.study import StudyRunner
from tuner.trial import LoadPoint, TrialOutcome

LANDSCAPES = ROOT / "bench" / "landscapes"
MODELS = ("text_detection", "digits_forest", "text_recognition")
TARGET = 0.97  # within 3% of the grid's best feasible throughput
CHECKPOINTS = (10, 20, 40)
NOISE_CV = {"throughput": 0.03, "latency": 0.05}
VARIANTS: dict[str, dict[str, Any]] = {
    "bo": {"sampler": "bo"},
    "bo-cold": {"sampler": "bo", "warm_start": False},
    "bo-startup8": {"sampler": "bo", "n_startup_trials": 8},
    "tpe": {"sampler": "tpe"},
    "tpe-cold": {"sampler": "tpe", "warm_start": False},
    "tpe-startup4": {"sampler": "tpe", "n_startup_trials": 4},
    "tpe-startup16": {"sampler": "tpe", "n_startup_trials": 16},
    "nsga2": {"sampler": "nsga2"},
    "gp": {"sampler": "gp"},
    "random": {"sampler": "random"},
    "grid": {"sampler": "grid"},
    "quick": {"sampler": "quick"},
}


class MemoryStore:
    """The parts of tuner.store.Store a study uses, in memory: replays need no database."""

    url = "memory"

    def __init__(self) -> None:
        self.optuna = optuna.storages.InMemoryStorage()
        self._records: dict[int, TrialRecord] = {}

    def study_names(self) -> list[str]:
        return [s.study_name for s in self.optuna.get_all_studies()]

    def save_outcome(self, study_name: str, trial_id: int, trial_number: int, outcome: TrialOutcome) -> None:
        del study_name, trial_number
        self._records[trial_id] = TrialRecord(
            outcome.config_pbtxt, json.loads(outcome.spec.key()), outcome.error, outcome.timings_s, outcome.points
        )

    def records(self, trial_ids: Any) -> dict[int, TrialRecord]:
        return {i: self._records[i] for i in trial_ids if i in self._records}


@dataclass(frozen=True)
class Reference:
    """What the whole grid offers: its best feasible throughput and the hypervolume of its front."""

    configs: int
    feasible: int
    best_throughput: float
    near_best: int
    hypervolume: float
    budget_ms: float


def hypervolume(points: list[tuple[float, float]], budget_ms: float) -> float:
    """Of (throughput, p99) points, maximize throughput and minimize p99, against (0, budget)."""
    inside = [(t, p) for t, p in points if t > 0 and p < budget_ms]
    if not inside:
        return 0.0
    loss = np.array([[-t, p] for t, p in inside])
    return float(compute_hypervolume(loss, np.array([0.0, budget_ms])))


def redraw(landscape: Landscape, seed: int) -> Landscape:
    """The landscape with every point's throughput and latencies scaled by random factors."""
    rng = np.random.default_rng(seed)
    redrawn = Landscape(landscape.model, landscape.study, landscape.worker_plan, machine=landscape.machine)
    for key, outcome in landscape.outcomes.items():
        points = tuple(_jitter(point, rng) for point in outcome.points)
        redrawn.add(dataclasses.replace(outcome, points=points), landscape.params[key])
    return redrawn


def _jitter(point: LoadPoint, rng: np.random.Generator) -> LoadPoint:
    throughput = math.exp(rng.normal(0.0, NOISE_CV["throughput"]))
    latency = math.exp(rng.normal(0.0, NOISE_CV["latency"]))
    scaled = {f.name: getattr(point, f.name) * latency for f in dataclasses.fields(point) if f.name.startswith("latency_")}
    return dataclasses.replace(point, throughput=point.throughput * throughput, **scaled)


def reference(cfg: StudyConfig, landscape: Landscape) -> Reference:
    budget = cfg.constraints["latency_p99_ms"].max
    assert budget is not None
    feasible = []
    for outcome in landscape.outcomes.values():
        if outcome.failed:
            continue
        metrics = trial_metrics(choose_point(outcome.points, cfg, outcome.accuracy), outcome.accuracy)
        if violation(metrics, cfg) == 0.0:
            feasible.append((metrics["throughput"], metrics["latency_p99_ms"]))
    best = max(t for t, _ in feasible)
    return Reference(
        configs=len(landscape.outcomes),
        feasible=len(feasible),
        best_throughput=best,
        near_best=sum(1 for t, _ in feasible if t >= TARGET * best),
        hypervolume=hypervolume(feasible, budget),
        budget_ms=budget,
    )


def replay(cfg: StudyConfig, variant: dict[str, Any], seed: int, trials: int, landscape: Path | None = None
           ) -> list[dict[str, Any]]:
    """One replayed study; per trial: feasible, throughput, p99, and the seconds it cost to measure."""
    replayed = {"replay": landscape} if landscape is not None else {}
    search = cfg.search.model_copy(update={"seed": seed, "n_trials": trials, **variant, **replayed})
    run_cfg = cfg.model_copy(update={"study": f"replay-{seed}", "search": search})
    summary = StudyRunner(run_cfg, MemoryStore()).run()  # type: ignore[arg-type]
    rows = []
    for trial in summary.study.trials:
        metrics = trial.user_attrs.get(ATTR_METRICS) or {}
        rows.append({
            "feasible": is_feasible(trial),
            "throughput": metrics.get("throughput", 0.0),
            "latency_p99_ms": metrics.get("latency_p99_ms", math.inf),
            "cost_s": sum(trial.user_attrs.get("timings_s", {}).values()),
            "reused": trial.user_attrs.get(ATTR_REUSED_FROM) is not None,
        })
    return rows


def score(all_rows: list[dict[str, Any]], ref: Reference, budget: int) -> dict[str, Any]:
    rows = [r for r in all_rows if not r["reused"]][:budget]
    reached = next(
        (i + 1 for i, r in enumerate(rows) if r["feasible"] and r["throughput"] >= TARGET * ref.best_throughput), None
    )
    front = {}
    for k in CHECKPOINTS:
        points = [(r["throughput"], r["latency_p99_ms"]) for r in rows[:k] if r["feasible"]]
        front[str(k)] = hypervolume(points, ref.budget_ms) / ref.hypervolume
    return {
        "trials": len(rows),
        "proposals": len(all_rows),
        "trials_to_target": reached,
        "minutes_to_target": None if reached is None else sum(r["cost_s"] for r in rows[:reached]) / 60,
        "minutes_total": sum(r["cost_s"] for r in rows) / 60,
        "hypervolume_share": front,
    }


def _median(values: list[float | None]) -> float:
    return statistics.median(math.inf if v is None else v for v in values)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seeds": len(runs),
        "median_trials_to_target": _median([r["trials_to_target"] for r in runs]),
        "reached": sum(r["trials_to_target"] is not None for r in runs),
        "median_minutes_to_target": _median([r["minutes_to_target"] for r in runs]),
        "mean_hypervolume_share": {
            k: statistics.fmean(r["hypervolume_share"][k] for r in runs) for k in map(str, CHECKPOINTS)
        },
        "median_trials": statistics.median(r["trials"] for r in runs),
    }


def table(results: dict[str, Any]) -> str:
    """The results as a markdown table, for docs/benchmarks.md."""
    lines = [
        ("| landscape | sampler | seeds | median trials to target (reached) | median minutes to target "
        "| hypervolume share after 10 / 20 / 40 trials |"),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for model, entry in results.get("models", {}).items():
        for label, variants in ((model, entry["variants"]), (f"{model}, redrawn", entry.get("redrawn", {}))):
            for name, v in variants.items():
                hv = v["mean_hypervolume_share"]
                trials = v["median_trials_to_target"]
                minutes = v["median_minutes_to_target"]
                lines.append(
                    f"| {label} | {name} | {v['seeds']} | {'never' if math.isinf(trials) else f'{trials:g}'} "
                    f"({v['reached']}/{v['seeds']}) | {'never' if math.isinf(minutes) else f'{minutes:.1f}'} "
                    f"| {hv['10']:.2f} / {hv['20']:.2f} / {hv['40']:.2f} |"
                )
    return "\n".join(lines)


def run_variant(
    cfg: StudyConfig, variant: dict[str, Any], seeds: range, trials: int,
    landscape_of: Callable[[int], tuple[Path | None, Reference]],
) -> dict[str, Any]:
    """Replays one variant once per seed; ``landscape_of(seed)`` gives the file and its reference."""
    started = time.perf_counter()
    runs = []
    for seed in seeds:
        path, ref = landscape_of(seed)
        # the grid runs to its end; the others get 3x the budget, as a repeated config is not counted
        total = max(trials, ref.configs) if variant["sampler"] == "grid" else 3 * trials
        budget = total if variant["sampler"] == "grid" else trials
        runs.append(score(replay(cfg, variant, seed, total, path), ref, budget))
    return summarize(runs) | {"replay_s_per_study": (time.perf_counter() - started) / len(seeds), "runs": runs}


def _print(label: str, name: str, summary: dict[str, Any]) -> None:
    hv = summary["mean_hypervolume_share"]
    print(
        f"  {label:<9} {name:<14} trials to target: median {summary['median_trials_to_target']:>5} "
        f"({summary['reached']}/{summary['seeds']} reached), minutes {summary['median_minutes_to_target']:.2f}; "
        f"HV share @10/20/40: {hv['10']:.3f} {hv['20']:.3f} {hv['40']:.3f}; "
        f"{summary['replay_s_per_study']:.1f} s per replay",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=max(CHECKPOINTS))
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "gp"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--noise", action="store_true", help="Also replay on landscapes redrawn with noise.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search.json")
    parser.add_argument("--table", action="store_true", help="Print the --out results as markdown and exit.")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results["machine"] = f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    results["noise_cv"] = NOISE_CV
    seeds = range(args.seeds)
    for model in args.models.split(","):
        cfg = load_config(LANDSCAPES / f"{model}.yaml")
        cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"replay": LANDSCAPES / f"{model}.json"})})
        landscape = Landscape.load(LANDSCAPES / f"{model}.json")
        ref = reference(cfg, landscape)
        entry = results.setdefault("models", {}).setdefault(model, {"variants": {}})
        entry["reference"] = ref.__dict__
        print(f"{model}: {ref}")
        with tempfile.TemporaryDirectory() as tmp:
            redrawn: dict[int, tuple[Path | None, Reference]] = {}
            if args.noise:
                for seed in seeds:
                    drawn = redraw(landscape, 1000 + seed)
                    drawn.save(path := Path(tmp) / f"{seed}.json")
                    redrawn[seed] = (path, reference(cfg, drawn))
            for name in args.variants.split(","):
                summary = run_variant(cfg, VARIANTS[name], seeds, args.trials, lambda seed: (None, ref))
                entry["variants"][name] = summary
                _print("recorded", name, summary)
                if args.noise:
                    summary = run_variant(cfg, VARIANTS[name], seeds, args.trials, redrawn.__getitem__)
                    entry.setdefault("redrawn", {})[name] = summary
                    _print("redrawn", name, summary)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
