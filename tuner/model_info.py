"""What a model takes and returns, read from its ONNX file (or given in the study file)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import ModelError

if TYPE_CHECKING:
    import onnx

#: ONNX TensorProto element type -> Triton data type name (without the TYPE_ prefix).
_ONNX_TO_TRITON = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
}

TRITON_DTYPES: tuple[str, ...] = tuple(sorted(set(_ONNX_TO_TRITON.values())))


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output.

    Attributes:
        name: Tensor name in the ONNX graph.
        dtype: Triton data type name, e.g. ``FP32``.
        shape: Full shape including the leading batch dimension; -1 marks a free dimension.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def item_shape(self) -> tuple[int, ...]:
        """The shape of one batch item (without the batch dimension)."""
        return self.shape[1:]


@dataclass(frozen=True)
class ModelInfo:
    """The inputs and outputs of a model, and whether its first dimension batches."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @property
    def batch_dim_free(self) -> bool:
        """True when every input's first dimension is free, so requests can be stacked."""
        return all(t.shape and t.shape[0] == -1 for t in self.inputs)


def read_model_info(path: Path, input_shapes: Sequence[TensorInfo] = ()) -> ModelInfo:
    """Reads the inputs and outputs of an ONNX file.

    Args:
        path: The ONNX file.
        input_shapes: Inputs given in the study file; they replace what the file says
            for the inputs of the same name (to fix free dimensions).

    Raises:
        ModelError: The file is missing, is not ONNX, or uses an unsupported type, or an
            input is left with a free dimension other than the batch dimension.
    """
    import onnx

    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError, OSError and more
        raise ModelError(f"cannot read ONNX model {path}: {exc}") from exc
    initializers = {init.name for init in graph.initializer}
    inputs = [_tensor(v) for v in graph.input if v.name not in initializers]
    outputs = [_tensor(v) for v in graph.output]
    overrides = {t.name: t for t in input_shapes}
    unknown = set(overrides) - {t.name for t in inputs}
    if unknown:
        names = ", ".join(t.name for t in inputs)
        raise ModelError(f"model.inputs names {sorted(unknown)} are not inputs of {path.name} ({names})")
    inputs = [_override(t, overrides.get(t.name)) for t in inputs]
    for t in inputs:
        if -1 in t.shape[1:]:
            raise ModelError(
                f"input {t.name!r} of {path.name} has free dimensions {list(t.shape)}: give its shape in model.inputs"
            )
    return ModelInfo(inputs=tuple(inputs), outputs=tuple(outputs))


def _override(found: TensorInfo, given: TensorInfo | None) -> TensorInfo:
    if given is None:
        return found
    shape = given.shape
    if len(shape) == len(found.shape) - 1:
        shape = (-1, *shape)  # the study file gave the item shape, without the batch dimension
    return TensorInfo(name=found.name, dtype=given.dtype, shape=tuple(shape))


def _tensor(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor_type = value.type.tensor_type
    dtype = _ONNX_TO_TRITON.get(tensor_type.elem_type)
    if dtype is None:
        raise ModelError(f"tensor {value.name!r} has ONNX element type {tensor_type.elem_type}, not supported")
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor_type.shape.dim)
    return TensorInfo(name=value.name, dtype=dtype, shape=shape)
