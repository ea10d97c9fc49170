"""What a model takes and returns, read from its ONNX file or its Triton config (or given in the study file)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import ModelError

if TYPE_CHECKING:
    import onnx
    from tritonclient.grpc import model_config_pb2 as pb

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

    @property
    def request_bytes(self) -> int | None:
        """Bytes of this tensor in a request of one item; None where another dimension is free or it holds strings."""
        if self.dtype == "BYTES" or -1 in self.shape[1:]:
            return None
        return tensor_bytes(self.dtype, self.shape)


def tensor_bytes(dtype: str, shape: Sequence[int]) -> int:
    """Bytes of a ``dtype`` tensor of ``shape``, each free dimension (-1) counted once."""
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    elements = math.prod(1 if d == -1 else d for d in shape)
    return elements * np.dtype(triton_to_np_dtype(dtype)).itemsize


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
    return _given_shapes(inputs, outputs, input_shapes, path.name)


def config_model_info(config: pb.ModelConfig, input_shapes: Sequence[TensorInfo] = ()) -> ModelInfo:
    """Reads the inputs and outputs a Triton model config declares.

    ``dims`` are the shape clients send; a batching model (``max_batch_size`` above 0) gets the
    free batch dimension in front. A tensor of dims [1] reshaped to a scalar is a batch-only tensor,
    as tuner.triton writes one.

    Args:
        config: The model's config.
        input_shapes: Inputs given in the study file, as for ``read_model_info``.

    Raises:
        ModelError: the config declares no inputs or outputs, or a type the tuner cannot send, or an
            input is left with a free dimension other than the batch dimension.
    """
    from tritonclient.grpc import model_config_pb2 as pb

    def tensor(t: pb.ModelInput | pb.ModelOutput) -> TensorInfo:
        dtype = pb.DataType.Name(t.data_type).removeprefix("TYPE_")
        if dtype not in TRITON_DTYPES:
            raise ModelError(f"tensor {t.name!r} of model {config.name!r} has type {dtype}, not supported")
        dims = tuple(int(d) for d in t.dims)
        if dims == (1,) and t.HasField("reshape") and not t.reshape.shape:
            dims = ()
        return TensorInfo(name=t.name, dtype=dtype, shape=(-1, *dims) if config.max_batch_size > 0 else dims)

    if not config.input or not config.output:
        raise ModelError(f"the config.pbtxt of model {config.name!r} must list its inputs and outputs")
    inputs = [tensor(t) for t in config.input]
    outputs = [tensor(t) for t in config.output]
    return _given_shapes(inputs, outputs, input_shapes, f"model {config.name!r}")


def _given_shapes(
    inputs: list[TensorInfo], outputs: list[TensorInfo], input_shapes: Sequence[TensorInfo], source: str
) -> ModelInfo:
    """The model's tensors with ``model.inputs`` applied, every input's shape fixed but the batch dimension's."""
    overrides = {t.name: t for t in input_shapes}
    unknown = set(overrides) - {t.name for t in inputs}
    if unknown:
        names = ", ".join(t.name for t in inputs)
        raise ModelError(f"model.inputs names {sorted(unknown)} are not inputs of {source} ({names})")
    inputs = [_override(t, overrides.get(t.name)) for t in inputs]
    for t in inputs:
        if -1 in t.shape[1:]:
            raise ModelError(
                f"input {t.name!r} of {source} has free dimensions {list(t.shape)}: give its shape in model.inputs"
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
