"""Starting and stopping studies over HTTP: POST /studies and DELETE /studies/{name}."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import factories
import psutil
import pytest
import yaml
from api_helpers import TOKEN, ApiServer, digits_study, unique

from api.errors import RunEnvironmentError, RunFailedError, status_for
from api.runs import RunManager, RunSlots, study_files, validate_study
from api.settings import ApiSettings
from api.verify_runs import VerifyRun
from tuner.errors import ConfigError

YAML = {"Content-Type": "application/yaml"}


def _post(server: ApiServer, body: str | bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    with server.client(TOKEN) as http:
        response = http.post("/studies", content=body, headers=headers or YAML)
    return response.status_code, response.json()["detail"] if response.status_code >= 400 else response.text


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        (lambda d: d["search"].update(sampler="annealing"), 400, "search.sampler: unknown sampler 'annealing'"),
        (lambda d: d["search"].update(bogus=1), 400, "search.bogus: unknown field"),
        (lambda d: d["model"].update(path="model_repository/none/1/model.onnx"), 400, "model.path: model file"),
        (lambda d: d["model"].update(path="/etc/hostname"), 400, "model.path: /etc/hostname is outside"),
        (lambda d: d["model"].update(path="../../../../../etc/hostname"), 400, "is outside"),
        (lambda d: d.update(study="../escape"), 400, "study: use letters"),
        (lambda d: d.update(study="x" * 300), 400, "study: at most 100 characters"),
        (lambda d: d.update(study="name\n"), 400, "study: use letters"),
        (lambda d: d["model"].update(name="m" * 101), 400, "model.name: at most 100 characters"),
        (lambda d: d.update(workers={"count": 1_000_000}), 400, "workers.count: Input should be less than or equal"),
        (lambda d: d["load"].update(concurrency=[100_000]), 400, "load.concurrency.0: Input should be less than"),
        (lambda d: d["load"].update(trial_timeout_s=float("inf")), 400, "load.trial_timeout_s: Input should be a"),
        (lambda d: d.pop("model"), 400, "model: Field required"),
        (lambda d: d["model"].update(path="models/m.onnx\x00/../x"), 400, "model.path: 'models/m.onnx\\x00/../x' cannot"),
        (lambda d: d["model"].update(path="a" * 5000), 400, "cannot be a path here: File name too long"),
        (lambda d: d["model"].update(path="~nosuchuser/x.onnx"), 400, "cannot be a path here"),
        (lambda d: d["load"].update(input_data="\udcff"), 400, "a character that is not text"),
    ],
)
def test_an_invalid_study_file_is_400_naming_the_field(api_server: ApiServer, digits_onnx: Path, change,
                                                     status: int, message: str) -> None:
    data = digits_study(unique("api-bad"), digits_onnx)
    change(data)
    code, detail = _post(api_server, json.dumps(data), {"Content-Type": "application/json"})
    assert code == status and message in detail, detail


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ("study: [unclosed", YAML, 400, "not valid YAML"),
        ("{not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        ("[1, 2]", {"Content-Type": "application/json"}, 400, "expected a mapping"),
        ("", YAML, 400, "expected a mapping"),
        (b"\xff\xfe", YAML, 400, "not valid YAML"),
        ("<html/>", {"Content-Type": "text/html"}, 415, "application/yaml"),
        ("a: " + "x" * 1_100_000, YAML, 413, "over 1000000 bytes"),
        ('{"study": "x", "x": ' + "[" * 1000 + "]" * 1000 + "}", {"Content-Type": "application/json"}, 400,
         "nested too deeply"),
        ("study: x\nx: " + "[" * 1000 + "]" * 1000, YAML, 400, "nested too deeply"),
        ("study: a\nstudy: b\n", YAML, 400, "'study' is given twice in the same mapping"),
        ('{"study": "a", "study": "b"}', {"Content-Type": "application/json"}, 400, "'study' is given twice"),
    ],
)
def test_a_body_that_is_no_study_file(api_server: ApiServer, body: str, headers: dict, status: int,
                                      message: str) -> None:
    code, detail = _post(api_server, body, headers)
    assert code == status and message in detail, detail


@pytest.mark.parametrize(("name", "status"), [("x" * 300, 404), ("name%0A", 404), ("x" * 513, 422), ("name%00", 422)])
def test_names_no_study_can_have_are_404_or_422(api_server: ApiServer, name: str, status: int) -> None:
    with api_server.client(TOKEN) as http:
        answers = [http.get(f"/studies/{name}"), http.get(f"/studies/{name}/trials"), http.delete(f"/studies/{name}")]
    assert [r.status_code for r in answers] == [status] * 3, [r.text for r in answers]


def test_a_study_that_exists_is_a_conflict(api_server: ApiServer, small_study: str, digits_onnx: Path) -> None:
    code, detail = _post(api_server, json.dumps(digits_study(small_study, digits_onnx)),
                         {"Content-Type": "application/json"})
    assert code == 409 and "exists already" in detail


def test_delete_stops_a_running_study_and_removes_it(api_server: ApiServer, digits_onnx: Path) -> None:
    name = unique("api-stop")
    code, _ = _post(api_server, yaml.safe_dump(digits_study(name, digits_onnx, n_trials=50)))
    assert code == 201
    with api_server.client(TOKEN) as http:
        deadline = time.monotonic() + 120
        while http.get(f"/studies/{name}").json()["trials"]["RUNNING"] == 0:
            assert time.monotonic() < deadline, "no trial started within 120 s"
            time.sleep(0.3)
        detail = http.get(f"/studies/{name}").json()
        assert detail["state"] == "running" and detail["run"]["alive"]
        pid = detail["run"]["pid"]
        # The file the run was given: validated, absolute paths, the API's storage.
        written = yaml.safe_load((api_server.folder / "api-work" / "studies" / f"{name}.yaml").read_text())
        assert written["storage"] == api_server.storage
        assert written["model"]["path"] == str(digits_onnx) and Path(written["work_dir"]).is_absolute()

        deleted = http.delete(f"/studies/{name}")
        assert deleted.status_code == 200 and deleted.json() == {"name": name, "stopped_run": True}
        assert http.get(f"/studies/{name}").status_code == 404
        assert name not in [s["name"] for s in http.get("/studies").json()]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if "tritonserver" in " ".join(p.info["cmdline"] or []) and name in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, "the study's Triton server outlived its run"


@pytest.mark.integration
def test_a_study_posted_to_an_api_on_its_default_folders_runs(tmp_path: Path, digits_onnx: Path) -> None:
    """As the README starts it: in the folder that holds the model, neither folder set."""
    shutil.copy(digits_onnx, tmp_path / "model.onnx")
    server = ApiServer(f"sqlite:///{tmp_path / 'tuner.db'}", tmp_path, {"TUNER_API_TOKEN": TOKEN}, own_paths=False)
    name = unique("api-defaults")
    try:
        server.start()
        code, detail = _post(server, yaml.safe_dump(factories.digits_study(name, "model.onnx", n_trials=1)))
        assert code == 201, detail
        with server.client(TOKEN) as http:
            deadline = time.monotonic() + 180
            while (detail := http.get(f"/studies/{name}").json())["state"] != "complete":
                assert detail["state"] == "running", detail
                assert time.monotonic() < deadline, "the run did not finish within 180 s"
                time.sleep(0.5)
        assert detail["trials"]["COMPLETE"] == 1
        assert (tmp_path / ".tuner-api" / "studies" / f"{name}.yaml").is_file()
    finally:
        server.stop()


#: A run that fails as `tuner optimize` does before it stores its study: a last line, then an exit code.
FAILS_BEFORE_STORING = """
import sys
print("a warning", flush=True)
print(sys.argv[2], flush=True)
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize(
    ("code", "error", "status", "detail"),
    [
        (2, ConfigError, 400, "server.http_port: port 8000 is already in use"),
        (3, RunEnvironmentError, 503, "cannot run /opt/tritonserver/bin/tritonserver: Permission denied"),
        (1, RunFailedError, 500, "exited with code 1"),
        (143, RunFailedError, 500, "exited with code 143"),
    ],
)
def test_a_run_that_exits_before_storing_its_study_answers_by_its_exit_code(
    tmp_path: Path, digits_onnx: Path, code: int, error: type[Exception], status: int, detail: str
) -> None:
    root = digits_onnx.resolve().parents[3]  # the repository whose model_repository holds the model
    settings = ApiSettings.from_env(f"sqlite:///{tmp_path / 'tuner.db'}", {
        "TUNER_API_WORK_DIR": str(tmp_path / "work"), "TUNER_API_STUDY_ROOT": str(root),
    })
    cfg = validate_study(digits_study(unique("api-exit"), digits_onnx), settings)
    script = tmp_path / "run.py"
    script.write_text(FAILS_BEFORE_STORING)
    last_line = f"error: {detail}" if code in (2, 3) else "Traceback"
    runs = RunManager(settings, lambda name: False, RunSlots(1), [sys.executable, str(script), str(code), last_line])
    with pytest.raises(error) as raised:
        runs.start(cfg)
    assert type(raised.value) is error and status_for(raised.value) == status
    assert detail in str(raised.value)
    if code == 2:
        assert str(raised.value) == detail  # the error line alone, as a study file refused before it ran
    # nothing is stored, so nothing could delete the run's file and log later
    assert not [path for path in study_files(settings, cfg.study) if path.exists()]


@pytest.mark.parametrize(("code", "outcome"), [(0, "holds"), (1, "does not hold"), (2, "refused"), (3, "failed"),
                                               (143, "failed")])
def test_a_verifications_outcome_follows_its_exit_code(tmp_path: Path, code: int, outcome: str) -> None:
    import subprocess

    process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    process.wait(timeout=30)
    assert VerifyRun("s", process, tmp_path / "log", None, 1).outcome == outcome
