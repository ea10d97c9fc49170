"""Every route, against the real server, on a study run through the API and on a written one."""

from __future__ import annotations

import math
import os
import time

import httpx
import optuna
import pytest
import sqlalchemy as sa
from api_helpers import SMALL_CURVES, TOKEN, ApiServer, RealStudy, unique

from tuner.storage import Store, StudyLease


def test_reads_answer_while_the_study_runs(real_study: RealStudy) -> None:
    assert "running" in real_study.states_seen and real_study.running_trials_seen >= 1
    failures = [(path, code) for path, code in real_study.during if code >= 500]
    assert not failures, failures
    # Until a trial completes there is no recommendation (404), and until the runner has queued the first
    # trial there is no trial 0 (404); every other read answers 200.
    other = [(path, code) for path, code in real_study.during
             if code != 200 and "recommendation" not in path and not (path.endswith("/trials/0") and code == 404)]
    assert not other, other
    assert (f"/studies/{real_study.name}/trials/0", 200) in real_study.during


def test_every_route_on_a_study_run_through_the_api(real_study: RealStudy) -> None:
    name = real_study.name
    with real_study.server.client() as http:
        listed = {s["name"]: s for s in http.get("/studies").json()}
        summary = listed[name]
        assert summary["state"] == "complete"
        assert summary["trials"]["total"] == 3 and summary["trials"]["COMPLETE"] == 3
        assert summary["metric_names"] == ["throughput", "latency_p99_ms"]
        assert set(summary["best_values"]) == {"throughput", "latency_p99_ms"}
        assert summary["datetime_start"] <= summary["last_update"]

        detail = http.get(f"/studies/{name}").json()
        assert detail["study_file"]["study"] == name
        assert detail["study_file"]["storage"].split("/")[0] == real_study.server.storage.split("/")[0]
        assert detail["objectives"] == [{"metric": "throughput", "direction": "maximize"},
                                        {"metric": "latency_p99_ms", "direction": "minimize"}]
        assert detail["constraints"] == {"latency_p99_ms": {"min": None, "max": 100.0}}
        assert detail["workers"] and detail["workers"][0]["cores"] and detail["worker_cores"] >= 1
        assert detail["run"]["alive"] is False and detail["run"]["returncode"] == 0

        page = http.get(f"/studies/{name}/trials").json()
        assert page["total"] == 3 and [t["number"] for t in page["items"]] == [0, 1, 2]
        first = page["items"][0]
        assert first["state"] == "COMPLETE" and first["params"]["instance_count"] == 1
        assert first["values"][0] > 0 and isinstance(first["feasible"], bool)
        assert http.get(f"/studies/{name}/trials", params={"state": "FAIL"}).json()["total"] == 0
        second = http.get(f"/studies/{name}/trials", params={"offset": 1, "limit": 1}).json()
        assert [t["number"] for t in second["items"]] == [1] and second["total"] == 3

        trial = http.get(f"/studies/{name}/trials/0").json()
        assert [p["concurrency"] for p in trial["points"]] == [1, 2]
        for point in trial["points"]:
            assert point["throughput"] > 0 and point["latency_p99_ms"] > 0
            assert point["server_compute_infer_ms"] > 0
        assert trial["default_config"] is True and trial["timings_s"] and trial["worker"] is not None
        assert "max_batch_size" in trial["config_pbtxt"] and trial["spec"]["instance_count"] == 1

        text = http.get(f"/studies/{name}/trials/0/config.pbtxt")
        assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
        assert text.text == trial["config_pbtxt"]

        pareto = http.get(f"/studies/{name}/pareto").json()
        assert pareto["configs"] and all(c["feasible"] for c in pareto["configs"])
        assert {n for c in pareto["configs"] for n in c["loads"]} <= {0, 1, 2}
        # Without limits, the study's own recommendation, the same everywhere.
        answer = http.get(f"/studies/{name}/recommendation").json()
        assert answer["trial"] == pareto["recommended_trial"] == summary["recommended_trial"] is not None
        assert answer["reason"] == pareto["reason"] and answer["config"]["feasible"]

        # Under limits, the highest-throughput point of the stored curves within them (one load per config).
        curves = [(n, p) for n in range(3) for p in http.get(f"/studies/{name}/trials/{n}").json()["points"]]
        best_n, best = max(curves, key=lambda c: (c[1]["throughput"], -c[0]))
        loose = max(p["latency_p99_ms"] for _, p in curves)
        answer = http.get(f"/studies/{name}/recommendation", params={"max_p99_ms": loose}).json()
        assert (answer["trial"], answer["point"]) == (best_n, best)
        tight = min(p["latency_p99_ms"] for _, p in curves)
        answer = http.get(f"/studies/{name}/recommendation", params={"max_p99_ms": tight}).json()
        assert answer["point"]["latency_p99_ms"] == tight and answer["config_pbtxt"]
        refused = http.get(f"/studies/{name}/recommendation", params={"max_p99_ms": tight / 2})
        assert refused.status_code == 404 and f"p99 <= {tight / 2:g} ms" in refused.json()["detail"]


