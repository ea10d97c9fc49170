"""Studies written into a real storage as the study loop writes them, from trials of real studies.

The loads come from tests/data/measured_trials.json (digits_forest on the embedded Triton, measured
by perf_analyzer): each keeps its measured curve, server windows and spec; a test changes only the
judged point's numbers it is about (a re-measurement's throughput, a p99 over the budget), so a
config can have several loads that differ as real loads do.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from tuner.model_info import read_model_info
from tuner.storage import (
    ATTR_DEFAULT,
    ATTR_FAIL_REASON,
    ATTR_METRICS,
    ATTR_REMEASURE_OF,
    ATTR_SERVER,
    ATTR_SPEC_KEY,
    ATTR_STUDY_FILE,
    Store,
)
from tuner.trial import InstanceKind, LoadPoint, TrialOutcome, TrialSpec
from tuner.triton import build_model_config, to_pbtxt

ENTRIES = json.loads((Path(__file__).parent / "data" / "measured_trials.json").read_text())
#: Configs of digits_forest measured at concurrency 1, 4 and 8, and one that failed (no INT8 variant).
PLAIN = "study digits-report (digits_forest), trial 0"  # 1 instance, no batching: 2318 infer/s, p99 0.61 ms
BATCHED = "study digits-report (digits_forest), trial 1"  # 2 instances, batches of 8: 5868 infer/s, p99 2.81 ms
BATCH_OF_ONE = "study digits-report (digits_forest), trial 2"  # batching on, max batch 1: 3395 infer/s, p99 2.35 ms
FAILED = "study digits-report (digits_forest), trial 3"
#: A config measured at one concurrency (the text detector, FP32).
ONE_CONCURRENCY = "study td-precision (text_detection), trial 0"


#: One distribution per param over every value the entries take (Optuna keeps a param's distribution fixed).
_DISTRIBUTIONS = {
    name: optuna.distributions.CategoricalDistribution(sorted({e["params"][name] for e in ENTRIES if name in e["params"]},
                                                              key=str))
    for name in {n for e in ENTRIES for n in e["params"]}
}


def entry(source: str) -> dict[str, Any]:
    return next(e for e in ENTRIES if e["source"].startswith(source))


@dataclass(frozen=True)
class Load:
    """One trial to write: a measured entry, and what this load changes of its judged point.

    Attributes:
        source: The entry of measured_trials.json.
        changes: LoadPoint fields of the judged point that this load measured differently.
        remeasure_of: The trial whose config this load measured again.
        default: The model's default config.
        attrs: More of the trial's user attributes, as the study loop sets them.
    """

    source: str
    changes: dict[str, float] = dataclasses.field(default_factory=dict)
    remeasure_of: int | None = None
    default: bool = False
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)


def write_study(
    store: Store, name: str, loads: list[Load], bounds: dict[str, dict[str, float | None]], onnx: Path | None = None,
    model: dict[str, str] | None = None, config_pbtxt: str | None = None,
) -> optuna.Study:
    """A study of ``loads`` in ``store`` (objectives: throughput up, p99 down; constraints: ``bounds``).

    ``model`` replaces the study file's model section (digits_forest at ``onnx``), and ``config_pbtxt``
    the config each trial stores.
    """
    study = optuna.create_study(study_name=name, storage=store.optuna, directions=["maximize", "minimize"])
    study.set_metric_names(["throughput", "latency_p99_ms"])
    model = model or {"name": "digits_forest", "path": str(onnx) if onnx else "model.onnx"}
    study.set_user_attr(ATTR_STUDY_FILE, {
        "study": name, "model": model, "storage": store.url, "constraints": bounds,
        "objectives": [{"metric": "throughput", "direction": "maximize"},
                       {"metric": "latency_p99_ms", "direction": "minimize"}],
    })
    info = read_model_info(onnx) if onnx else None
    for load in loads:
        _write_trial(study, store, load, bounds, info, config_pbtxt)
    return study


def _write_trial(
    study: optuna.Study, store: Store, load: Load, bounds: dict, info: Any, config_pbtxt: str | None = None
) -> None:
    data = entry(load.source)
    spec = TrialSpec(**{**data["spec"], "kind": InstanceKind(data["spec"]["kind"])})
    study.enqueue_trial(data["params"])  # as the study loop does for the default config: these params, asked
    trial = study.ask({name: _DISTRIBUTIONS[name] for name in data["params"]})
    pbtxt = to_pbtxt(build_model_config("digits_forest", info, spec)) if info else 'name: "digits_forest"\n'
    pbtxt = config_pbtxt or pbtxt
    if data["state"] == "FAIL":
        trial.set_user_attr(ATTR_FAIL_REASON, data["fail_reason"])
        store.save_outcome(study.study_name, trial._trial_id, trial.number,
                           TrialOutcome(spec, pbtxt, error=data["fail_reason"]))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    metrics = {**data["metrics"], **load.changes}
    judged = metrics["concurrency"]
    curve = [LoadPoint(**p) for p in data["curve"]]
    fields = {f.name for f in dataclasses.fields(LoadPoint)}
    curve = [LoadPoint(**{k: v for k, v in metrics.items() if k in fields}) if p.concurrency == judged else p
             for p in curve]
    store.save_outcome(study.study_name, trial._trial_id, trial.number, TrialOutcome(spec, pbtxt, tuple(curve)))
    for key, value in ((ATTR_METRICS, metrics), (ATTR_SERVER, data["server"]), (ATTR_SPEC_KEY, spec.key())):
        trial.set_user_attr(key, value)
    if load.default:
        trial.set_user_attr(ATTR_DEFAULT, True)
    if load.remeasure_of is not None:
        trial.set_user_attr(ATTR_REMEASURE_OF, load.remeasure_of)
    for key, value in load.attrs.items():
        trial.set_user_attr(key, value)
    for metric, bound in bounds.items():
        value = metrics[metric]
        excess = [value - bound["max"]] if bound.get("max") is not None else []
        excess += [bound["min"] - value] if bound.get("min") is not None else []
        trial.set_constraint(metric, max(excess))
    study.tell(trial, [metrics["throughput"], metrics["latency_p99_ms"]])
