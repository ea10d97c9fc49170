"""The reports' reading of a stored study (configs, not loads; only what was measured), and the read helpers
the API answers from: the Pareto front without copies, and the best point under limits."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stored_studies import BATCH_OF_ONE, BATCHED, FAILED, ONE_CONCURRENCY, PLAIN, Load, write_study

from tuner.reports import _charts as charts
from tuner.reports import _report as report
from tuner.reports import comparison_json, gather, write_pngs
from tuner.reports._compare import comparison, front_table
from tuner.reports._data import StudyData
from tuner.reports._html import render
from tuner.storage import ATTR_SPEC_KEY, Store, StoredTrial, TrialRecord, read_study
from tuner.study import _verdict as verdict
from tuner.trial import LoadPoint

optuna.logging.set_verbosity(optuna.logging.WARNING)

_values = st.sampled_from([0.0, 1.0, 2.0, 3.0, float("inf")])
_trial = st.tuples(
    st.sampled_from(["complete", "complete", "complete", "fail"]),
    st.lists(_values, min_size=3, max_size=3),
    st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 0.5])),
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    directions=st.lists(st.sampled_from(["maximize", "minimize"]), min_size=1, max_size=3),
    trials=st.lists(_trial, max_size=25),
)
def test_the_front_of_single_load_configs_is_optunas_best_trials(directions: list[str], trials: list) -> None:
    study = optuna.create_study(directions=directions)
    for state, values, constraint in trials:
        trial = study.ask()
        trial.set_user_attr(ATTR_SPEC_KEY, str(trial.number))  # every trial a config of its own
        if constraint is not None:
            trial.set_constraint("latency_p99_ms", constraint)
        if state == "fail":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, values[: len(directions)])
    stored = read_study(study)
    front = verdict.pareto_front(verdict.config_results(stored.trials, stored.info), stored.info.directions)
    assert [r.number for r in front] == [t.number for t in study.best_trials]


def _point(concurrency: int, throughput: float, p99: float) -> LoadPoint:
    return LoadPoint(concurrency=concurrency, throughput=throughput, latency_avg_ms=p99, latency_p50_ms=p99,
                     latency_p90_ms=p99, latency_p95_ms=p99, latency_p99_ms=p99)


_curve = st.lists(st.tuples(st.sampled_from([10.0, 20.0, 30.0, float("nan")]), st.sampled_from([1.0, 5.0, 9.0])),
                  max_size=4)
_config = st.tuples(st.lists(_curve, min_size=1, max_size=3), st.sampled_from([0.0, 0.01, 0.2]))


def _config_results(configs: list) -> list[verdict.ConfigResult]:
    """One config per entry, each load a trial whose stored curve is given, with its accuracy drop."""
    trials, number = [], 0
    for key, (loads, drop) in enumerate(configs):
        for curve in loads:
            points = tuple(_point(c, t, p) for c, (t, p) in enumerate(curve))
            trials.append(StoredTrial(
                number=number, trial_id=100 + number, state=optuna.trial.TrialState.COMPLETE, params={},
                values=(points[0].throughput if points else 0.0,), metrics={"accuracy_drop": drop},
                spec_key=str(key), record=TrialRecord("", {}, None, {}, points)))
            number += 1
    return verdict.config_results(trials)


@settings(max_examples=200, deadline=None, database=None)
@given(
    configs=st.lists(_config, max_size=6),
    max_p99=st.one_of(st.none(), st.sampled_from([1.0, 4.0, 5.0, 100.0])),
    min_throughput=st.one_of(st.none(), st.sampled_from([10.0, 25.0, 40.0])),
)
def test_best_is_the_highest_median_throughput_within_the_limits(configs: list, max_p99: float | None,
                                                                 min_throughput: float | None) -> None:
    results = _config_results(configs)
    bounds = {"accuracy_drop": {"min": None, "max": 0.05}, "latency_p99_ms": {"min": None, "max": 0.5}}
    within = []
    for result in results:
        if np.median([t.metrics["accuracy_drop"] for t in result.loads]) > 0.05:
            continue
        for concurrency in {p.concurrency for t in result.loads for p in t.curve}:
            at = [p for t in result.loads for p in t.curve if p.concurrency == concurrency]
            throughput, p99 = np.median([p.throughput for p in at]), np.median([p.latency_p99_ms for p in at])
            if (not np.isnan(throughput) and (max_p99 is None or p99 <= max_p99)
                    and (min_throughput is None or throughput >= min_throughput)):
                within.append((throughput, -result.first.number, -concurrency, p99, len(at)))
    curves = report.Curves(results, bounds)
    found = curves.best(max_p99, min_throughput)  # the study's p99 bound: not the asked one
    assert curves.held == ("accuracy_drop",)
    assert curves.configs == sum(np.median([t.metrics["accuracy_drop"] for t in r.loads]) <= 0.05 for r in results)
    if not within:
        assert found is None
        return
    throughput, first, concurrency, p99, loads = max(within)
    assert found is not None and found.config.first.number == -first and found.loads == loads
    assert (found.point.concurrency, found.point.latency_p99_ms) == (-concurrency, p99)
    assert found.point.throughput == throughput and found.trial in found.config.loads
    assert found.trial.curve[-concurrency].throughput == sorted(p.throughput for t in found.config.loads
                                                                for p in t.curve if p.concurrency == -concurrency
                                                                )[(loads - 1) // 2]


BOUNDS = {"latency_p99_ms": {"min": None, "max": 3.0}}
#: The default config; 2 instances batching, measured three times (5200, 6400, then 5868 infer/s: the median
#: is the third load, the best single load the second); batching of one request over the p99 budget; a FAIL.
REMEASURED = [
    Load(PLAIN, default=True),
    Load(BATCHED, {"throughput": 5200.0, "server_queue_ms": 0.2}),
    Load(BATCH_OF_ONE, {"latency_p99_ms": 3.7}),
    Load(FAILED),
    Load(BATCHED, {"throughput": 6400.0, "server_queue_ms": 0.31}, remeasure_of=1),
    Load(BATCHED, remeasure_of=1),
]


def _gather(tmp_path: Path, loads: list[Load], bounds: dict = BOUNDS) -> StudyData:
    store = Store(f"sqlite:///{tmp_path / 'report.db'}")
    try:
        return gather(write_study(store, "report", loads, bounds), store)
    finally:
        store.close()


def _text(page: str) -> str:
    """The page without its scripts and tags, spaces collapsed."""
    body = re.sub(r"<script.*?</script>", " ", page[page.index("<body>"):], flags=re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_the_report_is_over_configs_and_says_why_it_recommends(tmp_path: Path) -> None:
    data = _gather(tmp_path, REMEASURED)
    assert [c.number for c in data.configs] == [0, 5, 2]  # one per config, each its load nearest the median
    assert data.recommended == 5 and data.front == [0, 5]
    page = render(data)
    text = _text(page)
    assert "Trial 5" in text and data.recommendation.reason in text
    assert "3 loads, 5200-6400, spread 20% (trials 1, 4, 5)" in text
    assert "infeasible: latency_p99_ms 3.7 > max 3 (+23%)" in text
    rows = re.findall(r"<tr class='[^']*' id='config-(\d+)'>", page)
    assert rows == ["0", "5", "2"]
    # the concurrency each config's representative load was judged at, beside its medians
    cells = re.findall(r"id='config-(\d+)'>(?:<td[^>]*>[^<]*</td>){4}<td class='num'>(\d*)</td>", page)
    assert cells == [("0", "1"), ("5", "8"), ("2", "4")]
    pareto = charts.pareto_figure(data)
    markers = {trace.name: list(trace.customdata) for trace in pareto.data if trace.mode == "markers"}
    assert markers == {"feasible": [0, 5], "infeasible": [2]}, "one marker per config, not per load"
    feasible = next(trace for trace in pareto.data if trace.name == "feasible")
    assert list(feasible.y) == [pytest.approx(2317.89), pytest.approx(5867.73)]  # medians, not the lucky 6400


def test_the_report_of_a_study_whose_every_trial_failed_does_not_blame_its_constraints(tmp_path: Path) -> None:
    text = _text(render(_gather(tmp_path, [Load(FAILED), Load(FAILED)])))

    assert "No config could be measured: every trial failed (their reasons are in the table of trials)." in text
    assert "loosen" not in text


def test_charts_describe_the_recommended_configs_representative_load(tmp_path: Path) -> None:
    data = _gather(tmp_path, REMEASURED)
    top = data.top()
    assert [c.number for c in top] == [5, 0]  # the recommendation first, the default after it
    breakdown = charts.breakdown_figure(top)
    queue = next(trace for trace in breakdown.data if trace.name == "queue")
    assert queue.y[0] == "trial 5" and queue.x[0] == pytest.approx(0.268)  # not 0.2 nor 0.31
    batches = charts.batches_figure(top)
    assert batches.data[0].name.startswith("trial 5")
    assert "trial 5 stands for its config's 3 loads" in _text(render(data))


def test_the_tie_goes_to_the_cheaper_config_and_the_report_says_so(tmp_path: Path) -> None:
    # 2 instances lead by their median (5868 against 5800), but the loads overlap: 1 instance is cheaper.
    loads = [Load(PLAIN, {"throughput": 5700.0}, default=True), Load(BATCHED, {"throughput": 5600.0}),
             Load(PLAIN, {"throughput": 5800.0}, remeasure_of=0), Load(BATCHED, {"throughput": 6400.0}, remeasure_of=1),
             Load(PLAIN, {"throughput": 5900.0}, remeasure_of=0), Load(BATCHED, remeasure_of=1)]
    data = _gather(tmp_path, loads)
    assert data.recommendation.leader.number == 5 and data.recommended == 2
    assert "instances 1 instead of 2" in data.recommendation.reason
    assert data.recommendation.reason in _text(render(data))


def test_no_gpu_series_on_a_cpu_study(tmp_path: Path) -> None:
    data = _gather(tmp_path, REMEASURED)
    assert not data.gpu_measured()
    names = [trace.name for trace in charts.resources_figure(data.top(), data.gpu_measured()).data]
    assert names and not [n for n in names if "GPU" in n]
    text = _text(render(data))
    assert "CPU use" in text and "GPU util" not in text and "CPU and GPU use" not in text


def test_gpu_series_where_a_gpu_was_read(tmp_path: Path) -> None:
    data = _gather(tmp_path, [Load(PLAIN, {"gpu_util_pct": 40.0, "gpu_util_max_pct": 70.0}, default=True)])
    assert data.gpu_measured()
    names = [trace.name for trace in charts.resources_figure(data.top(), True).data]
    assert "GPU util %" in names and "CPU and GPU use" in _text(render(data))


def test_one_concurrency_draws_no_curve_and_says_how_to_get_one(tmp_path: Path) -> None:
    data = _gather(tmp_path, [Load(ONE_CONCURRENCY, default=True)], bounds={})
    page = render(data)
    assert 'id="curves"' not in page and "id='no-curves'" in page
    assert "load.concurrency: auto" in _text(page) and "concurrency 1 only" in _text(page)
    written = {path.name for path in write_pngs(data, tmp_path / "png")}
    assert "curves.png" not in written and "breakdown.png" in written


def test_several_concurrencies_draw_the_curve(tmp_path: Path) -> None:
    data = _gather(tmp_path, REMEASURED)
    page = render(data)
    assert 'id="curves"' in page and "no-curves" not in page
    assert "curves.png" in {path.name for path in write_pngs(data, tmp_path / "png")}


def test_compare_puts_configs_side_by_side_by_their_medians(tmp_path: Path) -> None:
    a = _gather(tmp_path, REMEASURED)
    (tmp_path / "b").mkdir()
    b = _gather(tmp_path / "b", [Load(PLAIN, default=True)])
    document = comparison_json(a, b)
    front = {c["number"]: c for c in document["a"]["pareto_front"]}
    assert document["a"]["recommended_trial"] == 5 and sorted(front) == [0, 5]
    assert front[5]["loads"] == [1, 4, 5] and front[5]["metrics"]["throughput"] == pytest.approx(5867.73)
    assert document["b_over_a"]["throughput"] == pytest.approx(2317.89 / 5867.73)
    assert "median throughput" in document["a"]["reason"]
    assert front_table(a).row_count == 2  # configs, not the 5 complete loads
    assert document["measured_differently"] == []


def test_compare_says_where_the_two_studies_measured_another_path(tmp_path: Path) -> None:
    import dataclasses

    from rich.console import Console

    from tuner.reports._compare import _load, measured_differently
    from tuner.storage import bounds_text

    a = _gather(tmp_path, REMEASURED)
    load = {**a.study_file.get("load", {}), "shared_memory": "system", "protocol": "http", "concurrency": "auto"}
    b = dataclasses.replace(a, study_file={**a.study_file, "load": load})
    differences = comparison_json(a, b)["measured_differently"]
    assert differences == ["load.protocol: grpc in A, http in B", "load.shared_memory: none in A, system in B",
                           f"load.concurrency: {_load(a).concurrency} in A, auto in B"]
    assert comparison_json(a, b)["judged_differently"] is None
    other = dataclasses.replace(a, study_file={**a.study_file, "model": {"name": "other", "path": "other.onnx"}})
    assert measured_differently(a, other) == ["model: digits_forest in A, other in B"]
    b = dataclasses.replace(b, bounds={"latency_p99_ms": {"max": 2.5}, "throughput": {"min": 100.0}})
    assert comparison_json(a, b)["judged_differently"] == (
        f"{bounds_text(a.bounds)} in A, latency_p99_ms <= 2.5, throughput >= 100 in B"
    )
    console = Console(width=200, record=True)
    for renderable in comparison(a, b):
        console.print(renderable)
    shown = " ".join(console.export_text().split())
    assert "measured differently, so B / A is not the configs' doing alone" in shown
    assert "each recommendation is the best under its own study's constraints: latency_p99_ms <= 3 in A" in shown


def test_the_report_shows_the_verifications_of_the_recommendation(tmp_path: Path) -> None:
    from test_verify import verification

    from tuner.reports import record

    store = Store(f"sqlite:///{tmp_path / 'report.db'}")
    try:
        study = write_study(store, "report", REMEASURED, BOUNDS)
        assert "Verifications" not in _text(render(gather(study, store, importances=False)))
        record(study, verification([5100.0, 5200.0, 5300.0], stored=5867.7, interval=(5200.0, 6400.0)))
        text = _text(render(gather(study, store, importances=False)))
    finally:
        store.close()
    assert "Verifications" in text and "5200" in text and "does not hold" not in text
