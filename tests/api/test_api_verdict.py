"""The API judges configs, not loads: on a study with re-measured configs it names the config that
tuner.study._verdict recommends (the one the CLI, the report and the export name), never the best single load."""

from __future__ import annotations

import httpx
import pytest
from api_helpers import ApiServer, add_loads

from tuner.storage import ATTR_REMEASURE_OF, Store, StoredStudy, read_study
from tuner.study import Recommendation, config_results, pareto_front, recommend


def _verdict(storage_url: str, name: str) -> tuple[StoredStudy, Recommendation, list[int]]:
    """What tuner.study._verdict says of the stored study: the study, its recommendation, the front's trials."""
    store = Store(storage_url)
    try:
        stored = read_study(store.load_study(name), store)
    finally:
        store.close()
    results = config_results(stored.trials, stored.info)
    rec = recommend(results, stored.info)
    assert rec is not None
    return stored, rec, [r.number for r in pareto_front(results, stored.info.directions)]


def _answers(http: httpx.Client, name: str) -> tuple[dict, dict, dict, dict]:
    pareto = http.get(f"/studies/{name}/pareto").json()
    rec = http.get(f"/studies/{name}/recommendation").json()
    listed = next(s for s in http.get("/studies").json() if s["name"] == name)
    detail = http.get(f"/studies/{name}").json()
    return pareto, rec, listed, detail


def test_every_route_names_the_config_the_verdict_recommends(api_server: ApiServer, remeasured_study: str,
                                                             storage_url: str) -> None:
    stored, expected, front = _verdict(storage_url, remeasured_study)
    best_load = max((t for t in stored.trials if t.feasible), key=lambda t: t.values[0])
    # The point of the study: the best single load is a lucky load of another config.
    assert best_load.number == 4 and best_load.number not in [t.number for t in expected.config.loads]
    with api_server.client() as http:
        pareto, rec, listed, detail = _answers(http, remeasured_study)
    assert pareto["recommended_trial"] == rec["trial"] == listed["recommended_trial"] == expected.number
    assert detail["recommended_trial"] == expected.number == 6  # config "b": loads 1, 6, 7, median 121
    assert pareto["reason"] == rec["reason"] == expected.reason
    assert "ties" not in rec["reason"]  # config "a" (loads 100-150) overlaps, but its median, 102, is below b's loads
    assert [c["trial"] for c in pareto["configs"]] == front == [5, 6]
    assert [c["loads"] for c in pareto["configs"]] == [[0, 4, 5], [1, 6, 7]]
    chosen = pareto["configs"][1]
    assert chosen["values"] == [121.0, 12.0] and chosen["interval"] == {"low": 120.0, "high": 122.0}
    assert chosen["spread_pct"] == pytest.approx(100 * 2 / 121) and chosen["feasible"] is True
    assert chosen["params"] == {"max_batch_size": 8, "instance_count": 1}
    assert chosen["metrics"]["throughput"] == 121.0
    assert rec["config"] == chosen and [c["trial"] for c in rec["tied"]] == [r.number for r in expected.tied]
    assert rec["point"]["throughput"] == 121.0 and rec["config_pbtxt"].startswith('name: "b"')
    assert listed["best_values"] == {"throughput": 121.0, "latency_p99_ms": 8.0}  # medians, not trial 4's 150
    assert listed["state"] == "complete"  # 6 trials count against the budget of 6; re-measurements do not


def test_under_limits_the_best_config_by_the_median_of_its_loads(api_server: ApiServer,
                                                                remeasured_study: str) -> None:
    with api_server.client() as http:
        answer = http.get(f"/studies/{remeasured_study}/recommendation", params={"max_p99_ms": 8}).json()
        wider = http.get(f"/studies/{remeasured_study}/recommendation", params={"max_p99_ms": 12.5}).json()
    # Config "a" (loads 0, 4, 5: 100, 150 and 102 infer/s at p99 8, 8 and 9 ms): its median, not its lucky 150.
    assert answer["trial"] == 5 and answer["point"]["throughput"] == 102.0 and answer["point"]["latency_p99_ms"] == 8
    assert answer["config"]["loads"] == [0, 4, 5] and answer["tied"] == []
    assert answer["reason"].startswith("trial 5 at concurrency 2") and "p99 <= 8 ms" in answer["reason"]
    assert "median of its 3 loads" in answer["reason"]
    # Under 12.5 ms config "b" (121 by its median) passes "a", whose best load (150) would have won.
    assert wider["trial"] == 6 and wider["point"]["throughput"] == 121.0 and wider["config"]["loads"] == [1, 6, 7]


def test_trials_say_what_they_measured_again_and_what_they_broke(api_server: ApiServer,
                                                                 remeasured_study: str) -> None:
    with api_server.client() as http:
        page = http.get(f"/studies/{remeasured_study}/trials").json()
        infeasible = http.get(f"/studies/{remeasured_study}/trials", params={"feasible": False}).json()
        detail = http.get(f"/studies/{remeasured_study}/trials/3").json()
    trials = {t["number"]: t for t in page["items"]}
    assert [n for n, t in trials.items() if t["remeasure_of"] is not None] == [4, 5, 6, 7]
    assert trials[4]["remeasure_of"] == 0 and trials[8]["reused_from"] == 2 and trials[0]["remeasure_of"] is None
    assert [t["number"] for t in infeasible["items"]] == [3, 9]
    miss = {"metric": "latency_p99_ms", "value": 30.0, "bound": 25.0, "side": "max", "excess": 5.0,
            "excess_pct": 20.0, "text": "latency_p99_ms 30 > max 25 (+20%)"}
    assert trials[3]["failed_constraints"] == [miss] and trials[1]["failed_constraints"] == []
    assert detail["failed_constraints"] == [miss] and detail["explanations"][0]["rule"] == "constraint"
    assert detail["config_pbtxt"].startswith('name: "d"') and detail["remeasure_of"] is None


def test_new_loads_change_the_answer_as_the_verdict_does(api_server: ApiServer, own_remeasured_study: str,
                                                         storage_url: str) -> None:
    name = own_remeasured_study
    with api_server.client() as http:
        assert http.get(f"/studies/{name}/pareto").json()["recommended_trial"] == 6
        # Config "d" measured again within the budget: by its median (135 infer/s, p99 21 ms) it is
        # feasible and leads; "a" (100-150) reaches into its interval (130-136), but a's median (102)
        # lies below it: no tie, though "a" is cheaper (max batch size 8, not 16).
        store = Store(storage_url)
        try:
            add_loads(store, store.load_study(name), [("d", 135.0, 20.0, {ATTR_REMEASURE_OF: 3}),
                                                      ("d", 136.0, 21.0, {ATTR_REMEASURE_OF: 3})])
        finally:
            store.close()
        pareto, rec, listed, _ = _answers(http, name)
    _, expected, front = _verdict(storage_url, name)
    assert expected.leader.number == expected.number == 10
    assert pareto["recommended_trial"] == rec["trial"] == listed["recommended_trial"] == 10
    assert rec["reason"] == expected.reason == "trial 10: the best feasible median throughput 135 over 3 loads (interval 130-136)"
    assert [c["trial"] for c in pareto["configs"]] == front == [5, 6, 10]
    assert pareto["configs"][2]["loads"] == [3, 10, 11]
