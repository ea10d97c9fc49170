"""The whole study file, its objectives and constraints; reading and validating it.

    cfg = load_config(Path("search_spaces/digits_forest_cpu.yaml"))

Every error names the field path (``search.space.instance_count.low: ...``). Relative paths
in the file, the SQLite database and the work folder included, are relative to the file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from tuner.config._base import _base_dir, _known_metric, _resolve, _Strict, _valid_name
from tuner.config._load import LoadSettings
from tuner.config._model import ModelSettings
from tuner.config._search import UNION_TAGS, SearchSettings, Transfer
from tuner.config._server import ServerSettings, WorkerSettings
from tuner.errors import ConfigError
from tuner.trial import METRICS


class Objective(_Strict):
    """One objective: a metric and whether to maximize or minimize it."""

    metric: str
    direction: Literal["maximize", "minimize"]

    _metric = field_validator("metric")(classmethod(lambda cls, v: _known_metric(v)))


class Bound(_Strict):
    """Limits on a metric; a trial outside them is infeasible."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


_DEFAULT_OBJECTIVES = [
    Objective(metric="throughput", direction="maximize"),
    Objective(metric="latency_p99_ms", direction="minimize"),
]


class StudyConfig(_Strict):
    """A whole study file."""

    study: str
    storage: str = Field(default="sqlite:///tuner.db", validate_default=True)
    work_dir: Path = Field(default=Path(".tuner"), validate_default=True)
    model: ModelSettings
    server: ServerSettings = ServerSettings()
    workers: WorkerSettings = WorkerSettings()
    search: SearchSettings = SearchSettings()
    objectives: Annotated[list[Objective], Field(min_length=1)] = _DEFAULT_OBJECTIVES
    constraints: dict[str, Bound] = {}
    load: LoadSettings = LoadSettings()

    _study_name = field_validator("study")(classmethod(lambda cls, v: _valid_name(v)))

    @field_validator("storage")
    @classmethod
    def _resolve_sqlite(cls, value: str, info: ValidationInfo) -> str:
        return resolve_storage(value, _base_dir(info))

    @field_validator("work_dir")
    @classmethod
    def _resolve_work_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @field_validator("constraints")
    @classmethod
    def _known_constraints(cls, value: dict[str, Bound]) -> dict[str, Bound]:
        for metric, bound in value.items():
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
            if bound.max is not None and bound.max < 0:  # no metric is ever below 0: no config could hold it
                raise ValueError(f"{metric}: max {bound.max:g} can never hold, as {metric} is never below 0")
        return value

    @field_validator("objectives")
    @classmethod
    def _distinct_objectives(cls, value: list[Objective]) -> list[Objective]:
        metrics = [o.metric for o in value]
        if len(set(metrics)) != len(metrics):
            raise ValueError("each metric may be an objective once")
        return value

    def latency_budget(self) -> tuple[str, float] | None:
        """The study's first constraint with a maximum on a latency metric, as (metric, budget)."""
        return next(
            ((m, b.max) for m, b in self.constraints.items() if m.startswith("latency_") and b.max is not None),
            None,
        )

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        fixed_ports = self.server.http_port is not None
        if fixed_ports and (self.workers.count or 1) > 1:
            raise ValueError("server: fixed ports allow one worker only; leave the ports out")
        servers = len(self.server.remote)
        if self.server.launch == "remote" and self.workers.count != servers:
            raise ValueError(
                f"workers.count: launch remote runs one worker per server, and server.remote has {servers}"
            )
        if self.load.shared_memory != "none" and not self.server.shares_memory:
            raise ValueError(
                f"load.shared_memory: {self.load.shared_memory} needs the server's /dev/shm to be the load "
                "generator's: launch embedded or local, or docker with --ipc=host in server.docker_args "
                f"(launch is {self.server.launch})"
            )
        transfer = self.search.warm_start
        if isinstance(transfer, Transfer) and self.study in transfer.from_:
            raise ValueError(f"search.warm_start.from: names this study ({self.study!r}); name earlier studies")
        return self

    @model_validator(mode="before")
    @classmethod
    def _one_worker_per_remote_server(cls, data: Any) -> Any:
        """``launch: remote`` with no worker count: one worker per server, whatever the GPUs here."""
        if not isinstance(data, Mapping):
            return data
        server, workers = data.get("server"), data.get("workers") or {}
        if not (isinstance(server, Mapping) and server.get("launch") == "remote" and isinstance(workers, Mapping)):
            return data
        remote = server.get("remote")
        if "count" in workers or not remote:
            return data
        return {**data, "workers": {**workers, "count": len(remote) if isinstance(remote, list) else 1}}


