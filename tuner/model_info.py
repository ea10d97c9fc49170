"""What a model takes and returns, read from its ONNX file or its Triton config (or given in the study file)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from tuner.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
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
    def follows_batch(self) -> bool:
        """Whether the first dimension is free, as a batch dimension is: not a scalar, nor fixed."""
        return bool(self.shape) and self.shape[0] == -1

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


#: An output's answers to the validation samples: stacked on a first axis, or one array per sample where
#: their shapes differ (the boxes a detector keeps, say).
Answers = Union["np.ndarray", list["np.ndarray"]]


def one_sample(answer: np.ndarray, follows_batch: bool) -> np.ndarray:
    """An output's answer to a request of one sample, without its batch axis where it has one."""
    return answer[0] if follows_batch and answer.ndim and answer.shape[0] == 1 else answer


def by_sample(answers: list[np.ndarray]) -> Answers:
    """Answers to the samples one by one, stacked where their shapes agree."""
    import numpy as np

    return np.stack(answers) if answers and len({a.shape for a in answers}) == 1 else answers


def tensor_bytes(dtype: str, shape: Sequence[int]) -> int:
    """Bytes of a ``dtype`` tensor of ``shape``, each free dimension (-1) counted once."""
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    elements = math.prod(1 if d == -1 else d for d in shape)
    return elements * np.dtype(triton_to_np_dtype(dtype)).itemsize


@dataclass(frozen=True)
class ModelInfo:
    """The inputs and outputs of a model, and whether its first dimension batches.

    ``unserved``: the ONNX outputs that are not tensors of a type the tuner serves (``TRITON_DTYPES``):
    a sequence of maps, as scikit-learn classifiers converted with ZipMap give their probabilities
    (which Triton cannot return at all), or a tensor of strings; each with its ONNX type. They are left
    out of ``outputs``: the served model returns the others.
    """

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    unserved: tuple[tuple[str, str], ...] = ()
    #: The inputs whose free dimensions took the shape of their samples (``read_model_info``'s ``shape_data``).
    shaped_by_data: tuple[str, ...] = ()

    @property
    def batch_dim_free(self) -> bool:
        """True when every input's and output's first dimension is free, so requests can be stacked
        and the answers split again (``unbatched`` names the tensors that stop it)."""
        return not self.unbatched

    @property
    def unbatched(self) -> tuple[TensorInfo, ...]:
        """The inputs and outputs whose first dimension is fixed, or that have none (a scalar, such as
        a statistic over the whole request): a model with any of them runs one request at a time."""
        return tuple(t for t in (*self.inputs, *self.outputs) if not t.follows_batch)


def read_model_info(path: Path, input_shapes: Sequence[TensorInfo] = (), shape_data: Path | None = None) -> ModelInfo:
    """Reads the inputs and outputs of an ONNX file.

    Args:
        path: The ONNX file.
        input_shapes: Inputs given in the study file; they replace what the file says
            for the inputs of the same name (to fix free dimensions).
        shape_data: Samples of the inputs (``model.validation_data``: a ``.npz`` file by input
            name, or a ``.npy`` file for a model of one input): an input with a free dimension
            besides the batch that ``input_shapes`` leaves free takes its samples' shape.

    Raises:
        ModelError: The file is missing, is not ONNX or holds no graph, the model takes no inputs, an
            input is of a type the tuner cannot send or left with a free dimension other than the batch
            dimension, or no output is a tensor Triton can return.
    """
    import onnx

    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError and more
        raise ModelError(f"cannot read ONNX model {path}: {exc}") from exc
    if not model.HasField("graph"):  # what an empty file parses as
        raise ModelError(f"{path} holds no ONNX graph: is it empty, or cut short?")
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = []
    for value in graph.input:
        if value.name not in initializers:
            if (tensor := _tensor(value)) is None:
                raise ModelError(
                    f"input {value.name!r} of {path.name} is {_onnx_type(value.type)}, which the tuner cannot "
                    f"send: it sends tensors of {', '.join(t.lower() for t in TRITON_DTYPES)}"
                )
            inputs.append(tensor)
    if not inputs:
        raise ModelError(
            f"{path.name} takes no inputs: Triton refuses a request that carries none, so there is nothing to measure"
        )
    outputs, unserved = [], []
    for value in graph.output:
        if (tensor := _tensor(value)) is None:
            unserved.append((value.name, _onnx_type(value.type)))
        else:
            outputs.append(tensor)
    if not outputs:
        kinds = ", ".join(f"{name} ({kind})" for name, kind in unserved)
        raise ModelError(f"no output of {path.name} is a tensor of a type the tuner serves: {kinds}")
    from_data: list[TensorInfo] = []
    if shape_data is not None:
        given = {t.name for t in input_shapes}
        from_data = _data_shapes(
            shape_data, [t for t in inputs if t.name not in given and -1 in t.shape[1:]], len(inputs)
        )
    info = _given_shapes(inputs, outputs, [*input_shapes, *from_data], path.name)
    return ModelInfo(info.inputs, info.outputs, tuple(unserved), tuple(t.name for t in from_data))


