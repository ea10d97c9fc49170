"""Which configs tie with the leader: what each rule recommends, judged by the configs' recorded throughput.

    python bench/verdict_rule.py [--seeds 2000] [--configs 12] [--remeasure 3] [--out bench/results/verdict_rule.json]

A study recommends a config from a few noisy loads of each (tuner.study._verdict): the leader is the
best median; the configs that tie with it are those its loads cannot tell apart, and the cheapest of
them is recommended. Three rules for the tie are compared, on the same simulated loads, with the leader itself for reference:

- ``overlap``: every config whose interval overlaps the leader's ties, and the cheapest wins by its
  instances, threads, precision, then no batching, a smaller batch and a shorter queue delay (the rule
  before 2026-12-07);
- ``leader interval``: every config whose median lies in the leader's interval ties, the same cost;
- ``resources`` (the rule since 2026-12-07): those ties, and the cheapest by its instances, threads and
  precision only, of equally cheap ones the best median;
- ``leader``: the leader, never a tied config.

For each recorded landscape (bench/landscapes/*.json, with the study file beside it where there is one)
the feasible configs and their throughput are read as the truth. Each simulated study measures
``--configs`` of them chosen at random, one load each; a load reads the config's throughput times a
log-normal factor (the reload noise: coefficient of variation 3% and 10%, two runs), and its windows'
spread is the one recorded for that config. Then ``--remeasure`` more loads go to the contenders (the
configs whose intervals overlap the leader's: tuner.study._remeasure's order, fewest loads first, at
most 3 loads a config). Each rule's recommendation is scored by its config's recorded throughput
against the best recorded throughput among the configs the study measured (1.0: the best it could
have picked), how often it is within 3% of that, and how often the tie went to a config cheaper than
the leader.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.replay import Landscape, replay_config
from tuner.storage import StoredTrial, StudyInfo
from tuner.study import config_results, recommend
from tuner.study._plan import build_space
from tuner.study._results import choose_point, trial_metrics, violation
from tuner.study._verdict import ConfigResult

LANDSCAPES = ROOT / "bench" / "landscapes"
RELOAD_CV = (0.03, 0.10)
MAX_LOADS = 3
RULES = ("overlap", "leader interval", "resources", "leader")
INFO = StudyInfo(name="s", directions=("maximize",), metric_names=("throughput",), study_file={})


def feasible_configs(path: Path) -> list[dict[str, Any]]:
    """The landscape's feasible configs in its study's space: spec, recorded throughput and window spread."""
    cfg = replay_config(path)
    landscape = Landscape.load(path)
    space = build_space(cfg, landscape.worker_plan)
    keys = {space.key_of(params) for params in space.combinations()}
    found = []
    for key, outcome in landscape.outcomes.items():
        if key not in keys or outcome.failed:
            continue
        metrics = trial_metrics(choose_point(outcome.points, cfg, outcome.accuracy), outcome.accuracy)
        if violation(metrics, cfg) == 0.0:
            found.append({
                "spec": json.loads(outcome.spec.key()),
                "throughput": metrics["throughput"],
                "spread_pct": float(metrics.get("throughput_spread_pct", 0.0)),
            })
    return found


def _load(number: int, config: int, configs: list[dict[str, Any]], rng: np.random.Generator, cv: float) -> StoredTrial:
    truth = configs[config]
    value = truth["throughput"] * math.exp(rng.normal(0.0, cv))
    return StoredTrial(
        number=number, trial_id=number, state=TrialState.COMPLETE, params=truth["spec"] | {"config": config},
        values=(value,), constraints={}, metrics={"throughput": value, "throughput_spread_pct": truth["spread_pct"]},
        spec_key=f"{config}",
    )


def simulate(configs: list[dict[str, Any]], rng: np.random.Generator, cv: float, measured: int, remeasure: int
             ) -> dict[str, float] | None:
    """One study; per rule, the recommendation's recorded throughput over the best measured config's."""
    picked = [int(i) for i in rng.choice(len(configs), size=min(measured, len(configs)), replace=False)]
    if len(picked) < 2:
        return None
    trials = [_load(n, c, configs, rng, cv) for n, c in enumerate(picked)]
    for _ in range(remeasure):
        rec = recommend(config_results(trials, INFO), INFO)
        assert rec is not None
        room = [r for r in rec.contenders if len(r.loads) < MAX_LOADS]
        if not room:
            break
        nxt = min(room, key=lambda r: (len(r.loads), -r.values[0], r.first.number))
        trials.append(_load(len(trials), int(nxt.params["config"]), configs, rng, cv))
    rec = recommend(config_results(trials, INFO), INFO)
    assert rec is not None
    choices = {
        "overlap": min(rec.contenders, key=lambda r: (_full_cost(r), -r.values[0], r.first.number)),
        "leader interval": min(rec.tied, key=lambda r: (_full_cost(r), -r.values[0], r.first.number)),
        "resources": rec.config,
        "leader": rec.leader,
    }
    best = max(configs[c]["throughput"] for c in picked)
    shares = {rule: configs[int(r.params["config"])]["throughput"] / best for rule, r in choices.items()}
    return shares | {f"{rule}, cheaper": float(r is not rec.leader) for rule, r in choices.items()}


def _full_cost(result: ConfigResult) -> tuple[float, ...]:
    """The cost ties were broken by before 2026-12-07: resources, then no batching, a smaller batch, a shorter delay."""
    spec = result.first.spec
    batching = bool(spec.get("dynamic_batching", False))
    return (*result.cost(), float(batching), spec.get("max_batch_size", 0),
            spec.get("max_queue_delay_us", 0) if batching else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--configs", type=int, default=12)
    parser.add_argument("--remeasure", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "verdict_rule.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"seeds": args.seeds, "configs": args.configs, "remeasure": args.remeasure, "runs": {}}
    for cv in RELOAD_CV:
        per_landscape = {}
        for path in sorted(LANDSCAPES.glob("*.json")):
            configs = feasible_configs(path)
            rng = np.random.default_rng(0)
            runs = [r for _ in range(args.seeds) if (r := simulate(configs, rng, cv, args.configs, args.remeasure))]
            if not runs:
                continue
            per_landscape[path.stem] = {
                rule: {
                    "mean_share_of_best": round(statistics.fmean(r[rule] for r in runs), 4),
                    "within_3pct": round(sum(r[rule] >= 0.97 for r in runs) / len(runs), 4),
                    "worst": round(min(r[rule] for r in runs), 4),
                    "cheaper_than_leader": round(statistics.fmean(r[f"{rule}, cheaper"] for r in runs), 4),
                }
                for rule in RULES
            } | {"feasible_configs": len(configs)}
            row = per_landscape[path.stem]
            print(f"cv {cv:.2f} {path.stem:<26} ({len(configs):3d} feasible) "
                  + "  ".join(f"{rule}: mean {row[rule]['mean_share_of_best']:.4f}, within 3% {row[rule]['within_3pct']:.3f}, "
                              f"worst {row[rule]['worst']:.3f}, cheaper {row[rule]['cheaper_than_leader']:.3f}" for rule in RULES), flush=True)
        results["runs"][f"reload_cv_{cv:.2f}"] = per_landscape
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
