"""Search efficiency: how many trials and minutes each search strategy needs, on recorded landscapes.

    python bench/search.py [--seeds 20] [--trials 40] [--variants bo,tpe,random,...] [--noise] [--loo]
                           [--models text_detection,...] [--landscape PATH ...] [--out bench/results/search.json]
    python bench/search.py --merge PART.json ... [--loo] --out RESULTS.json

For each landscape (``--models NAME``: bench/landscapes/NAME.json, the grid a study recorded with
``tuner landscape record``, every config measured once on the real server; ``--landscape PATH``:
any landscape file, such as one recorded on another machine) and each search variant, runs the
tuner's own study loop with its trials answered from the file (``search.replay``), once per
seed. The study replayed is the study file NAME.yaml beside the landscape where there is one
(it may set the benchmark's constraints), else the study the landscape file carries
(``tuner.replay.replay_config``). It reports:

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

With --loo, the search defaults are judged by leave-one-landscape-out: the candidates
(``CANDIDATES``: bo with its one-hot or structured surrogate, ``tuner.samplers._bo.SURROGATES``, the one-hot one
also with its variants measured first (``tuner.samplers._bo.VARIANTS_FIRST``), with those and each
throughput's measured noise (``tuner.samplers._bo.MEASURED_NOISE``), with those and the warm start's changes
two at a time (``tuner.samplers._registry.WARM_START_DESIGN``), and TPE, each
with its default startup trials, warm-started or cold; bo's 2 and 8 and TPE's 4 and 16 startup trials
are left out to keep the replays short: of them, the five-landscape run of 2026-12-05 chose only bo with 2,
cold, with minilm held out; ``--candidates`` names others, such as the shipped default and its variants
that each undo one of its choices) and the baselines
(grid, random, TPE) are replayed on every landscape; for each landscape the default is the
candidate with the best score on the *other* landscapes (``tuner.replay.leave_one_out``: the mean
over them of log(median trials to target / grid size), a seed that never reaches the target
counting as twice the budget), chosen among the warm-started candidates and, separately, among
the cold ones, and its figures on the held-out landscape are reported next to the baselines'.
A default is so never scored on a landscape that chose it. The table gives each landscape's grid
size and its configs within 3% of the best; ``--loo --table`` prints it from the --out file.

The results file records the machine that replayed (``machine``) and, per landscape, the
machine that recorded it (``recorded_on``: CPU model, cores, the Triton, ONNX Runtime and
perf_analyzer versions, where the landscape file has them).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optuna._hypervolume import compute_hypervolume

from tuner.config import StudyConfig
from tuner.replay import Landscape, leave_one_out, replay_config, trials_score
from tuner.samplers import DEFAULT_STARTUP, _bo, _registry
from tuner.storage import TrialRecord
from tuner.study import StudyRunner
from tuner.study._plan import build_space
from tuner.study._record import recording_machine
from tuner.study._results import choose_point, trial_metrics, violation
from tuner.trial import LoadPoint, TrialOutcome

LANDSCAPES = ROOT / "bench" / "landscapes"
MODELS = ("text_detection", "digits_forest", "text_recognition")
TARGET = 0.97  # within 3% of the grid's best feasible throughput
CHECKPOINTS = (10, 20, 40)
NOISE_CV = {"throughput": 0.03, "latency": 0.05}
def _warm_and_cold(name: str, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A variant, and its twin without the warm start (``NAME-cold``)."""
    return {name: settings, f"{name}-cold": {**settings, "warm_start": False}}