def load_sample_file(path: Path, field: str) -> Any:
    """A ``.npy`` file's array or a ``.npz`` file's arrays (numpy's ``NpzFile``), as ``np.load`` reads them.

    Raises:
        ModelError: naming ``field``: the file cannot be read as either.
    """
    import numpy as np

    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{field}: cannot read {path}: {exc}") from exc


def _data_shapes(path: Path, free: Sequence[TensorInfo], inputs: int) -> list[TensorInfo]:
    """The shapes the samples in ``path`` give the ``free`` inputs (a model of ``inputs`` inputs): each
    sample's shape where its rank is the input's and it agrees with every fixed dimension; an input the
    file lacks, or whose samples do not fit, is left to the check that names it."""
    import numpy as np

    if not free:
        return []
    loaded = load_sample_file(path, "model.validation_data")
    if isinstance(loaded, np.ndarray):
        arrays = {free[0].name: loaded} if inputs == 1 else {}
    else:
        arrays = {name: loaded[name] for name in loaded.files if name in {t.name for t in free}}
    shapes = []
    for tensor in free:
        array = arrays.get(tensor.name)
        if array is None or array.ndim != len(tensor.shape):
            continue
        item = tuple(int(d) for d in array.shape[1:])
        if all(want in (-1, got) for want, got in zip(tensor.item_shape, item)):
            shapes.append(TensorInfo(tensor.name, tensor.dtype, (-1, *item)))
    return shapes


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
        if dtype == "STRING" and isinstance(t, pb.ModelOutput):
            dtype = "BYTES"  # strings come back (a label, say); the load generator and the study only count them
        elif dtype not in TRITON_DTYPES:
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
    inputs = [_override(t, overrides.get(t.name), source) for t in inputs]
    for t in inputs:
        if -1 in t.shape[1:]:
            raise ModelError(
                f"input {t.name!r} of {source} has free dimensions {list(t.shape)}: give its shape in model.inputs, "
                "or samples of it in model.validation_data"
            )
    return ModelInfo(inputs=tuple(inputs), outputs=tuple(outputs))


def _override(found: TensorInfo, given: TensorInfo | None, source: str) -> TensorInfo:
    """``found`` with the shape (and type) ``model.inputs`` gives it, which may fill its free dimensions
    but not contradict what the model says: a request of another shape or type would fail every config.

    Raises:
        ModelError: the given rank, a fixed dimension or the type is not the model's.
    """
    if given is None:
        return found
    shape = tuple(given.shape)
    if len(shape) == len(found.shape) - 1:
        shape = (-1, *shape)  # the study file gave the item shape, without the batch dimension
    fits = len(shape) == len(found.shape) and all(
        f == -1 or g == -1 or f == g for f, g in zip(found.shape[1:], shape[1:], strict=True)
    )
    if not fits:
        takes = ", ".join("N" if d == -1 else str(d) for d in found.shape)
        raise ModelError(
            f"model.inputs: {found.name} is given shape {list(given.shape)}, and {source} takes [{takes}] "
            "(N: any size; the batch dimension may be left out)"
        )
    if found.follows_batch and shape[0] != -1:
        # a size for the batch dimension would fix it: every request of that many samples, batching off
        item = list(shape[1:])
        raise ModelError(
            f"model.inputs: {found.name} is given shape {list(given.shape)}, whose first dimension is the batch's, "
            f"which {source} leaves free: give {item} (the batch dimension left out) or {[-1, *item]}"
        )
    dtype = given.dtype or found.dtype
    if dtype != found.dtype:
        raise ModelError(f"model.inputs: {found.name} is given dtype {dtype}, and {source} takes {found.dtype}")
    return TensorInfo(name=found.name, dtype=dtype, shape=shape)


def _tensor(value: onnx.ValueInfoProto) -> TensorInfo | None:
    """The tensor ``value`` is; None where it is no tensor, or of an element type the tuner does not serve."""
    if value.type.WhichOneof("value") != "tensor_type":
        return None
    tensor_type = value.type.tensor_type
    dtype = _ONNX_TO_TRITON.get(tensor_type.elem_type)
    if dtype is None:
        return None
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor_type.shape.dim)
    return TensorInfo(name=value.name, dtype=dtype, shape=shape)


def _onnx_type(kind: onnx.TypeProto) -> str:
    """An ONNX type as the ONNX spec writes it: ``tensor(string)``, ``seq(map(int64,tensor(float)))``."""
    import onnx

    which = kind.WhichOneof("value")
    if which in ("tensor_type", "sparse_tensor_type"):
        element = onnx.TensorProto.DataType.Name(getattr(kind, which).elem_type).lower()
        return f"{'sparse_' if which == 'sparse_tensor_type' else ''}tensor({element})"
    if which == "sequence_type":
        return f"seq({_onnx_type(kind.sequence_type.elem_type)})"
    if which == "map_type":
        key = onnx.TensorProto.DataType.Name(kind.map_type.key_type).lower()
        return f"map({key},{_onnx_type(kind.map_type.value_type)})"
    if which == "optional_type":
        return f"optional({_onnx_type(kind.optional_type.elem_type)})"
    return "of no type"
