"""The batcher's queue delay as a fine range: how a search spends its trials where a knob has many
values closer together than the measurements can tell apart.

    python bench/fine_delay.py [--models NAME,...] [--variants bo,bo-cold,...] [--seeds 10]
                               [--trials 20] [--step 100] [--out bench/results/fine_delay.json]

The bundled study files, and the space a study gets by default, search the queue delay from 0 to
20 ms in steps of 100 us: hundreds of configs per batching config, each a neighbour of the next.
No recorded landscape has such a range (each measured a few delays), so this benchmark makes one
from each: every recorded landscape's delays (bench/landscapes/NAME.json) are filled in at
``--step`` between the lowest and highest recorded, each filled-in config's throughput and
latencies taken between its two recorded neighbours' (linear in the delay, on a log scale), the
rest of its record (windows' spread, accuracy, timings) from the nearer one. That is the
landscape's "truth". Each seed then measures it once: every config's throughput and latencies
are multiplied by independent log-normal factors (bench/search.py's ``NOISE_CV``: 3% and 5%), as
a config's reading differs from a reload of the same config.

For each variant (bench/search.py's ``VARIANTS``) and seed, a study is replayed on the measured
landscape for ``--trials`` configs. Reported, per landscape and variant:

- trials to target: configs measured until one whose *true* values are feasible and within 3% of
  the true best (median over seeds; seeds that reached it);
- the true share of the config with the best feasible reading after 10 and 20 trials (mean over
  seeds): what a study would report as its best, as it holds when deployed;
- delay-only trials: configs measured within the first ``--trials`` that differ from a config
  measured before only in the queue delay (mean over seeds).

The filled-in values are a model of the delay's effect between recorded delays, not measurements:
the benchmark judges how a search treats a knob of many near-equal values, not what a delay does.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import search as S  # bench/search.py: the replay harness

from tuner.config import StudyConfig
from tuner.config._search import IntRange
from tuner.replay import Landscape, replay_config
from tuner.samplers import Space
from tuner.study import StudyRunner
from tuner.study._plan import build_space
from tuner.study._results import choose_point, trial_metrics, violation
from tuner.trial import LoadPoint, TrialOutcome

DELAY = "max_queue_delay_us"


def _between(low: LoadPoint, high: LoadPoint, share: float) -> LoadPoint:
    """The point ``share`` of the way from ``low`` to ``high``: throughput and latencies on a log scale."""
    near = low if share < 0.5 else high
    values = {}
    for f in dataclasses.fields(LoadPoint):
        if f.name == "throughput" or f.name.startswith("latency_"):
            a, b = getattr(low, f.name), getattr(high, f.name)
            values[f.name] = math.exp((1 - share) * math.log(a) + share * math.log(b)) if a > 0 and b > 0 else a
    return dataclasses.replace(near, **values)


def fill(landscape: Landscape, step: int) -> tuple[Landscape, int]:
    """The landscape with every batching config's delays filled in at ``step`` between the recorded
    ones (``_between``), and the highest recorded delay."""
    groups: dict[str, dict[int, str]] = {}
    for key, outcome in landscape.outcomes.items():
        spec = outcome.spec
        if not spec.dynamic_batching or outcome.failed:
            continue
        rest = json.dumps({k: v for k, v in json.loads(key).items() if k != DELAY}, sort_keys=True)
        groups.setdefault(rest, {})[spec.max_queue_delay_us] = key
    filled = Landscape(landscape.model, landscape.study, landscape.worker_plan, machine=landscape.machine)
    for key, outcome in landscape.outcomes.items():
        filled.add(outcome, landscape.params[key])
    highest = 0
    for delays in groups.values():
        recorded = sorted(delays)
        highest = max(highest, recorded[-1])
        for low, high in itertools.pairwise(recorded):
            a, b = landscape.outcomes[delays[low]], landscape.outcomes[delays[high]]
            if len(a.points) != len(b.points):
                continue
            for delay in range(low + step, high, step):
                share = (delay - low) / (high - low)
                near = a if share < 0.5 else b
                points = tuple(_between(p, q, share) for p, q in zip(a.points, b.points))
                spec = dataclasses.replace(near.spec, max_queue_delay_us=delay)
                params = {**landscape.params[delays[low if share < 0.5 else high]], DELAY: delay}
                filled.add(dataclasses.replace(near, spec=spec, points=points), params)
    return filled, highest


def fine_config(cfg: StudyConfig, highest: int, step: int) -> StudyConfig:
    space = cfg.search.space.model_copy(update={DELAY: IntRange(low=0, high=highest, step=step)})
    return cfg.model_copy(update={"search": cfg.search.model_copy(update={"space": space})})


def truth(cfg: StudyConfig, landscape: Landscape, space: Space) -> tuple[dict[str, float], float]:
    """Each config's true throughput where it is truly feasible (0 otherwise), and the best of the space's."""
    values: dict[str, float] = {}
    for key, outcome in landscape.outcomes.items():
        values[key] = _feasible_throughput(cfg, outcome)
    best = max(values.get(space.key_of(p), 0.0) for p in space.combinations())
    return values, best


def _feasible_throughput(cfg: StudyConfig, outcome: TrialOutcome) -> float:
    if outcome.failed:
        return 0.0
    metrics = trial_metrics(choose_point(outcome.points, cfg, outcome.accuracy), outcome.accuracy)
    return metrics["throughput"] if violation(metrics, cfg) == 0.0 else 0.0


def replay(
    cfg: StudyConfig, space: Space, variant: dict[str, Any], seed: int, trials: int, path: Path
) -> list[dict[str, Any]]:
    """One replayed study of ``cfg`` (whose space is ``space``) on the landscape at ``path``; per measured
    config: its key, whether its reading was feasible, the reading."""
    settings = {k: v for k, v in variant.items() if k not in S.BO_DEFAULTS}
    search = cfg.search.model_copy(update={"seed": seed, "n_trials": trials, "replay": path, **settings})
    run_cfg = cfg.model_copy(update={"study": f"fine-{seed}", "search": search})
    with S.sampler_defaults(variant):
        summary = StudyRunner(run_cfg, S.MemoryStore()).run()  # type: ignore[arg-type]
    rows = []
    for trial in summary.stored.trials:
        if trial.reused_from is None:
            rows.append({
                "key": space.key_of(trial.params),
                "params": trial.params,
                "feasible": trial.feasible,
                "throughput": trial.metrics.get("throughput", 0.0),
            })
    return rows[:trials]


def score(rows: list[dict[str, Any]], true: dict[str, float], best: float) -> dict[str, Any]:
    reached = next((i + 1 for i, r in enumerate(rows) if true.get(r["key"], 0.0) >= S.TARGET * best), None)
    shares = {}
    for k in (10, 20):
        read = [r for r in rows[:k] if r["feasible"]]
        top = max(read, key=lambda r: r["throughput"]) if read else None
        shares[str(k)] = true.get(top["key"], 0.0) / best if top else 0.0
    seen: set[str] = set()
    delay_only = 0
    for r in rows:
        rest = json.dumps({k: v for k, v in r["params"].items() if k != DELAY}, sort_keys=True)
        delay_only += rest in seen and r["params"].get("dynamic_batching", True)
        seen.add(rest)
    return {"trials_to_target": reached, "true_share_of_best_read": shares, "delay_only": delay_only}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seeds": len(runs),
        "median_trials_to_target": statistics.median(
            math.inf if r["trials_to_target"] is None else r["trials_to_target"] for r in runs
        ),
        "reached": sum(r["trials_to_target"] is not None for r in runs),
        "mean_true_share": {k: statistics.fmean(r["true_share_of_best_read"][k] for r in runs) for k in ("10", "20")},
        "mean_delay_only": statistics.fmean(r["delay_only"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(p.stem for p in sorted(S.LANDSCAPES.glob("*.json"))))
    parser.add_argument("--variants", default="bo,bo-cold")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--step", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fine_delay.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results |= {"machine": S.replay_machine(), "noise_cv": S.NOISE_CV, "step_us": args.step}
    for model in args.models.split(","):
        path = S.LANDSCAPES / f"{model}.json"
        recorded = Landscape.load(path)
        filled, highest = fill(recorded, args.step)
        cfg = fine_config(replay_config(path, ROOT / "model_repository"), highest, args.step)
        space = build_space(cfg, filled.worker_plan)
        true, best = truth(cfg, filled, space)
        size = len(space.combinations())
        near = sum(1 for v in true.values() if v >= S.TARGET * best)
        entry = results.setdefault("models", {}).setdefault(model, {"variants": {}})
        entry |= {"configs": size, "within_3pct": near, "recorded_on": recorded.machine}
        print(f"{model}: {size} configs, delays 0-{highest} us, {near} within 3% of the true best {best:.1f}")
        with tempfile.TemporaryDirectory() as tmp:
            measured = []
            for seed in range(args.seeds):
                # one reading of every config: its values times independent log-normal factors
                S.redraw(filled, 1000 + seed).save(drawn := Path(tmp) / f"{seed}.json")
                measured.append(drawn)
            for name in args.variants.split(","):
                runs = [score(replay(cfg, space, S._variant(name), seed, args.trials, measured[seed]), true, best)
                        for seed in range(args.seeds)]
                summary = entry["variants"][name] = summarize(runs)
                print(f"  {name:>14}: trials to target {summary['median_trials_to_target']} "
                      f"({summary['reached']}/{summary['seeds']}), true share of the best read "
                      f"{summary['mean_true_share']['10']:.3f} / {summary['mean_true_share']['20']:.3f} "
                      f"after 10 / 20, delay-only trials {summary['mean_delay_only']:.1f}", flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
