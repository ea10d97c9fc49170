"""Real servers for the API tests: `tuner api` (uvicorn) subprocesses on SQLite and PostgreSQL.

``real_study`` is a short digits_forest study started through the API itself (POST /studies),
run to its end by the real Triton server and perf_analyzer, and read while it runs;
``small_study`` is written directly through Optuna and the Store, with curves the tests know;
``remeasured_study`` likewise, with configs measured more than once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from api_helpers import (
    POSTGRES_URL,
    TOKEN,
    ApiServer,
    RealStudy,
    digits_study,
    unique,
    write_remeasured_study,
    write_small_study,
)

from tuner.storage import Store


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        # one file for the session: pytest makes this fixture again when a worker comes back to a storage
        folder = tmp_path_factory.getbasetemp() / "api-sqlite"
        folder.mkdir(exist_ok=True)
        return f"sqlite:///{folder / 'tuner.db'}"
    return POSTGRES_URL


@pytest.fixture(scope="session")
def api_server(storage_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The API on the storage, with writes on (TUNER_API_TOKEN) and reads open."""
    server = ApiServer(storage_url, tmp_path_factory.mktemp("api"), {"TUNER_API_TOKEN": TOKEN}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _real_studies() -> Iterator[dict[str, RealStudy]]:
    """The real study of each storage, by URL, kept for the whole session.

    pytest tears a parametrized session fixture down whenever a worker's next test takes the other
    parameter, so ``real_study`` alone was run again each time a worker went back to a storage;
    the study is kept in the database across that, and a new API server reads it the same.
    """
    made: dict[str, RealStudy] = {}
    yield made
    for url, study in made.items():  # the PostgreSQL database outlives the tests
        store = Store(url)
        try:
            store.delete_study(study.name)
        finally:
            store.close()


@pytest.fixture(scope="session")
def real_study(api_server: ApiServer, digits_onnx: Path, _real_studies: dict[str, RealStudy]) -> RealStudy:
    """A 3-trial study POSTed to the API, read every half second until it stops running; run once per storage."""
    made = _real_studies.get(api_server.storage)
    if made is not None:
        return dataclasses.replace(made, server=api_server)
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
                during.append((path, _read(http, path).status_code))
            detail = _read(http, f"/studies/{name}").json()
            states.add(detail["state"])
            running_trials = max(running_trials, detail["trials"]["RUNNING"])
            if detail["state"] != "running":
                break
            time.sleep(0.5)
        else:
            pytest.fail("the study did not finish within 300 s")
    made = RealStudy(api_server, name, response.json(), during, states, running_trials)
    _real_studies[api_server.storage] = made
    return made


def _read(http: httpx.Client, path: str) -> httpx.Response:
    """GET, once more on a new connection where the kept-alive one was reset (as browsers retry an idempotent
    request): seen twice in CI under the 4-worker load, cause not found; a second reset fails the test."""
    try:
        return http.get(path)
    except (httpx.ReadError, httpx.RemoteProtocolError):
        return http.get(path, headers={"Connection": "close"})


def _written(storage_url: str, prefix: str, write: Callable[[Store, str], object]) -> Iterator[str]:
    """A study ``write`` puts in the storage under a new name, deleted after."""
    name = unique(prefix)
    store = Store(storage_url)
    write(store, name)
    yield name
    if name in store.study_names():
        store.delete_study(name)
    store.close()


def _small_study(storage_url: str) -> Iterator[str]:
    return _written(storage_url, "api-small", write_small_study)


@pytest.fixture(scope="module")
def small_study(storage_url: str) -> Iterator[str]:
    """A study of 12 trials with known curves, written through Optuna and the Store: read it only."""
    yield from _small_study(storage_url)


@pytest.fixture()
def own_small_study(storage_url: str) -> Iterator[str]:
    """Like ``small_study``, for one test to change or delete."""
    yield from _small_study(storage_url)


def _remeasured_study(storage_url: str) -> Iterator[str]:
    return _written(storage_url, "api-remeasured", write_remeasured_study)


@pytest.fixture(scope="module")
def remeasured_study(storage_url: str) -> Iterator[str]:
    """A study whose best configs were measured again (see ``REMEASURED_LOADS``): read it only."""
    yield from _remeasured_study(storage_url)


@pytest.fixture()
def own_remeasured_study(storage_url: str) -> Iterator[str]:
    """Like ``remeasured_study``, for one test to change."""
    yield from _remeasured_study(storage_url)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that read the study run through the API run the real Triton server and perf_analyzer.
    for item in items:
        if "/api/" in str(item.fspath) and "real_study" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)
