"""No secret on disk, in a log or in an answer; deleting a study removes its files.

The API runs on a PostgreSQL URL with a password (the local server trusts 127.0.0.1, so any password
connects): a real study is posted, measured and killed, and the password is looked for everywhere.
"""

from __future__ import annotations

import os
import signal
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import psutil
import pytest
import yaml
from api_helpers import TOKEN, ApiServer, digits_study, unique

from tuner.storage import Store, redact_url

PASSWORD = f"SOMEPASS{uuid.uuid4().hex[:12]}"
SECRET_URL = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/test"
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The API on a storage URL with a password, logging at INFO level."""
    server = ApiServer(SECRET_URL, tmp_path_factory.mktemp("secret-api"), {"TUNER_API_TOKEN": TOKEN}, verbose=True)
    yield server.start()
    server.stop()


def _wait(http, name: str, until, what: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        detail = http.get(f"/studies/{name}").json()
        if until(detail):
            return detail
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout_s:.0f} s")


def _holding_the_password(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and PASSWORD.encode() in p.read_bytes()]


@pytest.mark.integration
@pytest.mark.slow
def test_the_password_reaches_no_file_log_or_answer_and_delete_removes_the_files(
    secret_server: ApiServer, digits_onnx: Path
) -> None:
    name = unique("api-secret")
    work = secret_server.folder / "api-work"
    files = [work / "studies" / f"{name}.yaml", work / "studies" / f"{name}.log", work / "runs" / name]
    with secret_server.client(TOKEN) as http:
        # The in-process worker: a SIGKILLed tuner's server and its python-backend stubs go with it
        # (tuner.triton._process.GroupGuard), which _reap_servers_of checks at the end.
        study = digits_study(name, digits_onnx, n_trials=50)
        posted = http.post("/studies", content=yaml.safe_dump(study), headers=YAML)
        assert posted.status_code == 201, posted.text
        detail = _wait(http, name, lambda d: (d["trials"]["COMPLETE"] >= 1 and d["trials"]["RUNNING"] >= 1),
                       "no trial completed with another running")
        answers = [posted.text] + [http.get(path).text for path in (
            "/studies", f"/studies/{name}", f"/studies/{name}/trials", f"/studies/{name}/trials/0",
            f"/studies/{name}/pareto", "/healthz")]
        assert not [a for a in answers if PASSWORD in a]
        assert not _holding_the_password(secret_server.folder)  # the API's log, the run's file, log and work folder
        assert yaml.safe_load(files[0].read_text())["storage"] == redact_url(SECRET_URL)
        assert [stat.S_IMODE(p.stat().st_mode) for p in files] == [0o600, 0o600, 0o700]
        assert f"storage {redact_url(SECRET_URL)}" in files[1].read_text()  # what `tuner optimize` printed

        run = psutil.Process(detail["run"]["pid"])  # it has the URL in its environment, not on its command line
        assert run.environ()["TUNER_STORAGE"] == SECRET_URL and PASSWORD not in " ".join(run.cmdline())
        # ... and passes it to none of the processes it starts: the Triton server, its python-backend stubs
        children = run.children(recursive=True)
        assert any("tritonserver" in " ".join(c.cmdline()) for c in children), [c.cmdline() for c in children]
        assert not [c.pid for c in children if PASSWORD in _environment(c)]

        # The run's process dies: the trial it left RUNNING will never finish, and the study is not running.
        pid = detail["run"]["pid"]
        os.kill(pid, signal.SIGKILL)
        detail = _wait(http, name, lambda d: not d["run"]["alive"], "the killed run still shows alive", 30)
        assert detail["state"] == "stopped" and detail["trials"]["RUNNING"] >= 1, detail

        deleted = http.delete(f"/studies/{name}")
        assert deleted.status_code == 200, deleted.text
    assert [p for p in files if p.exists()] == []
    assert PASSWORD not in secret_server.log.read_text()
    _reap_servers_of(name)


def _environment(process: psutil.Process) -> str:
    try:
        return " ".join(f"{k}={v}" for k, v in process.environ().items())
    except psutil.NoSuchProcess:  # one that ended since it was listed
        return ""


def _reap_servers_of(name: str) -> None:
    """The killed run's Triton servers die with their parents; wait for that (and clean up if they did not)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [p for p in psutil.process_iter(["cmdline"]) if name in " ".join(p.info["cmdline"] or [])]
        if not left:
            return
        time.sleep(0.5)
    for process in left:
        process.kill()
    pytest.fail(f"processes of the killed run outlived it: {[p.pid for p in left]}")


@pytest.fixture()
def docker_study(storage_url: str) -> Iterator[str]:
    """A study whose file passes a secret to its containers (``docker_args``), written through Optuna."""
    name = unique("api-docker-args")
    store = Store(storage_url)
    study = optuna.create_study(study_name=name, storage=store.optuna, directions=["maximize"])
    server = {"launch": "docker", "image": "tritonserver", "docker_args": ["-e", "HF_TOKEN=hf_not_for_readers"]}
    study.set_user_attr("study_file", {"study": name, "server": server})
    yield name
    store.delete_study(name)
    store.close()


def test_a_reader_without_the_token_does_not_see_docker_args(api_server: ApiServer, docker_study: str) -> None:
    with api_server.client() as http:
        shown = http.get(f"/studies/{docker_study}")
    with api_server.client("wrong-token") as http:
        wrong = http.get(f"/studies/{docker_study}")
    with api_server.client(TOKEN) as http:
        trusted = http.get(f"/studies/{docker_study}")
    assert shown.status_code == wrong.status_code == trusted.status_code == 200
    assert "hf_not_for_readers" not in shown.text and "hf_not_for_readers" not in wrong.text
    assert shown.json()["study_file"]["server"]["docker_args"] == ["***", "***"]
    assert trusted.json()["study_file"]["server"]["docker_args"] == ["-e", "HF_TOKEN=hf_not_for_readers"]