def test_recommendation_reads_every_point_of_the_curves(api_server: ApiServer, small_study: str) -> None:
    with api_server.client() as http:
        def ask(**limits: float) -> httpx.Response:
            return http.get(f"/studies/{small_study}/recommendation", params=limits)

        # Under 25 ms (the study's own budget) the best is trial 9 at concurrency 2.
        answer = ask(max_p99_ms=25).json()
        assert (answer["trial"], answer["point"]["concurrency"], answer["point"]["throughput"]) == (9, 2, 270.0)
        assert answer["params"] and answer["config_pbtxt"].startswith('name: "m9"')
        # A tighter budget than the study's: trial 3 at concurrency 2 (p99 12 ms).
        answer = ask(max_p99_ms=12).json()
        assert (answer["trial"], answer["point"]["concurrency"]) == (3, 2)
        # No limit over p99: the highest throughput measured, concurrency 4 of trial 9.
        answer = ask(min_throughput=1).json()
        assert (answer["trial"], answer["point"]["throughput"]) == (9, SMALL_CURVES[9][2][0])
        # No limit at all: the study's recommendation, trial 9 as judged (concurrency 2, within 25 ms).
        answer = ask().json()
        assert (answer["trial"], answer["point"]["concurrency"], answer["point"]["throughput"]) == (9, 2, 270.0)
        assert answer["reason"].startswith("trial 9: the best feasible median throughput 270")
        assert ask(max_p99_ms=50, min_throughput=300).json()["trial"] == 9
        refused = ask(max_p99_ms=40, min_throughput=300)
        assert refused.status_code == 404
        assert "p99 <= 40 ms and throughput >= 300 infer/s" in refused.json()["detail"]


def test_trials_pareto_and_states_of_a_written_study(api_server: ApiServer, small_study: str,
                                                     storage_url: str) -> None:
    store = Store(storage_url)
    expected_front = [t.number for t in optuna.load_study(study_name=small_study, storage=store.optuna).best_trials]
    store.close()
    with api_server.client() as http:
        pareto = http.get(f"/studies/{small_study}/pareto").json()
        # One load per config: the front over configs is Optuna's front over trials.
        assert [c["trial"] for c in pareto["configs"]] == expected_front
        assert all(c["loads"] == [c["trial"]] for c in pareto["configs"])
        response = http.get(f"/studies/{small_study}")
        assert "s3cret" not in response.text  # the study file's storage URL is shown without its password
        summary = response.json()
        assert summary["study_file"]["storage"] == "postgresql+psycopg://tuner:***@db.example/tuner"
        assert summary["state"] == "stopped"  # trial 11 is RUNNING, but no tuner holds the study's lease
        assert summary["trials"] == {"total": 12, "COMPLETE": 10, "FAIL": 1, "RUNNING": 1, "WAITING": 0, "PRUNED": 0,
                                     "interrupted": 0}
        assert summary["best_values"] == {"throughput": 270.0, "latency_p99_ms": 9.0}
        assert http.get(f"/studies/{small_study}/trials", params={"feasible": True}).json()["total"] == 10
        assert [t["number"] for t in http.get(f"/studies/{small_study}/trials",
                                              params={"state": "RUNNING"}).json()["items"]] == [11]
        failed = http.get(f"/studies/{small_study}/trials/10").json()
        assert failed["state"] == "FAIL" and failed["fail_reason"] == "Triton refused the config"
        assert failed["points"] == [] and failed["config_pbtxt"] is None
        assert http.get(f"/studies/{small_study}/trials/5").json()["accuracy"] == {"accuracy_drop": 0.0}
        missing = http.get(f"/studies/{small_study}/trials/11/config.pbtxt")
        assert missing.status_code == 404 and "no config" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/studies/no-such-study", 404),
        ("/studies/no-such-study/trials", 404),
        ("/studies/no-such-study/pareto", 404),
        ("/studies/no-such-study/recommendation", 404),
        ("/studies/..%2F..%2Fetc%2Fpasswd/trials/0/config.pbtxt", 404),
        ("/studies/{name}/trials/999", 404),
        ("/studies/{name}/trials/999/config.pbtxt", 404),
        ("/studies/{name}/trials/-1", 422),
        ("/studies/{name}/trials/one", 422),
        ("/studies/{name}/trials?state=DONE", 422),
        ("/studies/{name}/trials?limit=0", 422),
        ("/studies/{name}/trials?limit=100000", 422),
        ("/studies/{name}/trials?offset=-1", 422),
        ("/studies/{name}/recommendation?max_p99_ms=-1", 422),
        ("/studies/{name}/recommendation?max_p99_ms=0", 422),
        ("/studies/{name}/recommendation?max_p99_ms=abc", 422),
        ("/studies/{name}/recommendation?max_p99_ms=nan", 422),
        ("/studies/{name}/recommendation?max_p99_ms=inf", 422),
        ("/studies/{name}/recommendation?min_throughput=0", 422),
        ("/studies/{name}/recommendation?max_p99_ms=1;DROP%20TABLE%20trials", 422),
    ],
)
def test_unknown_names_are_404_and_bad_values_422(api_server: ApiServer, small_study: str, path: str,
                                                  status: int) -> None:
    with api_server.client() as http:
        response = http.get(path.replace("{name}", small_study))
    assert response.status_code == status, response.text
    assert "detail" in response.json()


