"""The API's settings, from arguments and ``TUNER_API_*`` environment variables."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from tuner.errors import ConfigError

#: Environment variables read by ``ApiSettings.from_env``, by field.
ENVIRONMENT = {
    "token": "TUNER_API_TOKEN",
    "read_token_required": "TUNER_API_READ_TOKEN_REQUIRED",
    "work_dir": "TUNER_API_WORK_DIR",
    "study_root": "TUNER_API_STUDY_ROOT",
    "start_timeout_s": "TUNER_API_START_TIMEOUT_S",
    "stop_timeout_s": "TUNER_API_STOP_TIMEOUT_S",
    "max_runs": "TUNER_API_MAX_RUNS",
    "refresh_s": "TUNER_API_REFRESH_S",
    "storage_wait_s": "TUNER_API_STORAGE_WAIT_S",
    "allowed_hosts": "TUNER_API_ALLOWED_HOSTS",
    "launch_modes": "TUNER_API_LAUNCH_MODES",
    "binaries": "TUNER_API_BINARIES",
    "docker_binaries": "TUNER_API_DOCKER_BINARIES",
    "docker_images": "TUNER_API_DOCKER_IMAGES",
    "docker_args": "TUNER_API_DOCKER_ARGS",
    "remote_servers": "TUNER_API_REMOTE_SERVERS",
    "ray_addresses": "TUNER_API_RAY_ADDRESSES",
    "non_loopback": "TUNER_API_NON_LOOPBACK",
}

#: The fewest characters a token may have.
MIN_TOKEN_LENGTH = 16
#: The Host headers the API answers when TUNER_API_ALLOWED_HOSTS is unset (with the address it listens on).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")

_LIST_FIELDS = (
    "allowed_hosts",
    "launch_modes",
    "binaries",
    "docker_binaries",
    "docker_images",
    "docker_args",
    "remote_servers",
    "ray_addresses",
)


class ApiSettings(BaseModel):
    """What the API serves and who may change it.

    Attributes:
        storage: The study storage's SQLAlchemy URL.
        token: The bearer token that writes (and, where required, reads) need; no token: writes are off.
        read_token_required: Reads need the token too.
        work_dir: Where posted study files, the logs of the runs started and their work folders go.
        study_root: Relative paths in a posted study file are relative to it, and its model must lie in it.
        start_timeout_s: How long a POST waits for the started study to appear in the storage.
        stop_timeout_s: How long a DELETE waits for a run to stop after SIGINT before killing it.
        max_runs: How many runs (posted studies and verifications) may be alive at once; another is
            refused (409), as runs on the same cores spoil each other's measurements.
        max_body_bytes: The largest study file a POST accepts.
        refresh_s: Reads of a study may be this many seconds behind the database (0: never behind);
            in between, requests are answered from memory.
        storage_wait_s: How long a request waits through a database that does not answer before it is
            answered 503: a client is told soon, and no worker thread is held for minutes (the runs the
            API starts wait as ``tuner optimize`` does, 120 s).
        allowed_hosts: The Host headers answered (others: 400); None: ``LOOPBACK_HOSTS`` and the
            address the API listens on (``serve`` adds it).

    What a posted study may choose (an allow-list each; ``tuner optimize`` run by hand is not bound by it):

    Attributes:
        launch_modes: ``server.launch`` values.
        binaries: ``server.binary`` executables (compared after symlinks are followed).
        docker_binaries: ``server.docker_binary`` values (left out: ``docker`` on the PATH).
        docker_images: ``server.image`` values.
        docker_args: ``server.docker_args`` items, each compared whole.
        remote_servers: ``host:port`` of the HTTP and gRPC endpoints in ``server.remote``.
        ray_addresses: ``workers.ray_address`` values, besides the API's own ``$TUNER_RAY_ADDRESS``.
        non_loopback: ``server.address`` may be other than a loopback address.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    storage: str
    token: SecretStr | None = None
    read_token_required: bool = False
    # validated too when not given: made absolute against the folder the API starts in
    work_dir: Annotated[Path, Field(validate_default=True)] = Path(".tuner-api")
    study_root: Annotated[Path, Field(validate_default=True)] = Path(".")
    start_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    stop_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    max_runs: Annotated[int, Field(ge=1, le=64)] = 1
    max_body_bytes: Annotated[int, Field(gt=0)] = 1_000_000
    refresh_s: Annotated[float, Field(ge=0, le=60)] = 0.5
    storage_wait_s: Annotated[float, Field(ge=0, le=600)] = 10.0
    allowed_hosts: tuple[str, ...] | None = None
    launch_modes: tuple[Literal["embedded", "local", "docker", "remote"], ...] = ("embedded",)
    binaries: tuple[Path, ...] = ()
    docker_binaries: tuple[str, ...] = ()
    docker_images: tuple[str, ...] = ()
    docker_args: tuple[str, ...] = ()
    remote_servers: tuple[str, ...] = ()
    ray_addresses: tuple[str, ...] = ()
    non_loopback: bool = False

    @field_validator(*_LIST_FIELDS, mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """A variable's list: comma-separated, or a JSON list (for items that hold commas)."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list: {exc}") from None
        return tuple(item.strip() for item in value.split(",") if item.strip())

    @field_validator("allowed_hosts")
    @classmethod
    def _no_hosts_is_default(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return value or None

    @field_validator("binaries")
    @classmethod
    def _real_paths(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        return tuple(path.expanduser().resolve() for path in value)

    @field_validator("token")
    @classmethod
    def _empty_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"at least {MIN_TOKEN_LENGTH} characters, or anyone may guess it "
                "(one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("work_dir", "study_root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _reads_need_a_token(self) -> ApiSettings:
        if self.read_token_required and self.token is None:
            raise ValueError("TUNER_API_READ_TOKEN_REQUIRED is set but TUNER_API_TOKEN is not")
        return self

    @property
    def writes_enabled(self) -> bool:
        return self.token is not None

    @classmethod
    def from_env(cls, storage: str, environ: Mapping[str, str] | None = None, **overrides: object) -> ApiSettings:
        """Settings for ``storage``, from ``TUNER_API_*`` variables, then ``overrides``.

        Raises:
            ConfigError: a variable or override is invalid (the message names it).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {"storage": storage}
        for field, variable in ENVIRONMENT.items():
            if variable in environ:
                values[field] = environ[variable]
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                field, *item = [str(p) for p in error["loc"]] or [""]
                name = ENVIRONMENT.get(field, field) + "".join(f" item {int(i) + 1}" for i in item if i.isdigit())
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"{name}: {message}" if name else message)
            raise ConfigError("; ".join(problems)) from None
