"""Real servers for the API tests: `tuner api` (uvicorn) subprocesses on SQLite and PostgreSQL.

``real_study`` is a short digits_forest study started through the API itself (POST /studies),
run to its end by the real Triton server and perf_analyzer, and read while it runs;
``small_study`` is written directly through Optuna and the Store, with curves the tests know.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from api_helpers import POSTGRES_URL, TOKEN, ApiServer, RealStudy, digits_study, unique, write_small_study

from tuner.store import Store


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'tuner.db'}"
    return POSTGRES_URL


@pytest.fixture(scope="session")
def api_server(storage_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The API on the storage, with writes on (TUNER_API_TOKEN) and reads open."""
    server = ApiServer(storage_url, tmp_path_factory.mktemp("api"), {"TUNER_API_TOKEN": TOKEN}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def real_study(api_server: ApiServer, digits_onnx: Path) -> Iterator[RealStudy]:
    """A 3-trial study POSTed to the API, read every half second until it stops running."""
    name = unique("api-digits")
    with api_server.client(TOKEN) as http:
        response = http.post("/studies", content=yaml.safe_dump(digits_study(name, digits_onnx)),
                             headers={"Content-Type": "application/yaml"})
        assert response.status_code == 201, response.text
        during: list[tuple[str, int]] = []
        states: set[str] = set()
        running_trials = 0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for path in (f"/studies/{name}", f"/studies/{name}/trials", f"/studies/{name}/pareto", "/studies",
                         f"/studies/{name}/recommendation", f"/studies/{name}/trials/0"):
                during.append((path, http.get(path).status_code))
            detail = http.get(f"/studies/{name}").json()
            states.add(detail["state"])
            running_trials = max(running_trials, detail["trials"]["RUNNING"])
            if detail["state"] != "running":
                break
            time.sleep(0.5)
        else:
            pytest.fail("the study did not finish within 300 s")
    yield RealStudy(api_server, name, response.json(), during, states, running_trials)
    with api_server.client(TOKEN) as http:  # the PostgreSQL database outlives the tests
        http.delete(f"/studies/{name}")


def _small_study(storage_url: str) -> Iterator[str]:
    name = unique("api-small")
    store = Store(storage_url)
    write_small_study(store, name)
    yield name
    if name in store.study_names():
        store.delete_study(name)
    store.close()


@pytest.fixture(scope="module")
def small_study(storage_url: str) -> Iterator[str]:
    """A study of 12 trials with known curves, written through Optuna and the Store: read it only."""
    yield from _small_study(storage_url)


@pytest.fixture()
def own_small_study(storage_url: str) -> Iterator[str]:
    """Like ``small_study``, for one test to change or delete."""
    yield from _small_study(storage_url)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that read the study run through the API run the real Triton server and perf_analyzer.
    for item in items:
        if "/api/" in str(item.fspath) and "real_study" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)