def test_delete_refuses_a_study_another_process_runs(api_server: ApiServer, own_small_study: str,
                                                     storage_url: str) -> None:
    store = Store(storage_url)
    with api_server.client(TOKEN) as http, StudyLease(store, own_small_study):  # this process drives it
        refused = http.delete(f"/studies/{own_small_study}")
        assert refused.status_code == 409, refused.text
        assert f"being run by a tuner this API did not start: pid {os.getpid()}" in refused.json()["detail"]
        deleted = http.delete(f"/studies/{own_small_study}", params={"force": True})
        assert deleted.status_code == 200 and deleted.json() == {"name": own_small_study, "stopped_run": False}
        assert http.get(f"/studies/{own_small_study}").status_code == 404
        assert http.delete(f"/studies/{own_small_study}").status_code == 404
    try:
        assert own_small_study not in store.study_names()
        with store.engine.connect() as conn:
            for table in ("tuner_trial_configs", "tuner_trial_points"):
                rows = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE study_name = :n"),
                                    {"n": own_small_study}).scalar()
                assert rows == 0, table
    finally:
        store.close()


def test_healthz_and_the_openapi_schema(api_server: ApiServer) -> None:
    with api_server.client() as http:
        health = http.get("/healthz").json()
        assert health["status"] == "ok" and health["storage"] in ("sqlite", "postgresql")
        schema = http.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        ("/healthz", "get"), ("/studies", "get"), ("/studies", "post"), ("/studies/{name}", "get"),
        ("/studies/{name}", "delete"), ("/studies/{name}/trials", "get"), ("/studies/{name}/trials/{number}", "get"),
        ("/studies/{name}/trials/{number}/config.pbtxt", "get"), ("/studies/{name}/pareto", "get"),
        ("/studies/{name}/recommendation", "get"), ("/studies/{name}/verify", "post"), ("/studies/{name}/verify", "get"),
    }
    assert {(p, m) for p, ops in paths.items() for m in ops} == expected
    for path, method in expected:
        ok = next(v for k, v in paths[path][method]["responses"].items() if k.startswith("2"))
        content = ok["content"]
        media = "text/plain" if path.endswith("config.pbtxt") else "application/json"
        assert content[media]["schema"], (path, method)
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_values_that_are_not_numbers_are_null(api_server: ApiServer, storage_url: str) -> None:
    """A trial whose stored values include infinity still answers (JSON has no inf)."""
    name = unique("api-inf")
    store = Store(storage_url)
    study = optuna.create_study(study_name=name, storage=store.optuna, directions=["maximize", "minimize"])
    trial = study.ask()
    trial.set_user_attr("metrics", {"throughput": math.inf})
    study.tell(trial, [math.inf, 1.0])
    try:
        with api_server.client() as http:
            for path in (f"/studies/{name}/trials/0", f"/studies/{name}/pareto", "/studies", f"/studies/{name}"):
                response = http.get(path)
                assert response.status_code == 200, (path, response.text)
            assert http.get(f"/studies/{name}/trials/0").json()["values"] == [None, 1.0]
    finally:
        store.delete_study(name)
        store.close()


def test_reads_follow_the_database_within_the_refresh_time(storage_url: str, own_small_study: str,
                                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    """With the default TUNER_API_REFRESH_S (0.5 s), what another process writes shows within it."""
    server = ApiServer(storage_url, tmp_path_factory.mktemp("refresh"), {"TUNER_API_REFRESH_S": "0.5"}).start()
    store = Store(storage_url)
    try:
        with server.client() as http:
            before = http.get(f"/studies/{own_small_study}/pareto").json()
            assert before["recommended_trial"] == 9
            study = optuna.load_study(study_name=own_small_study, storage=store.optuna)
            trial = study.ask()
            trial.set_constraint("latency_p99_ms", -1.0)
            study.tell(trial, [1000.0, 1.0])  # dominates every other trial
            time.sleep(0.6)
            after = http.get(f"/studies/{own_small_study}/pareto").json()
            assert [c["trial"] for c in after["configs"]] == [trial.number] == [after["recommended_trial"]]
            assert http.get(f"/studies/{own_small_study}").json()["trials"]["COMPLETE"] == 11
            store.delete_study(own_small_study)
            time.sleep(0.6)
            assert http.get(f"/studies/{own_small_study}/pareto").status_code == 404
    finally:
        server.stop()
        store.close()
