"""What a posted study file may choose: the study root and the operator's allow-lists.

A study posted to the API runs as the API's user, so whatever in it names code to run, a file
to read, or a place the model and its inputs are sent to must be what the operator allowed
(``api.settings.ApiSettings``, from ``TUNER_API_*`` variables):

- every path of the study file (each ``Path`` field of ``tuner.config``: ``model.path``, ``model.repository``,
  ``model.validation_data``, ``load.input_data``, ``search.replay``, ``server.backend_directory``)
  must resolve, symlinks followed, inside the study root, and so must every file inside a folder
  it names; ``server.binary`` must be one of ``TUNER_API_BINARIES`` instead;
- ``server.launch``, ``server.docker_binary``, ``server.image``, ``server.docker_args``,
  ``server.remote`` and ``workers.ray_address`` must be on their allow-lists;
- ``server.address`` must be a loopback address unless ``TUNER_API_NON_LOOPBACK``.

Paths are checked on the posted data, before the file is validated, so that a refusal never
tells whether a file outside the root exists. Each refusal is a ``ConfigError`` naming the field
and the setting that would allow it.
"""

from __future__ import annotations

import ipaddress
import os
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from api.settings import ENVIRONMENT, ApiSettings
from tuner.config import StudyConfig, real_path
from tuner.errors import ConfigError

#: Path fields the API sets itself rather than taking from the posted file.
_SET_BY_API: set[tuple[str, ...]] = {("work_dir",)}
#: Path fields checked against an allow-list instead of the study root.
_ALLOW_LISTED: dict[tuple[str, ...], str] = {("server", "binary"): "binaries"}
#: A folder named in a study file holding more entries than this is refused rather than walked.
MAX_FOLDER_ENTRIES = 10_000


def _refusal(field: str, what: str, setting: str, reason: str = "is not allowed by the API") -> ConfigError:
    return ConfigError(f"study file: {field}: {what} {reason} ({ENVIRONMENT[setting]})")


def _leaves(annotation: Any) -> Iterator[Any]:
    """The types and literal values an annotation is made of (through unions, lists, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        yield from typing.get_args(annotation)
    elif origin is not None:
        if isinstance(origin, type) and origin is not types.UnionType:
            yield origin
        for arg in typing.get_args(annotation):
            yield from _leaves(arg)
    elif isinstance(annotation, type):
        yield annotation


def path_fields(
    model: type[BaseModel], prefix: tuple[str, ...] = (), within: frozenset[type[BaseModel]] = frozenset()
) -> Iterator[tuple[tuple[str, ...], set[str]]]:
    """Where a model (and the models in it) holds paths, with the words the same field takes instead.

    A model that holds itself (the search space's ``models``) is walked once: ``within`` holds the
    models on the way here.
    """
    for name, info in model.model_fields.items():
        leaves = list(_leaves(info.annotation))
        where = (*prefix, name)
        if any(isinstance(leaf, type) and issubclass(leaf, Path) for leaf in leaves):
            yield where, {leaf for leaf in leaves if isinstance(leaf, str)}
        for leaf in leaves:
            if isinstance(leaf, type) and issubclass(leaf, BaseModel) and leaf is not model and leaf not in within:
                yield from path_fields(leaf, where, within | {model})


def check_paths(data: Mapping[str, Any], settings: ApiSettings) -> None:
    """Refuses a path of the posted data that leaves the study root, or a binary not allowed.

    Raises:
        ConfigError: naming the field.
    """
    for where, words in path_fields(StudyConfig):
        value = _at(data, where)
        if not isinstance(value, str) or value in words or where in _SET_BY_API:
            continue
        field = ".".join(where)
        path = _real(field, value, settings.study_root)
        setting = _ALLOW_LISTED.get(where)
        if setting is not None:
            if path not in getattr(settings, setting):
                raise _refusal(field, str(path), setting)
            continue
        _check_inside(field, path, settings.study_root)


def _at(data: Mapping[str, Any], where: tuple[str, ...]) -> Any:
    value: Any = data
    for key in where:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _real(field: str, value: str, root: Path) -> Path:
    try:
        return real_path(value, root, resolve_absolute=True)
    except ValueError as exc:
        raise ConfigError(f"study file: {field}: {exc}") from None


def _check_inside(field: str, path: Path, root: Path) -> None:
    outside = f"is outside the study root {root}"
    if not path.is_relative_to(root):
        raise _refusal(field, str(path), "study_root", outside)
    if not path.is_dir():
        return
    # A folder's files are read too: a symlink inside it must not lead out of the root.
    for count, entry in enumerate(path.rglob("*")):
        if count >= MAX_FOLDER_ENTRIES:
            raise ConfigError(f"study file: {field}: {path} holds over {MAX_FOLDER_ENTRIES} entries")
        real = entry.resolve()
        if not real.is_relative_to(root):
            raise _refusal(field, f"{entry} leads to {real}, which", "study_root", outside)


def check_choices(cfg: StudyConfig, settings: ApiSettings, own_ray_address: str | None = None) -> None:
    """Refuses a launch mode, executable, image, docker argument, server, Ray cluster or address not allowed.

    Args:
        cfg: The validated study file.
        settings: The API's allow-lists.
        own_ray_address: The API's own ``$TUNER_RAY_ADDRESS``, always allowed.

    Raises:
        ConfigError: naming the field.
    """
    server = cfg.server
    if server.launch not in settings.launch_modes:
        raise _refusal("server.launch", server.launch, "launch_modes")
    if server.docker_binary is not None and server.docker_binary not in settings.docker_binaries:
        raise _refusal("server.docker_binary", server.docker_binary, "docker_binaries")
    if server.image is not None and server.image not in settings.docker_images:
        raise _refusal("server.image", server.image, "docker_images")
    for i, arg in enumerate(server.docker_args):
        if arg not in settings.docker_args:
            raise _refusal(f"server.docker_args.{i}", repr(arg), "docker_args")
    for i, endpoint in enumerate(server.remote):
        http = _host_port(endpoint.http)
        grpc = _host_port(endpoint.grpc) if endpoint.grpc else f"{http.rsplit(':', 1)[0]}:8001"
        for kind, address in (("http", http), ("grpc", grpc)):
            if address not in settings.remote_servers:
                raise _refusal(f"server.remote.{i}.{kind}", address, "remote_servers")
    ray = cfg.workers.ray_address
    if ray is not None and ray != own_ray_address and ray not in settings.ray_addresses:
        raise _refusal("workers.ray_address", ray, "ray_addresses")
    if not settings.non_loopback and not is_loopback(server.address):
        raise _refusal("server.address", f"{server.address} (not a loopback address)", "non_loopback")


def _host_port(url: str) -> str:
    return url.strip().removeprefix("http://").rstrip("/")


def is_loopback(address: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def own_ray_address() -> str | None:
    """The Ray cluster the API's runs join when their study file names none."""
    return os.environ.get("TUNER_RAY_ADDRESS") or None
