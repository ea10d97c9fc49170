"""The explanation rules, each on trials of real short studies that trigger it.

tests/data/measured_trials.json holds trials of real studies (digits_forest and the PP-OCRv4
text detector on the embedded Triton, perf_analyzer or the builtin engine, this 2-core machine
shared with other jobs), written by tests/data/capture_trials.py: the judged point, the curve,
the server's windows, the spec, the constraints and the study's bounds, as stored.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tuner.reports import explain_trial
from tuner.reports._explain import Explanation, _trust, consistent, explain
from tuner.storage import TrialRecord, point_of, read_trial
from tuner.storage import _stored as rs
from tuner.trial import LoadPoint

_DATA = json.loads((Path(__file__).parent / "data" / "measured_trials.json").read_text())


def _entry(source: str) -> dict[str, Any]:
    return next(e for e in _DATA if e["source"].startswith(source))


def _explain(entry: dict[str, Any], variants: bool = True, **changes: Any) -> list[Explanation]:
    point = dataclasses.replace(point_of(entry["metrics"]), **changes)
    return explain(
        point, spec=entry["spec"], servers=entry["server"], curve=[LoadPoint(**p) for p in entry["curve"]],
        metrics=entry["metrics"], constraints=entry["constraints"], bounds=entry["bounds"], variants=variants,
    )


def _rules(explanations: list[Explanation]) -> list[str]:
    return [e.rule for e in explanations]


def _text(explanations: list[Explanation], rule: str) -> str:
    return next(e.text for e in explanations if e.rule == rule)


def test_queue_dominates_one_instance_at_concurrency_4() -> None:
    entry = _entry("study digits-report (digits_forest), trial 2")  # 1 instance, max batch 1, concurrency 4
    found = _explain(entry)
    assert "queue" in _rules(found) and "compute" not in _rules(found)
    text = _text(found, "queue")
    assert "More instances (now 1)" in text and f"{entry['metrics']['server_queue_ms']:.3g} ms" in text


def test_compute_dominates_the_text_detector() -> None:
    found = _explain(_entry("study td-precision (text_detection), trial 0"))
    assert "compute" in _rules(found) and "queue" not in _rules(found)
    assert "accelerator or a lower precision" in _text(found, "compute")


def test_a_model_without_variants_is_not_told_to_change_its_accelerator() -> None:
    """A python-backend model (StudyInfo.has_variants false) has no accelerator or precision to change."""
    found = _explain(_entry("study td-precision (text_detection), trial 0"), variants=False)
    text = _text(found, "compute")
    assert "A faster accelerator" not in text and "lower precision (now" not in text
    assert "The model's own code is where to shorten it" in text


def test_most_time_outside_the_server_over_http() -> None:
    found = _explain(_entry("study digits-http (digits_forest), trial 2"))
    assert "overhead" in _rules(found)


def test_batches_stay_at_one_when_the_delay_is_too_short() -> None:
    entry = _entry("study digits-rules (digits_forest), trial 5")  # batching on, delay 0, 1 instance
    window = entry["server"]["2"]
    assert window["mean_batch"] <= 1.1 < window["executions"]
    found = _explain(entry)
    text = _text(found, "batch_of_one")
    assert "concurrency 2" in text and "queue delay of 0 us is too short" in text
    assert f"{window['batch_sizes']['1']} of {window['executions']}" in text


def test_batches_formed_are_reported_not_blamed() -> None:
    found = _explain(_entry("study digits-report (digits_forest), trial 1"))  # mean batch 7.85 at concurrency 8
    assert "batches" in _rules(found) and "batch_of_one" not in _rules(found)


def test_a_failed_constraint_says_which_and_by_how_much() -> None:
    entry = _entry("study digits-rules (digits_forest), trial 4")
    excess = entry["constraints"]["latency_p99_ms"]
    assert excess > 0
    text = _text(_explain(entry), "constraint")
    limit = entry["bounds"]["latency_p99_ms"]["max"]
    assert f"limit of {limit:.4g} ms" in text and f"by {excess:.3g} ms" in text
    assert f"{excess / limit:.0%}" in text


def test_a_failed_trial_keeps_the_reason() -> None:
    entry = _entry("study digits-report (digits_forest), trial 3")
    trial = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={rs.ATTR_FAIL_REASON: entry["fail_reason"]})
    (found,) = explain_trial(read_trial(trial))
    assert found.rule == "failed" and "no INT8 variant" in found.text and "tries no other config of that precision" in found.text


def test_a_flat_curve_is_saturated() -> None:
    found = _explain(_entry("study digits-saturate (digits_forest), trial 0"))
    assert "Saturated from concurrency 2" in _text(found, "saturated")


def test_points_whose_throughput_and_latency_disagree_are_flagged() -> None:
    # perf_analyzer's fixed-count fallback after unstable windows reported ~100 infer/s at 1 ms mean latency.
    entry = _entry("study digits-report (digits_forest), trial 0")
    bad = [LoadPoint(**p) for p in entry["curve"] if not consistent(LoadPoint(**p))]
    assert [p.concurrency for p in bad] == [4, 8]
    assert "concurrency 4" in _text(_explain(entry), "inconsistent")
    assert "inconsistent" not in _rules(_explain(_entry("study digits-report (digits_forest), trial 1")))


def test_unstable_windows_and_accuracy_drop_of_fp16() -> None:
    found = _explain(_entry("study td-precision (text_detection), trial 2"))
    assert {"unstable", "accuracy", "compute"} <= set(_rules(found))
    assert "(fp16)" in _text(found, "accuracy")
    assert "on throughput or on latency" in _text(found, "unstable"), "the small spread of the windows kept is no contradiction"


def test_an_unstable_point_says_the_spread_of_the_windows_it_kept() -> None:
    point = LoadPoint(concurrency=8, throughput=5593.0, latency_p50_ms=1.0, latency_p90_ms=2.0, latency_p95_ms=2.5,
                      latency_p99_ms=3.0, latency_avg_ms=1.4, stable=False, throughput_spread_pct=2.7)
    (said,) = [e.text for e in _trust(point, [point]) if e.rule == "unstable"]
    assert "three more windows taken as they came, whose throughputs spread 3%" in said


def test_other_processes_on_the_cores_flag_the_window() -> None:
    entry = _entry("study digits-loadgen (digits_forest), trial 0")  # the builtin engine's CPU monitor flagged it
    assert entry["metrics"]["contaminated"] is True
    assert f"{entry['metrics']['other_cpu_pct']:.0f}% CPU" in _text(_explain(entry), "contaminated")


def test_a_saturated_load_generator_makes_the_throughput_a_floor() -> None:
    # The builtin engine sets loadgen_saturated above 90% of a core on its loop; no run on this shared
    # 2-core machine got there (56% at concurrency 32), so the flag is set on that real point here.
    entry = _entry("study digits-loadgen (digits_forest), trial 0")
    found = _explain(entry, loadgen_saturated=True, loadgen_cpu_pct=97.0)
    assert "is a floor, not the server's limit" in _text(found, "loadgen_saturated")
    assert "loadgen_saturated" not in _rules(_explain(entry))


def test_a_load_generator_beside_the_server_is_named_with_its_share_of_the_cpu() -> None:
    # the builtin engine's loop beside the server on this 2-core machine: 56% of a core against the server's 75%
    entry = _entry("study digits-loadgen (digits_forest), trial 0")
    server, loadgen = entry["metrics"]["server_cpu_pct"], entry["metrics"]["loadgen_cpu_pct"]

    text = _text(_explain(entry), "loadgen_share")

    assert f"took {loadgen / (server + loadgen):.0%} of the CPU" in text and "load.shared_memory: system" in text
    assert "loadgen_share" not in _rules(_explain(entry, loadgen_cpu_pct=server / 20))  # a twentieth: not worth a word
    assert "loadgen_share" not in _rules(_explain(entry, server_cpu_pct=0.0))  # the server is on another machine
    saturated = _rules(_explain(entry, loadgen_saturated=True))
    assert "loadgen_saturated" in saturated and "loadgen_share" not in saturated


@pytest.mark.parametrize("entry", _DATA, ids=[e["source"] for e in _DATA])
def test_every_stored_trial_reads_through_explain_trial(entry: dict[str, Any]) -> None:
    """explain_trial on the stored form gives what explain gives on the parts."""
    state = TrialState[entry["state"]]
    attrs = {rs.ATTR_METRICS: entry["metrics"], rs.ATTR_SERVER: entry["server"], rs.ATTR_FAIL_REASON: entry["fail_reason"]}
    attrs = {k: v for k, v in attrs.items() if v is not None}
    if state == TrialState.COMPLETE:
        trial = optuna.trial.create_trial(
            state=state, values=[entry["metrics"]["throughput"]], user_attrs=attrs, constraints=entry["constraints"],
        )
    else:
        trial = optuna.trial.create_trial(state=state, user_attrs=attrs)
    record = TrialRecord("", entry["spec"], None, {}, tuple(LoadPoint(**p) for p in entry["curve"]))
    found = explain_trial(read_trial(trial, record), entry["bounds"])
    assert found, entry["source"]
    if state == TrialState.COMPLETE:
        assert found == _explain(entry)
