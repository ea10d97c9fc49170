"""POST /studies/{name}/verify: the token, what is refused (404, 409, 400), and the background `tuner verify`."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from api_helpers import REPO_ROOT, TOKEN, digits_study
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from api.verify_runs import VerifyManager
from tuner.config import parse_config
from tuner.reports import record
from tuner.reports._verify import Verification, VerifyRun
from tuner.storage import Store, StudyLease

AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: A verification that outlasts the test unless stopped (the real one ends at once on these studies).
SLEEPER = (sys.executable, "-c", "import time; time.sleep(120)")


def write_study(store: Store, name: str, onnx: Path, feasible: bool = True) -> optuna.Study:
    """A study as `tuner optimize` stores it, with one COMPLETE trial and none of the tuner's rows.

    Without the rows the export refuses it, so a `tuner verify` started on it ends at once (exit 2).
    """
    cfg = parse_config(digits_study(name, onnx), REPO_ROOT)
    study = optuna.create_study(study_name=name, storage=store.optuna, directions=["maximize", "minimize"])
    study.set_metric_names(["throughput", "latency_p99_ms"])
    study.set_user_attr("study_file", cfg.model_dump(mode="json"))
    trial = study.ask({"instance_count": optuna.distributions.IntDistribution(1, 2)})
    p99 = 10.0 if feasible else 500.0
    trial.set_user_attr("metrics", {"throughput": 1000.0, "latency_p99_ms": p99, "concurrency": 2})
    trial.set_constraint("latency_p99_ms", p99 - 100.0)
    study.tell(trial, [1000.0, p99])
    return study


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    storage = f"sqlite:///{tmp_path / 'tuner.db'}"
    store = Store(storage)
    settings = ApiSettings(storage=storage, token=TOKEN, work_dir=tmp_path / "api", study_root=REPO_ROOT)
    with TestClient(create_app(settings, store), base_url="http://localhost") as client:
        yield client, store


def _wait_for_end(client: TestClient, name: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/studies/{name}/verify", headers=AUTH).json()
        if status["outcome"] != "running":
            return status
        time.sleep(0.2)
    pytest.fail(f"the verification of {name} did not end within {timeout_s:.0f} s")


def test_verify_needs_the_token(api: tuple[TestClient, Store], digits_onnx: Path) -> None:
    client, store = api
    write_study(store, "s", digits_onnx)
    assert client.post("/studies/s/verify").status_code == 401
    assert client.post("/studies/s/verify", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/studies/s/verify").status_code == 401


def test_nothing_to_verify_is_404_or_422(api: tuple[TestClient, Store], digits_onnx: Path) -> None:
    client, store = api
    write_study(store, "s", digits_onnx)
    write_study(store, "infeasible", digits_onnx, feasible=False)
    answers = {
        "/studies/nosuch/verify": (404, "no study"),
        "/studies/s/verify?trial=5": (404, "no trial 5"),
        "/studies/infeasible/verify": (404, "no feasible config"),
        "/studies/s/verify?repeats=0": (422, "greater than or equal to 1"),
        "/studies/s/verify?repeats=101": (422, "less than or equal to 100"),
    }
    for path, (status, needle) in answers.items():
        response = client.post(path, headers=AUTH)
        assert response.status_code == status and needle in response.text, (path, response.text)
    assert client.get("/studies/s/verify", headers=AUTH).status_code == 404  # none started


def test_a_study_file_the_api_does_not_allow_is_400(tmp_path: Path, digits_onnx: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'tuner.db'}"
    store = Store(storage)
    write_study(store, "s", digits_onnx)
    settings = ApiSettings(storage=storage, token=TOKEN, work_dir=tmp_path / "api", study_root=tmp_path)
    with TestClient(create_app(settings, store), base_url="http://localhost") as client:
        response = client.post("/studies/s/verify", headers=AUTH)
    assert response.status_code == 400 and "model.path" in response.text and "outside the study root" in response.text


def test_a_study_another_tuner_runs_is_409(api: tuple[TestClient, Store], digits_onnx: Path) -> None:
    client, store = api
    write_study(store, "s", digits_onnx)
    with StudyLease(store, "s", host="elsewhere", pid=1):
        response = client.post("/studies/s/verify", headers=AUTH)
    assert response.status_code == 409 and "did not start" in response.json()["detail"]


def test_verify_starts_tuner_verify_and_answers_202(
    api: tuple[TestClient, Store], digits_onnx: Path, tmp_path: Path
) -> None:
    client, store = api
    write_study(store, "s", digits_onnx)
    response = client.post("/studies/s/verify?repeats=2&trial=0", headers=AUTH)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["url"].endswith("/studies/s") and started["status_url"].endswith("/studies/s/verify")
    assert (started["trial"], started["repeats"]) == (0, 2)
    again = client.post("/studies/s/verify", headers=AUTH)  # the first one still starts up
    assert again.status_code == 409 and "verification of study 's' is running" in again.json()["detail"]
    status = _wait_for_end(client, "s")
    # The study has none of the tuner's rows: the real `tuner verify` found the study and refused to export it.
    assert status["outcome"] == "refused" and status["returncode"] == 2, status
    assert "trial 0 has no stored config" in status["message"]
    log = tmp_path / "api" / "studies" / "verify-s.log"
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_the_study_detail_shows_its_verifications(api: tuple[TestClient, Store], digits_onnx: Path) -> None:
    client, store = api
    study = write_study(store, "s", digits_onnx)
    assert client.get("/studies/s").json()["verifications"] == []
    record(study, Verification(
        when="2026-01-02T03:04:05+00:00", trial=0, config_key="{}", metric="throughput", maximize=True, repeats=2,
        concurrency=2, runs=(VerifyRun(990.0, 9.0, 990.0), VerifyRun(1010.0, 11.0, 1010.0)), verified_median=1000.0,
        stored_median=1000.0, interval=(950.0, 1050.0), holds=True, throughput_median=1000.0,
        latency_p99_median_ms=10.0,
    ))
    (shown,) = client.get("/studies/s").json()["verifications"]
    assert shown["verdict"] == "holds" and shown["interval"] == [950.0, 1050.0]
    assert [r["throughput"] for r in shown["runs"]] == [990.0, 1010.0]
    assert shown["bounds_missed"] == []
    record(study, Verification(
        when="2026-01-02T04:04:05+00:00", trial=0, config_key="{}", metric="throughput", maximize=True, repeats=1,
        concurrency=2, runs=(VerifyRun(1000.0, 12.0, 1000.0),), verified_median=1000.0, stored_median=1000.0,
        interval=(950.0, 1050.0), holds=False, throughput_median=1000.0, latency_p99_median_ms=12.0,
        bounds_missed=("latency_p99_ms 12 > max 11",),
    ))
    over = client.get("/studies/s").json()["verifications"][1]
    assert over["verdict"] == "does not hold" and over["bounds_missed"] == ["latency_p99_ms 12 > max 11"]


def test_deleting_a_study_removes_its_verification_and_log(
    api: tuple[TestClient, Store], digits_onnx: Path, tmp_path: Path
) -> None:
    client, store = api
    write_study(store, "s", digits_onnx)
    assert client.post("/studies/s/verify", headers=AUTH).status_code == 202
    _wait_for_end(client, "s")
    log = tmp_path / "api" / "studies" / "verify-s.log"
    assert log.exists()
    assert client.delete("/studies/s", headers=AUTH).status_code == 200
    assert not log.exists()
    status = client.get("/studies/s/verify", headers=AUTH)
    assert status.status_code == 404 and "no verification of study 's'" in status.text
    write_study(store, "s", digits_onnx)  # a study of the same name starts with no verification of its own
    assert client.get("/studies/s/verify", headers=AUTH).status_code == 404


def _sleeping_verifier(client: TestClient) -> VerifyManager:
    """The app's verifications, each a process that runs until stopped."""
    app = client.app
    app.state.verifier = VerifyManager(app.state.settings, app.state.slots, command=SLEEPER)  # type: ignore[attr-defined]
    return app.state.verifier  # type: ignore[attr-defined]


