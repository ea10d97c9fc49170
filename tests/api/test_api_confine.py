"""What a posted study may choose: the study root, the operator's allow-lists, the Host header.

Refusals are checked on a real `tuner api` server whose study root is a folder of the test's
(with a model in it, links leading out of it, and files outside it); what an allow-list lets
through is checked on ``validate_study`` itself, since a study that passes starts a real run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from api_helpers import REPO_ROOT, TOKEN, ApiServer, digits_study, unique

from api.confine import path_fields
from api.runs import validate_study
from api.settings import ApiSettings
from tuner.config import StudyConfig
from tuner.errors import ConfigError


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, digits_onnx: Path) -> Path:
    """A study root with a model, links out of it, and next to it a folder of files outside it."""
    base = tmp_path_factory.mktemp("confine")
    root, outside = base / "root", base / "outside"
    (root / "samples").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(digits_onnx, root / "model.onnx")
    np.save(outside / "secret.npy", np.zeros((2, 64), np.float32))
    np.save(root / "samples" / "own.npy", np.zeros((2, 64), np.float32))
    (root / "samples" / "leak.npy").symlink_to(outside / "secret.npy")
    (root / "linked.onnx").symlink_to(digits_onnx)  # the real model, outside this root
    (outside / "landscape.json").write_text("{}")
    (outside / "tritonserver").write_text("#!/bin/sh\n")
    (root / "tritonserver").write_text("#!/bin/sh\n")
    (root / "backends").mkdir()
    return root


@pytest.fixture(scope="module")
def confined_server(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The API with every launch mode allowed (so each mode's own fields are what is refused), nothing else."""
    folder = tmp_path_factory.mktemp("confine-api")
    env = {"TUNER_API_TOKEN": TOKEN, "TUNER_API_STUDY_ROOT": str(root),
           "TUNER_API_LAUNCH_MODES": "embedded,local,docker,remote"}
    server = ApiServer(f"sqlite:///{folder / 'tuner.db'}", folder, env).start()
    yield server
    server.stop()


def _study(**sections: dict) -> dict:
    data = digits_study(unique("api-confine"), REPO_ROOT / "model.onnx")
    data["model"]["path"] = "model.onnx"  # in the test's study root
    del data["workers"]  # the default workers, which a Ray address or remote servers go with
    for section, fields in sections.items():
        data[section] = {**data.get(section, {}), **fields}
    return data


OUTSIDE = "../outside"
REFUSED = [
    ("binary", _study(server={"launch": "local", "binary": f"{OUTSIDE}/tritonserver"}), "server.binary:"),
    ("binary in the root", _study(server={"launch": "local", "binary": "tritonserver"}), "server.binary:"),
    ("docker argument", _study(server={"launch": "docker", "docker_args": ["--privileged"]}), "server.docker_args.0:"),
    ("docker binary", _study(server={"launch": "docker", "docker_binary": "/tmp/docker"}), "server.docker_binary:"),
    ("docker image", _study(server={"launch": "docker", "image": "evil/triton"}), "server.image:"),
    ("remote host", _study(server={"launch": "remote", "remote": ["10.9.9.9:8000"]}), "server.remote.0.http:"),
    ("ray address", _study(workers={"ray_address": "10.9.9.9:6379"}), "workers.ray_address:"),
    ("non-loopback address", _study(server={"address": "0.0.0.0"}), "server.address:"),
    ("model outside", _study(model={"name": "m", "path": "/etc/hostname"}), "model.path: /etc/hostname is outside"),
    ("model through a link", _study(model={"name": "m", "path": "linked.onnx"}), "model.path:"),
    ("model up the tree", _study(model={"name": "m", "path": f"{OUTSIDE}/../../x.onnx"}), "model.path:"),
    ("validation data", _study(model={"name": "m", "path": "model.onnx", "validation_data": f"{OUTSIDE}/secret.npy"}),
     "model.validation_data:"),
    ("input data", _study(load={"input_data": f"{OUTSIDE}/secret.npy"}), "load.input_data:"),
    ("input folder with a link out", _study(load={"input_data": "samples"}), "load.input_data: "),
    ("replay", _study(search={"replay": f"{OUTSIDE}/landscape.json"}), "search.replay:"),
    ("backend directory", _study(server={"launch": "local", "backend_directory": "/usr/lib"}),
     "server.backend_directory:"),
]


@pytest.mark.parametrize(("data", "field"), [pytest.param(d, f, id=i) for i, d, f in REFUSED])
def test_a_study_choosing_what_the_operator_did_not_allow_is_400_naming_the_field(
    confined_server: ApiServer, data: dict, field: str
) -> None:
    with confined_server.client(TOKEN) as http:
        response = http.post("/studies", content=yaml.safe_dump(data), headers={"Content-Type": "application/yaml"})
    detail = response.json()["detail"]
    assert response.status_code == 400 and field in detail, detail
    assert "(TUNER_API_" in detail, detail  # names the setting that would allow it


def test_a_refusal_does_not_tell_whether_a_file_outside_exists(confined_server: ApiServer) -> None:
    answers = []
    for path in ("/etc/hostname", "/etc/no-such-file"):
        with confined_server.client(TOKEN) as http:
            response = http.post("/studies", json=_study(model={"name": "m", "path": path}))
        answers.append((response.status_code, response.json()["detail"].replace(path, "PATH")))
    assert answers[0] == answers[1] and answers[0][0] == 400