def resolve_storage(url: str, base_dir: Path) -> str:
    """Makes a relative SQLite path absolute against ``base_dir``; other URLs pass through."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        path = Path(url[len(prefix) :])
        if not path.is_absolute():
            return prefix + str((base_dir / path).resolve())
    return url


def parse_config(data: Any, base_dir: Path, source: str = "study file") -> StudyConfig:
    """Validates already-parsed YAML/JSON data.

    Raises:
        ConfigError: with one line per problem, each naming the field path.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of fields at the top level")
    try:
        return StudyConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to read") from None
    except UnicodeEncodeError:  # pydantic takes no string holding half of a UTF-16 pair
        raise ConfigError(f"{source}: a string holds a character that is not text (a lone surrogate)") from None


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML's safe loader, which refuses a key given twice in one mapping (it would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be given again
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # a key that is no scalar: pydantic names it
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice in the same mapping", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


# YAML 1.1, which PyYAML reads, takes a number in exponent form only with a dot (``1.0e3``): ``1e3`` and
# ``5e-3`` would read as strings and be refused as "not a number". YAML 1.2 reads them as numbers, as a
# user writing them means.
_UniqueKeys.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """A study file's YAML, as PyYAML's safe loader reads it, but a key given twice is an error.

    Raises:
        yaml.YAMLError: the text is not YAML, or repeats a key.
        RecursionError: it is nested too deeply to read.
    """
    return yaml.load(text, Loader=_UniqueKeys)  # a SafeLoader: no tag builds a Python object


def load_config(path: Path) -> StudyConfig:
    """Reads and validates a study file.

    Raises:
        ConfigError: the file is missing, is not YAML, or a field is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read study file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        data = parse_yaml(text)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    return parse_config(data, path.resolve().parent, source=str(path))


def _describe(error: Mapping[str, Any]) -> str:
    path = tuple(error.get("loc", ()))
    loc = ".".join(str(p) for p in path if not _is_union_tag(p))
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field" + _known_fields(path)
    return f"{loc}: {message}" if loc else message


def _known_fields(loc: tuple[Any, ...]) -> str:
    """``; did you mean instance_count?`` or ``; valid: a, b, c``: the fields of the mapping an unknown field
    ``loc`` is in, from the study file's models (each union member's and list item's included)."""
    models: set[type[BaseModel]] = {StudyConfig}
    for part in loc[:-1]:
        if not isinstance(part, str):
            continue  # a list's index or a dict's key: the same models' items
        inner = {m for model in models if (f := _fields(model).get(part)) is not None for m in _models_in(f.annotation)}
        models = inner or models  # a union's tag names no field: the members were found with the field before it
    fields = sorted({name for model in models for name in _fields(model)})
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1) if loc else []
    if close:
        return f"; did you mean {close[0]}?"
    return f"; valid: {', '.join(fields)}" if fields else ""


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields by the names a study file gives them (their aliases, where they have one)."""
    return {f.alias or name: f for name, f in model.model_fields.items()}


def _models_in(annotation: Any) -> set[type[BaseModel]]:
    """The pydantic models an annotation holds, through unions, Annotated, lists and dicts."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return {m for arg in get_args(annotation) for m in _models_in(arg)}


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the union member tried to the location
    return isinstance(part, str) and (part in UNION_TAGS or "[" in part or part in ("int", "float", "bool", "str"))