VARIANTS: dict[str, dict[str, Any]] = {
    **_warm_and_cold("bo", {"sampler": "bo"}),
    "bo-startup8": {"sampler": "bo", "n_startup_trials": 8},
    **_warm_and_cold("bo-mixed", {"sampler": "bo", "variants_first": False}),
    **_warm_and_cold("bo-per-second", {"sampler": "bo", "per_second": True}),
    **_warm_and_cold("bo-structured", {"sampler": "bo", "surrogate": "structured"}),
    "bo-spread-cold": {"sampler": "bo", "spread": True, "warm_start": False},
    **_warm_and_cold("bo-no-noise", {"sampler": "bo", "measured_noise": False}),
    "bo-single": {"sampler": "bo", "warm_start_design": "single"},
    "bo-delay0": {"sampler": "bo", "warm_start_delay_us": 0},
    "bo-delay1000": {"sampler": "bo", "warm_start_delay_us": 1000},
    **_warm_and_cold("bo-config-loads", {"sampler": "bo", "variant_loads": False}),
    **_warm_and_cold("bo-unusable-first", {"sampler": "bo", "unusable_last": False}),
    **_warm_and_cold("bo-bounded", {"sampler": "bo", "bounded_scale": True}),
    **_warm_and_cold("bo-prior", {"sampler": "bo", "gp_prior": True}),
    **_warm_and_cold("bo-structured-prior", {"sampler": "bo", "surrogate": "structured", "gp_prior": True}),
    **_warm_and_cold("bo-average", {"sampler": "bo", "gp_average": True}),
    **_warm_and_cold("bo-threads-knob", {"sampler": "bo", "threads_knob": True}),
    **_warm_and_cold("bo-forest", {"sampler": "bo", "surrogate": "forest"}),
    **_warm_and_cold("bo-forest-mixed", {"sampler": "bo", "surrogate": "forest", "variants_first": False}),
    **_warm_and_cold("bo-waited-any", {"sampler": "bo", "waited_delays_last": False}),
    **_warm_and_cold("bo-config-draw", {"sampler": "bo", "startup_by_knob": False}),
    **_warm_and_cold("bo-centered", {"sampler": "bo", "unknown_at_bound": False}),
    **_warm_and_cold("bo-layout-accuracy", {"sampler": "bo", "variant_accuracy": False}),
    **_warm_and_cold("tpe", {"sampler": "tpe"}),
    "tpe-startup4": {"sampler": "tpe", "n_startup_trials": 4},
    "tpe-startup16": {"sampler": "tpe", "n_startup_trials": 16},
    "nsga2": {"sampler": "nsga2"},
    "gp": {"sampler": "gp"},
    "random": {"sampler": "random"},
    "grid": {"sampler": "grid"},
    "quick": {"sampler": "quick"},
}
#: Variant settings that are module defaults of the samplers (tuner.samplers._bo, tuner.samplers._registry),
#: not study settings: the module and the name of each.
BO_DEFAULTS = {
    "surrogate": (_bo, "DEFAULT_SURROGATE"), "variants_first": (_bo, "VARIANTS_FIRST"),
    "per_second": (_bo, "PER_SECOND"), "spread": (_bo, "SPREAD_STARTUP"), "measured_noise": (_bo, "MEASURED_NOISE"),
    "warm_start_design": (_registry, "WARM_START_DESIGN"), "variant_loads": (_bo, "VARIANT_LOADS"),
    "unusable_last": (_bo, "UNUSABLE_LAST"), "warm_start_delay_us": (_registry, "WARM_START_QUEUE_DELAY_US"),
    "bounded_scale": (_bo, "BOUNDED_SCALE"), "threads_knob": (_bo, "THREADS_KNOB"),
    "gp_prior": (_bo, "GP_PRIOR"), "gp_average": (_bo, "GP_AVERAGE"),
    "waited_delays_last": (_bo, "WAITED_DELAYS_LAST"), "startup_by_knob": (_bo, "STARTUP_BY_KNOB"),
    "unknown_at_bound": (_bo, "UNKNOWN_AT_BOUND"), "variant_accuracy": (_bo, "VARIANT_ACCURACY"),
}
#: The defaults --loo chooses among, the simpler of two alike first (equal scores go to the first).
CANDIDATES: dict[str, dict[str, Any]] = {
    f"{name}{'' if warm else '-cold'}-startup{startup}": {
        "sampler": sampler, "n_startup_trials": startup, "warm_start": warm, **extra
    }
    for warm in (True, False)
    for name, sampler, extra, startups in (
        ("bo", "bo", {"variants_first": False, "spread": False, "measured_noise": False}, (4,)),
        ("bo-variants", "bo", {"variants_first": True, "spread": False, "measured_noise": False}, (4,)),
        ("bo-structured", "bo", {"surrogate": "structured", "variants_first": False, "spread": False,
                                 "measured_noise": False}, (4,)),
        ("tpe", "tpe", {}, (8,)),
    )
    for startup in startups
}
# Startup configs spread over the space differ from random ones only where the warm start does not fill the
# startup: cold.
CANDIDATES["bo-variants-spread-cold-startup4"] = {
    "sampler": "bo", "n_startup_trials": 4, "warm_start": False, "variants_first": True, "spread": True,
    "measured_noise": False,
}
# Each throughput's noise from the spread of its windows (tuner.samplers._bo.MEASURED_NOISE), warm and cold.
for _warm in (True, False):
    CANDIDATES[f"bo-variants-noise{'' if _warm else '-cold'}-startup4"] = {
        "sampler": "bo", "n_startup_trials": 4, "warm_start": _warm, "variants_first": True, "spread": False,
        "measured_noise": True,
    }
