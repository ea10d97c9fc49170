"""The ``model`` section: the ONNX file and its inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from tuner.config._base import _NAME, _resolve, _Strict
from tuner.model_info import TRITON_DTYPES


class TensorSpec(_Strict):
    """A model input given in the study file (to fix its shape or type)."""

    name: str
    shape: list[Annotated[int, Field(ge=-1)]]
    dtype: str = "FP32"

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        value = value.upper().removeprefix("TYPE_")
        if value not in TRITON_DTYPES:
            raise ValueError(f"unknown dtype {value!r}; valid: {', '.join(TRITON_DTYPES)}")
        return value


class ModelSettings(_Strict):
    """The model to tune: a name for Triton, the ONNX file, and the inputs its variants are checked on."""

    name: str
    path: Path
    inputs: list[TensorSpec] = []
    validation_data: Path | None = None
    validation_samples: Annotated[int, Field(ge=1, le=256)] = 8

    @field_validator("validation_data")
    @classmethod
    def _existing_data(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.is_file() or path.suffix not in (".npy", ".npz"):
            raise ValueError(f"{path} is not an existing .npy or .npz file")
        return path

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '.' and '-' only")
        return value

    @field_validator("path")
    @classmethod
    def _existing_file(cls, value: Path, info: ValidationInfo) -> Path:
        path = _resolve(value, info)
        if not path.is_file():
            hint = ""
            if path.name == "model.onnx" and path.parent.parent.parent.name == "model_repository":
                hint = f" (run `tuner models prepare {path.parent.parent.name}`)"
            raise ValueError(f"model file {path} does not exist{hint}")
        return path