def test_deleting_a_study_stops_its_running_verification(api: tuple[TestClient, Store], digits_onnx: Path) -> None:
    client, store = api
    verifier = _sleeping_verifier(client)
    write_study(store, "s", digits_onnx)
    assert client.post("/studies/s/verify", headers=AUTH).status_code == 202
    run = verifier.get("s")
    assert run is not None and run.alive
    assert client.delete("/studies/s", headers=AUTH).status_code == 200
    assert run.process.poll() is not None and verifier.get("s") is None


def test_shutting_down_stops_running_verifications(tmp_path: Path, digits_onnx: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'tuner.db'}"
    store = Store(storage)
    write_study(store, "s", digits_onnx)
    settings = ApiSettings(storage=storage, token=TOKEN, work_dir=tmp_path / "api", study_root=REPO_ROOT)
    with TestClient(create_app(settings, store), base_url="http://localhost") as client:
        verifier = _sleeping_verifier(client)
        assert client.post("/studies/s/verify", headers=AUTH).status_code == 202
        run = verifier.get("s")
        assert run is not None and run.alive
    assert run.process.wait(timeout=5) == -15  # SIGTERM: stopped by the shutdown, not at the end of its sleep


@pytest.mark.parametrize(("code", "last", "outcome"), [
    (3, "inconclusive: 60 infer/s verified (3 runs, 59-61) against 83.9 stored ...", "inconclusive"),
    (3, "error: tritonserver did not become ready", "failed"),
    (1, "does not hold: 60 infer/s verified ...", "does not hold"),
    (0, "holds: 84 infer/s verified ...", "holds"),
])
def test_a_verifications_outcome_is_its_exit_code_and_its_verdict(tmp_path: Path, code: int, last: str,
                                                                  outcome: str) -> None:
    import subprocess

    from api.verify_runs import VerifyRun as Started

    log = tmp_path / "verify.log"
    log.write_text(f"trial 4 at concurrency 8 (embedded server, 3 fresh loads)\n{last}\n")
    process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    process.wait()
    assert Started("s", process, log, None, 3).outcome == outcome