# The warm start's changes two at a time (tuner.samplers._registry.WARM_START_DESIGN): warm only.
CANDIDATES["bo-variants-noise-pairs-startup4"] = {
    "sampler": "bo", "n_startup_trials": 4, "warm_start": True, "variants_first": True, "spread": False,
    "measured_noise": True, "warm_start_design": "pairs",
}
#: What --loo sets the chosen defaults against, with the start (cold or warm) of their row.
BASELINES = {"grid": "cold", "random": "cold", "tpe-cold": "cold", "tpe": "warm"}


class MemoryStore:
    """The parts of tuner.storage._store.Store a study uses, in memory: replays need no database."""

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
    #: The median trials until a shuffled grid (the default config first, then the others in a random
    #: order) measures one of the ``near_best`` configs: exact, over every order (``shuffled_median``)
    shuffled: int = 0


def shuffled_median(configs: int, near_best: int) -> int:
    """The median trial at which a grid measured in a random order, after the default config (taken
    here as not near the best), first reaches one of ``near_best`` of its ``configs``: the least ``t``
    where the chance that none of the first ``t - 1`` shuffled configs is near the best is at most 1/2."""
    rest, none_yet = configs - 1, 1.0
    for drawn in range(rest):
        none_yet *= (rest - near_best - drawn) / (rest - drawn)
        if none_yet <= 0.5:
            return drawn + 2
    return configs


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
    """The grid's figures: over the configs of the study's space that the landscape holds. A landscape
    recorded over a larger space (a queue delay per config at max batch size 1, one config since)
    keeps its other readings, which no replay proposes."""
    budget = cfg.constraints["latency_p99_ms"].max
    assert budget is not None
    space = build_space(cfg, landscape.worker_plan)
    keys = {space.key_of(params) for params in space.combinations()}
    outcomes = [outcome for key, outcome in landscape.outcomes.items() if key in keys]
    feasible = []
    for outcome in outcomes:
        if outcome.failed:
            continue
        metrics = trial_metrics(choose_point(outcome.points, cfg, outcome.accuracy), outcome.accuracy)
        if violation(metrics, cfg) == 0.0:
            feasible.append((metrics["throughput"], metrics["latency_p99_ms"]))
    best = max(t for t, _ in feasible)
    near = sum(1 for t, _ in feasible if t >= TARGET * best)
    return Reference(
        configs=len(outcomes),
        feasible=len(feasible),
        best_throughput=best,
        near_best=near,
        hypervolume=hypervolume(feasible, budget),
        budget_ms=budget,
        shuffled=shuffled_median(len(outcomes), near),
    )


@contextlib.contextmanager
def sampler_defaults(settings: dict[str, Any]) -> Iterator[None]:
    """Sets, for the block, the module defaults of the samplers that ``settings`` names (``BO_DEFAULTS``: the
    bo sampler's model and its order of variants are defaults of the sampler, not study settings), and
    restores them after it; the other settings are left alone."""
    swapped = {BO_DEFAULTS[k]: v for k, v in settings.items() if k in BO_DEFAULTS}
    before = {(module, name): getattr(module, name) for module, name in swapped}
    try:
        for (module, name), value in swapped.items():
            setattr(module, name, value)
        yield
    finally:
        for (module, name), value in before.items():
            setattr(module, name, value)


