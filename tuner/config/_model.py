"""The ``model`` section: the model (an ONNX file, or a model of a Triton repository) and its inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tuner.config._base import _resolve, _Strict, _valid_name, name_of_file
from tuner.config._limits import MAX_INPUTS, MAX_RANK, MAX_REQUEST_BYTES, MAX_STEPS
from tuner.model_info import TRITON_DTYPES, tensor_bytes


class TensorSpec(_Strict):
    """A model input given in the study file (to fix its shape or type)."""

    name: str
    shape: Annotated[list[Annotated[int, Field(ge=-1)]], Field(max_length=MAX_RANK)]
    #: Triton's name of the type (``FP32``; numpy's ``float32`` reads so too); None: the model's own.
    dtype: str | None = None

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample of this input (a free batch dimension counts once; of 8-byte elements, the
        largest, where the type is the model's, which is read later)."""
        return tensor_bytes(self.dtype or "FP64", self.shape)

    @field_validator("shape")
    @classmethod
    def _sized(cls, value: list[int]) -> list[int]:
        if 0 in value:
            raise ValueError(f"{value}: each dimension is a size of at least 1, or -1 where it is free")
        return value

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.upper().removeprefix("TYPE_")
        name = _NUMPY_FLOATS.get(name, name)
        if name not in TRITON_DTYPES:
            raise ValueError(f"unknown dtype {value!r}; valid: {', '.join(TRITON_DTYPES)}")
        return name


#: numpy's names of the float types, where Triton's differ (its integer and bool names are numpy's).
_NUMPY_FLOATS = {"FLOAT16": "FP16", "FLOAT32": "FP32", "FLOAT64": "FP64"}


class ModelSettings(_Strict):
    """The model to tune: a name for Triton, where it comes from, and the inputs its variants are checked on.

    ``path`` names one ONNX file; ``repository`` names a Triton model repository whose folder
    ``name`` (with its config.pbtxt) is the model, of any backend (tuner.model.read_repository_model).
    A study gives one of the two.
    """

    name: str
    path: Path | None = None
    repository: Path | None = None
    #: Models of the repository that the named python model calls through BLS (Triton's business logic
    #: scripting): they are tuned with it, each under its own name, as an ensemble's steps are.
    composing: Annotated[list[Annotated[str, AfterValidator(_valid_name)]], Field(max_length=MAX_STEPS)] = []
    inputs: Annotated[list[TensorSpec], Field(max_length=MAX_INPUTS)] = []
    validation_data: Path | None = None
    validation_samples: Annotated[int, Field(ge=1, le=256)] = 8
    #: How a variant's answers are judged against FP32's (tuner.model._accuracy): ``auto`` the
    #: agreement of the top-1 class where an output looks like class scores and the cosine
    #: similarity elsewhere; ``cosine`` the cosine similarity of every output. An embedding
    #: [N, C] looks like class scores: name ``cosine`` for it.
    accuracy_metric: Literal["auto", "cosine"] = "auto"

    @field_validator("validation_data")
    @classmethod
    def _existing_data(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.is_file() or path.suffix not in (".npy", ".npz"):
            raise ValueError(f"{path} is not an existing .npy or .npz file")
        return path

    _name = field_validator("name")(classmethod(lambda cls, v: _valid_name(v)))

    @model_validator(mode="before")
    @classmethod
    def _name_of_the_file(cls, data: Any) -> Any:
        """An ONNX file's model is named after the file where the study names it not (``resnet-50.onnx``:
        ``resnet-50``); a repository's model is the folder ``name`` names."""
        if isinstance(data, dict) and "name" not in data and "repository" not in data:
            path = data.get("path")
            if isinstance(path, (str, Path)) and str(path):
                data = {**data, "name": name_of_file(Path(path))}
        return data

    @field_validator("inputs")
    @classmethod
    def _one_request_fits(cls, value: list[TensorSpec]) -> list[TensorSpec]:
        total = sum(t.sample_bytes for t in value)
        if total > MAX_REQUEST_BYTES:
            largest = max(value, key=lambda t: t.sample_bytes)
            raise ValueError(
                f"one sample of the inputs is {total / 2**30:.1f} GiB ({largest.name} {largest.shape} {largest.dtype} "
                f"the largest); one request may carry at most {MAX_REQUEST_BYTES / 2**30:g} GiB"
            )
        return value

    @field_validator("path")
    @classmethod
    def _existing_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if path.exists() and not path.is_file():
            raise ValueError(f"model file {path} is not a regular file")
        if not path.is_file():
            hint = ""
            if path.name == "model.onnx" and path.parent.parent.parent.name == "model_repository":
                hint = f" (run `tuner models prepare {path.parent.parent.name}`)"
            raise ValueError(f"model file {path} does not exist{hint}")
        return path

    @field_validator("repository")
    @classmethod
    def _existing_folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.is_dir():
            raise ValueError(f"model repository {path} is not an existing folder")
        return path

    @model_validator(mode="after")
    def _one_source(self) -> ModelSettings:
        if self.path is not None and self.repository is not None:
            raise ValueError("give path (an ONNX file) or repository (a Triton model repository), not both")
        if self.path is None and self.repository is None:
            raise ValueError("give path (an ONNX file) or repository (a Triton model repository holding the model)")
        if self.repository is not None and not (self.repository / self.name / "config.pbtxt").is_file():
            raise ValueError(f"repository {self.repository} has no model {self.name!r} (no {self.name}/config.pbtxt)")
        if self.composing and self.repository is None:
            raise ValueError("composing names models of a repository: give repository")
        if len(set(self.composing)) != len(self.composing) or self.name in self.composing:
            raise ValueError("composing names each model once, and not the model itself")
        return self