@pytest.mark.parametrize(
    ("host", "status"),
    [("evil.example", 400), ("attacker.127.0.0.1.nip.io", 400), ("localhost", 200), ("127.0.0.1", 200)],
)
def test_a_request_naming_another_host_is_refused(confined_server: ApiServer, host: str, status: int) -> None:
    with confined_server.client() as http:
        response = http.get("/studies", headers={"Host": f"{host}:{confined_server.port}"})
    assert response.status_code == status, response.text


def _settings(root: Path, **environ: str) -> ApiSettings:
    return ApiSettings.from_env("sqlite:///:memory:", {"TUNER_API_STUDY_ROOT": str(root), **environ})


IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
ALLOWED: list[tuple[str, Callable[[Path], dict], dict[str, str]]] = [
    ("local binary and backends", lambda r: _study(server={"launch": "local", "binary": "tritonserver",
                                                           "backend_directory": "backends"}),
     {"TUNER_API_LAUNCH_MODES": "local", "TUNER_API_BINARIES": "{root}/tritonserver"}),
    ("docker image and arguments", lambda r: _study(server={"launch": "docker", "image": IMAGE,
                                                            "docker_args": ["--shm-size=1g", "--ulimit", "memlock=-1"],
                                                            "docker_binary": "podman"}),
     {"TUNER_API_LAUNCH_MODES": "embedded,docker", "TUNER_API_DOCKER_IMAGES": IMAGE,
      "TUNER_API_DOCKER_ARGS": '["--shm-size=1g", "--ulimit", "memlock=-1"]', "TUNER_API_DOCKER_BINARIES": "podman"}),
    ("remote servers", lambda r: _study(server={"launch": "remote", "remote": ["http://gpu-1:8000/", "gpu-2:8000"]}),
     {"TUNER_API_LAUNCH_MODES": "remote", "TUNER_API_REMOTE_SERVERS": "gpu-1:8000,gpu-1:8001, gpu-2:8000,gpu-2:8001"}),
    ("ray cluster", lambda r: _study(workers={"ray_address": "head:6379"}), {"TUNER_API_RAY_ADDRESSES": "head:6379"}),
    ("any address", lambda r: _study(server={"address": "0.0.0.0"}), {"TUNER_API_NON_LOOPBACK": "1"}),
    ("loopback address", lambda r: _study(server={"address": "127.0.0.2"}), {}),
    ("paths in the root", lambda r: _study(load={"input_data": str(r / "samples" / "own.npy")}), {}),
]


@pytest.mark.parametrize(("make", "environ"), [pytest.param(m, e, id=i) for i, m, e in ALLOWED])
def test_what_the_operator_allows_passes(root: Path, make: Callable[[Path], dict], environ: dict[str, str]) -> None:
    settings = _settings(root, **{k: v.replace("{root}", str(root)) for k, v in environ.items()})
    cfg = validate_study(make(root), settings)
    assert isinstance(cfg, StudyConfig) and cfg.storage == settings.storage
    if environ:  # without the settings, the same file is refused
        with pytest.raises(ConfigError, match="not allowed by the API"):
            validate_study(make(root), _settings(root, TUNER_API_LAUNCH_MODES=cfg.server.launch))


def test_every_path_field_of_the_study_file_is_checked() -> None:
    found = {".".join(where) for where, _ in path_fields(StudyConfig)}
    assert {"model.path", "model.validation_data", "server.binary", "server.backend_directory", "search.replay",
            "load.input_data"} <= found


def test_allow_lists_come_from_the_environment(tmp_path: Path) -> None:
    settings = _settings(tmp_path, TUNER_API_LAUNCH_MODES="embedded, docker", TUNER_API_DOCKER_ARGS='["-e", "A=1,2"]',
                         TUNER_API_ALLOWED_HOSTS="tuner.example,", TUNER_API_NON_LOOPBACK="true")
    assert settings.launch_modes == ("embedded", "docker") and settings.docker_args == ("-e", "A=1,2")
    assert settings.allowed_hosts == ("tuner.example",) and settings.non_loopback
    defaults = _settings(tmp_path)
    assert defaults.launch_modes == ("embedded",) and defaults.binaries == () and defaults.ray_addresses == ()
    assert defaults.allowed_hosts is None and not defaults.non_loopback
    with pytest.raises(ConfigError, match="TUNER_API_LAUNCH_MODES"):
        _settings(tmp_path, TUNER_API_LAUNCH_MODES="embedded,ssh")


def test_a_model_repository_is_confined_to_the_root_with_every_file_in_it(root: Path, digits_onnx: Path) -> None:
    from factories import doubler_repository

    repos = root / "repos"
    doubler_repository(repos / "clean")
    doubler_repository(repos / "leaky")
    (repos / "leaky" / "doubler" / "1" / "weights.bin").symlink_to(digits_onnx)  # a file outside the root
    settings = _settings(root)

    def study(repository: str) -> dict:
        return {**_study(), "model": {"name": "doubler", "repository": repository}}

    assert validate_study(study("repos/clean"), settings).model.repository == (repos / "clean").resolve()
    with pytest.raises(ConfigError, match="model.repository: .*outside the study root"):
        validate_study(study("repos/leaky"), settings)
    with pytest.raises(ConfigError, match="model.repository: .*outside the study root"):
        validate_study(study(OUTSIDE), settings)
