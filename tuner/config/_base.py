"""What every part of the study file shares: strict models, names, paths relative to the file."""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationInfo,
    field_validator,
)

from tuner.config._limits import MAX_NAME_LENGTH
from tuner.trial import METRICS

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class _Strict(BaseModel):
    # No field takes infinity or NaN: a time or size of .inf is a bound left out, not a value.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML reads ``yes``, ``on`` and ``true`` as true, and pydantic takes true for 1: a number (or a
        list of numbers) given as true or false is refused, not read as 1 or 0."""
        given = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, bool) for v in given) and info.field_name and _numbers_only(cls, info.field_name):
            raise ValueError("a number is needed here, not true or false")
        return value


@functools.cache
def _numbers_only(model: type[BaseModel], field: str) -> bool:
    """Whether ``field`` of ``model`` takes numbers and never a bool."""
    leaves: set[type] = set()
    todo: list[Any] = [model.model_fields[field].annotation]
    while todo:
        hint = todo.pop()
        if typing.get_origin(hint) is typing.Literal:
            leaves.update(type(v) for v in typing.get_args(hint))
        elif typing.get_origin(hint) is typing.Annotated:
            todo.append(typing.get_args(hint)[0])
        elif typing.get_args(hint):  # a union, list, tuple or mapping
            todo.extend(typing.get_args(hint))
        elif isinstance(hint, type | types.UnionType):
            leaves.add(hint)  # type: ignore[arg-type]
    return bool(leaves & {int, float}) and bool not in leaves


def name_of_file(path: Path) -> str:
    """A valid study or model name made of a file's name without its suffix: other characters become
    ``_`` (``my model (v2).onnx``: ``my_model__v2_``), and ``model`` where nothing is left."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip("_.-")[:MAX_NAME_LENGTH]
    return name or "model"


def _valid_name(value: str) -> str:
    """A study or model name: it becomes a file name, so no path, no newline, and a short one."""
    if not _NAME.fullmatch(value):  # match() with $ would let a trailing newline through
        raise ValueError("use letters, digits, '_', '.' and '-' only, starting with a letter or digit")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"at most {MAX_NAME_LENGTH} characters (it has {len(value)})")
    return value


def _known_metric(value: str) -> str:
    if value not in METRICS:
        raise ValueError(f"unknown metric {value!r}; valid: {', '.join(METRICS)}")
    return value


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, Mapping) else {}
    return Path(context.get("base_dir", "."))


def real_path(value: str | Path, base: Path, resolve_absolute: bool = False) -> Path:
    """``value`` with ``~`` expanded, made absolute against ``base`` with its links resolved (an absolute
    ``value`` is kept as written unless ``resolve_absolute``).

    Raises:
        ValueError: a path no file can have, or one that cannot be looked at: a NUL byte, a character the
            file system cannot name, a name over its length limit, a folder on the way that may not be read,
            or the home folder of a user who does not exist.
    """
    try:
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (base / path).resolve()
        elif resolve_absolute:
            path = path.resolve()
        path.exists()  # raises where the path cannot be looked up at all (too long, not searchable)
        return path
    # ValueError: a NUL byte, or UnicodeEncodeError; RuntimeError: the home folder of a user who does not exist
    except (OSError, RuntimeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        if isinstance(exc, UnicodeError):  # its message holds the character itself, which no answer can carry
            reason = "it holds a character no file name can have"
        raise ValueError(f"{str(value)[:80]!r} cannot be a path here: {reason}") from None


def _resolve(value: Path, info: ValidationInfo) -> Path:
    return real_path(value, _base_dir(info))
