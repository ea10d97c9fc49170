"""The token rules, and where the API listens, against real servers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from api_helpers import TOKEN, TUNER, ApiServer


@pytest.fixture(scope="module")
def locked_server(storage_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """Reads need the token too."""
    server = ApiServer(storage_url, tmp_path_factory.mktemp("locked"),
                       {"TUNER_API_TOKEN": TOKEN, "TUNER_API_READ_TOKEN_REQUIRED": "1"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokenless_server(storage_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """No token configured: writes are off."""
    server = ApiServer(storage_url, tmp_path_factory.mktemp("tokenless")).start()
    yield server
    server.stop()


def test_writes_need_the_token(api_server: ApiServer) -> None:
    with api_server.client() as http:
        missing = http.post("/studies", content="study: x", headers={"Content-Type": "application/yaml"})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        basic = http.delete("/studies/x", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401
        assert http.delete("/studies/x", headers={"Authorization": "Bearer"}).status_code == 401
        wrong = http.delete("/studies/x", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert wrong.status_code == 403 and wrong.json() == {"detail": "wrong token"}
        assert http.post("/studies", headers={"Authorization": f"Bearer {TOKEN[:-1]}"}).status_code == 403
    with api_server.client(TOKEN) as http:
        # Past the token, the request itself is judged: an invalid study file, an unknown study.
        invalid = http.post("/studies", content="study: x", headers={"Content-Type": "application/yaml"})
        assert invalid.status_code == 400
        assert http.delete("/studies/no-such-study").status_code == 404
    with api_server.client() as http:
        assert http.get("/studies").status_code == 200  # reads are open on this server


def test_reads_can_need_the_token(locked_server: ApiServer, small_study: str) -> None:
    with locked_server.client() as http:
        for path in ("/studies", f"/studies/{small_study}", f"/studies/{small_study}/trials",
                     f"/studies/{small_study}/trials/0", f"/studies/{small_study}/trials/0/config.pbtxt",
                     f"/studies/{small_study}/pareto", f"/studies/{small_study}/recommendation"):
            response = http.get(path)
            assert response.status_code == 401, path
            assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403, path
            assert http.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
        assert http.get("/healthz").status_code == 200  # probes need no token
        assert http.get("/studies/no-such-study").status_code == 401  # no token: nothing is said about names


def test_without_a_token_writes_are_off(tokenless_server: ApiServer, small_study: str) -> None:
    with tokenless_server.client(TOKEN) as http:
        posted = http.post("/studies", content="study: x", headers={"Content-Type": "application/yaml"})
        assert posted.status_code == 403 and "TUNER_API_TOKEN" in posted.json()["detail"]
        assert http.delete(f"/studies/{small_study}").status_code == 403
        verify = http.get(f"/studies/{small_study}/verify")
        assert verify.status_code == 403 and "verifications are off" in verify.json()["detail"]
        assert http.get(f"/studies/{small_study}").status_code == 200


def test_the_api_listens_on_localhost_only(api_server: ApiServer) -> None:
    assert api_server.process is not None
    listening = [c.laddr for c in psutil.Process(api_server.process.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and all(address.ip == "127.0.0.1" for address in listening), listening


def test_read_token_without_a_token_is_refused_before_starting(tmp_path: Path) -> None:
    result = subprocess.run(
        [*TUNER, "api", "--storage", f"sqlite:///{tmp_path / 'x.db'}"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={**_clean_env(), "TUNER_API_READ_TOKEN_REQUIRED": "1"}, check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "TUNER_API_READ_TOKEN_REQUIRED is set but TUNER_API_TOKEN is not" in result.stderr


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("TUNER_API_")}