def replay(cfg: StudyConfig, variant: dict[str, Any], seed: int, trials: int, landscape: Path | None = None
           ) -> list[dict[str, Any]]:
    """One replayed study; per trial: feasible, throughput, p99, and the seconds it cost to measure."""
    replayed = {"replay": landscape} if landscape is not None else {}
    settings = {k: v for k, v in variant.items() if k not in BO_DEFAULTS}
    search = cfg.search.model_copy(update={"seed": seed, "n_trials": trials, **settings, **replayed})
    run_cfg = cfg.model_copy(update={"study": f"replay-{seed}", "search": search})
    with sampler_defaults(variant):
        summary = StudyRunner(run_cfg, MemoryStore()).run()  # type: ignore[arg-type]
    rows = []
    for trial in summary.stored.trials:
        rows.append({
            "feasible": trial.feasible,
            "throughput": trial.metrics.get("throughput", 0.0),
            "latency_p99_ms": trial.metrics.get("latency_p99_ms", math.inf),
            "cost_s": sum(trial.timings_s.values()),
            "reused": trial.reused_from is not None,
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
        # the grid runs to its end; bo proposes only configs not yet measured, so the budget is its
        # trials; the others get 3x the budget, as a repeated config is not counted
        if variant["sampler"] == "grid":
            total = max(trials, ref.configs)
        else:
            total = trials if variant["sampler"] == "bo" else 3 * trials
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


def loo(results: dict[str, Any], trials: int, candidates: list[str] | None = None) -> dict[str, Any]:
    """The leave-one-landscape-out rows of every landscape, from the replays in ``results``, choosing among
    ``candidates`` (names of ``VARIANTS`` or ``CANDIDATES``; None: every one of ``CANDIDATES``)."""
    models = results["models"]
    candidates = candidates or list(CANDIDATES)
    rows: dict[str, Any] = {}
    for start, warm in (("warm", True), ("cold", False)):
        pool = [name for name in candidates if _variant(name).get("warm_start", True) is warm]
        scores = {
            name: {
                model: trials_score(
                    [r["trials_to_target"] for r in entry["variants"][name]["runs"]], trials, entry["reference"]["configs"]
                )
                for model, entry in models.items()
            }
            for name in pool
        }
        for model, choice in leave_one_out(scores, pool).items():
            figures = _figures(models[model]["variants"][choice.candidate])
            rows.setdefault(model, []).append(
                {"start": start, "strategy": f"default: {choice.candidate}", "chosen_on": list(choice.chosen_on),
                 "score_on_others": choice.score, **figures}
            )
    for model, entry in models.items():
        for name, start in BASELINES.items():
            rows[model].append({"start": start, "strategy": name, "chosen_on": [], **_figures(entry["variants"][name])})
        rows[model].sort(key=lambda row: row["start"])
    return {
        "budget": trials,
        "candidates": candidates,
        "score": "mean over the other landscapes of log(median trials to target / grid size), never = 2 x budget",
        "landscapes": {
            model: {"grid_size": entry["reference"]["configs"], "near_best": entry["reference"]["near_best"],
                    "rows": rows[model]}
            for model, entry in models.items()
        },
    }


def _variant(name: str) -> dict[str, Any]:
    return VARIANTS.get(name) or CANDIDATES[name]


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("seeds", "median_trials_to_target", "reached", "mean_hypervolume_share")
    return {key: summary[key] for key in keys}


def loo_table(held_out: dict[str, Any]) -> str:
    """The leave-one-out rows as a markdown table, for docs/benchmarks.md."""
    lines = [
        ("| landscape | grid size | within 3% of best | start | strategy | chosen on "
         "| median trials to target (reached) | hypervolume share after 10 / 20 / 40 trials |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, entry in held_out["landscapes"].items():
        for row in entry["rows"]:
            trials = row["median_trials_to_target"]
            hv = row["mean_hypervolume_share"]
            lines.append(
                f"| {model} | {entry['grid_size']} | {entry['near_best']} | {row['start']} | {row['strategy']} "
                f"| {', '.join(row['chosen_on']) or '-'} "
                f"| {'never' if math.isinf(trials) else f'{trials:g}'} ({row['reached']}/{row['seeds']}) "
                f"| {hv['10']:.2f} / {hv['20']:.2f} / {hv['40']:.2f} |"
            )
    return "\n".join(lines)


def replay_machine() -> dict[str, Any]:
    """The machine that replays: as a landscape's, with when it replayed."""
    machine = recording_machine()
    del machine["recorded"]
    return {"replayed": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **machine}


def landscape_paths(args: argparse.Namespace) -> list[Path]:
    """--landscape's files, else bench/landscapes/NAME.json of each of --models."""
    if args.landscape:
        return [Path(p) for p in args.landscape]
    return [LANDSCAPES / f"{model}.json" for model in args.models.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=max(CHECKPOINTS))
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "gp"))
    parser.add_argument("--models", default=",".join(MODELS), help="Landscapes under bench/landscapes/, by name.")
    parser.add_argument(
        "--landscape", action="append", metavar="PATH",
        help="A landscape file, replayed as it is (repeatable; replaces --models).",
    )
    parser.add_argument("--noise", action="store_true", help="Also replay on landscapes redrawn with noise.")
    parser.add_argument(
        "--loo", action="store_true",
        help="Replay the candidate defaults and the baselines, and choose the defaults leave-one-landscape-out.",
    )
    parser.add_argument(
        "--candidates", help="With --loo: the defaults to choose among, comma-separated names of variants "
                             "(default: every candidate of CANDIDATES)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search.json")
    parser.add_argument("--table", action="store_true", help="Print the --out results as markdown and exit.")
    parser.add_argument(
        "--merge", nargs="+", type=Path, metavar="PATH",
        help="Merge the landscapes of these results files (one replay process each; a later file's variants "
             "replace an earlier one's) into --out; with --loo, choose the defaults over all of them.",
    )
    args = parser.parse_args()
    candidates = args.candidates.split(",") if args.candidates else None
    if args.merge:
        merged: dict[str, Any] = {"models": {}}
        for path in args.merge:
            part = json.loads(path.read_text())
            merged["machine"], merged["noise_cv"] = part["machine"], part["noise_cv"]
            for model, entry in part["models"].items():  # a later file's variants replace an earlier one's
                known = merged["models"].setdefault(model, {"variants": {}})
                known |= {k: v for k, v in entry.items() if k != "variants"}
                known["variants"] |= entry["variants"]
        if args.loo:
            merged["loo"] = loo(merged, args.trials, candidates)
            print(loo_table(merged["loo"]))
        args.out.write_text(json.dumps(merged, indent=1) + "\n")
        return
    if args.table:
        stored = json.loads(args.out.read_text())
        print(loo_table(stored["loo"]) if args.loo else table(stored))
        return
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results["machine"] = replay_machine()
    results["noise_cv"] = NOISE_CV
    seeds = range(args.seeds)
    variants = list(dict.fromkeys([*(candidates or CANDIDATES), *BASELINES])) if args.loo else args.variants.split(",")
    for path in landscape_paths(args):
        cfg = replay_config(path, ROOT / "model_repository")
        landscape = Landscape.load(path)
        ref = reference(cfg, landscape)
        model = path.stem
        entry = results.setdefault("models", {}).setdefault(model, {"variants": {}})
        entry |= {"file": str(path), "reference": ref.__dict__, "recorded_on": landscape.machine}
        print(f"{model}: {ref}")
        with tempfile.TemporaryDirectory() as tmp:
            redrawn: dict[int, tuple[Path | None, Reference]] = {}
            if args.noise:
                for seed in seeds:
                    drawn = redraw(landscape, 1000 + seed)
                    drawn.save(drawn_path := Path(tmp) / f"{seed}.json")
                    redrawn[seed] = (drawn_path, reference(cfg, drawn))
            replayed: dict[str, dict[str, Any]] = {}  # a baseline that is also a candidate is replayed once
            for name in variants:
                variant = _variant(name)
                startup = variant.get("n_startup_trials")
                startup = DEFAULT_STARTUP.get(variant["sampler"]) if startup is None else startup
                same = json.dumps({"warm_start": True, **variant, "n_startup_trials": startup}, sort_keys=True)
                if same not in replayed:
                    replayed[same] = run_variant(cfg, variant, seeds, args.trials, lambda seed, ref=ref: (None, ref))
                summary = entry["variants"][name] = replayed[same]
                _print("recorded", name, summary)
                if args.noise:
                    summary = run_variant(cfg, variant, seeds, args.trials, redrawn.__getitem__)
                    entry.setdefault("redrawn", {})[name] = summary
                    _print("redrawn", name, summary)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.loo:
        models = {p.stem: results["models"][p.stem] for p in landscape_paths(args)}
        results["loo"] = loo({"models": models}, args.trials, candidates)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(loo_table(results["loo"]))


if __name__ == "__main__":
    main()
