"""Model variants by precision: FP16 and INT8 copies of an ONNX model, built once and cached.

    path = build_variant(source, "int8", cache_dir, calibration)

- ``fp32``: the model itself.
- ``fp16``: the graph converted with ONNX Runtime's converter (``onnxruntime.transformers.float16``,
  which also converts the graph's own casts to float32), float32 inputs and outputs kept, so clients
  and configs do not change.
- ``int8``: ONNX Runtime quantization: static QDQ (per-channel weights, calibrated on the
  validation inputs) for models with convolutions, dynamic for models without (transformers,
  MLPs). A model with nothing quantizable (a tree ensemble) has no INT8 variant: ModelError.

Variants are cached by the SHA-256 of the source file, the precision and the method (and of the
calibration inputs, for static INT8), so a study builds each once per worker, and a resumed
study not at all.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from tuner.config import PRECISIONS
from tuner.errors import ConfigError, ModelError, VariantError

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)
_CONV_OPS = {"Conv", "ConvTranspose"}
_DYNAMIC_OPS = {"MatMul", "Gemm", "Attention", "LSTM", "GRU"}


def file_digest(path: Path) -> str:
    """The SHA-256 of an ONNX file, and of the files holding its external data where it has some (by their
    locations, in order): a variant is built again when any of them changes."""
    return files_digest([("", path), *((location, path.parent / location) for location in external_data(path))])


def files_digest(files: Sequence[tuple[str, Path]]) -> str:
    """The SHA-256 of ``files``' contents, each under its name (name, path), in order. Each version of the files
    (their sizes and times) is hashed once: every trial that asks for a variant asks for its key."""
    return _digest(tuple((name, str(file), *_version(file)) for name, file in files))


def _version(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=16)
def _digest(files: tuple[tuple[str, str, int, int, int], ...]) -> str:
    """``file_digest`` of the files (location, path, and the version that keys the cache)."""
    digest = hashlib.sha256()
    for location, file, *_version_key in files:
        digest.update(location.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def external_data(path: Path) -> list[str]:
    """The files beside an ONNX model that hold its tensors (ONNX external data, as models over 2 GB
    keep their weights), by their locations relative to its folder.

    Raises:
        ModelError: a location is absolute, leaves the model's folder, or names no file.
    """
    locations = _graph_facts(str(path), *_version(path)).locations
    for location in locations:
        relative = PurePosixPath(location)
        if relative.is_absolute() or ".." in relative.parts:
            raise ModelError(
                f"{path.name} keeps tensors in {location!r}, outside its folder: ONNX external data must lie beside the model"
            )
        if not (path.parent / relative).is_file():
            raise ModelError(f"{path.name} keeps tensors in {location}, which is not in {path.parent}")
    return list(locations)


class _GraphFacts(NamedTuple):
    locations: tuple[str, ...]  # of its external data
    operators: frozenset[str]
    element_types: frozenset[int]  # ONNX element types of its weights, inputs and outputs


@functools.lru_cache(maxsize=16)
def _graph_facts(path: str, inode: int, size: int, mtime_ns: int) -> _GraphFacts:
    """The external data locations an ONNX file names, its graph's operators and the element types of its
    tensors, read once per version of the file (its inode, size and time): every trial that asks for a
    variant needs them, and parsing a large model takes seconds."""
    del inode, size, mtime_ns  # the cache's key
    import onnx

    model = onnx.load(path, load_external_data=False)
    tensors = list(_tensors(model.graph))
    locations = {
        entry.value
        for tensor in tensors
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    values = [*model.graph.input, *model.graph.output]
    return _GraphFacts(
        tuple(sorted(locations)),
        frozenset(node.op_type for node in model.graph.node),
        frozenset(t.data_type for t in tensors) | {v.type.tensor_type.elem_type for v in values},
    )


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of a graph: its initializers and its nodes' tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def install_model_file(source: Path, target: Path) -> None:
    """Puts the ONNX file ``source`` at ``target``, with copies of its external data files
    (``external_data``) beside it: not hard links, which the onnx package refuses to read external data
    through. A data file copied before (the same size and time) is kept. The ONNX file is replaced whole
    or not at all (a server may be loading the old one; a full disk leaves no part of a file behind)."""
    for location in external_data(source):
        data, placed = (source.parent / location).stat(), target.parent / location
        if placed.is_file() and (placed.stat().st_size, placed.stat().st_mtime_ns) == (data.st_size, data.st_mtime_ns):
            continue
        placed.parent.mkdir(parents=True, exist_ok=True)
        _copy_whole(source.parent / location, placed)
    _copy_whole(source, target)


def _copy_whole(source: Path, target: Path) -> None:
    """Copies ``source`` to ``target`` through a staged file, so that ``target`` is whole or absent."""
    staged = target.with_name(f".{target.name}.new")
    try:
        shutil.copy2(source, staged)
        staged.replace(target)
    except OSError:
        staged.unlink(missing_ok=True)
        raise


def _arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def int8_method(source: Path) -> str:
    """``static`` for models with convolutions, ``dynamic`` for MatMul/Gemm models.

    Raises:
        ModelError: the model has no operator ONNX Runtime quantizes.
    """
    ops = _graph_facts(str(source), *_version(source)).operators
    if ops & _CONV_OPS:
        return "static"
    if ops & _DYNAMIC_OPS:
        return "dynamic"
    raise VariantError(f"no INT8 variant: the model has no operator ONNX Runtime quantizes (it has {sorted(ops)[:8]})")


def build_variant(
    source: Path,
    precision: str,
    cache_dir: Path,
    calibration: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """The ONNX file of ``source`` at ``precision``, built where not cached yet.

    Args:
        source: The FP32 model.
        precision: One of PRECISIONS.
        cache_dir: Where variants are kept.
        calibration: Inputs by name (first axis: samples) for static INT8 calibration.

    Raises:
        ConfigError: an unknown precision.
        ModelError: the variant cannot be built for this model; the message says why.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return source
    # "ortconvert": ONNX Runtime's converter, so that a variant another converter made is not taken from the cache
    method = int8_method(source) if precision == "int8" else "ortconvert"
    key = file_digest(source)[:20]
    if method == "static":  # the scales depend on the calibration inputs too
        key += "-" + _arrays_digest(calibration or {})[:12]
    target = cache_dir / f"{key}-{precision}-{method}.onnx"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        partial = Path(tmp) / "variant.onnx"
        try:
            if precision == "fp16":
                _to_fp16(source, partial)
            elif method == "static":
                _to_int8_static(source, partial, calibration)
            else:
                _to_int8_dynamic(source, partial)
        except ModelError:
            raise
        except Exception as exc:  # the converters raise anything from ValueError to RuntimeError
            raise VariantError(f"no {precision} variant ({method}): {str(exc).strip()[:400]}") from exc
        _check_runs(partial, precision)
        partial.replace(target)
    logger.info("built %s variant of %s: %s", precision, source.name, target.name)
    return target


def _to_fp16(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers import float16

    if float_precision(source) != "fp32":
        # the converter would give the same graph back, and the study would measure it twice
        raise VariantError(
            "no fp16 variant: the model has no FP32 weight, input or output to convert; fp32 serves it as it is"
        )
    model = onnx.load(str(source))
    with warnings.catch_warnings():  # it warns once per weight it rounds
        warnings.simplefilter("ignore")
        model = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(model, str(target))


def float_precision(path: Path) -> str | None:
    """The precision an ONNX file holds its floats at: ``fp32`` where any weight, input or output is FP32,
    else ``fp16`` where one is FP16, else None (a model of integers, say)."""
    import onnx

    kinds = _graph_facts(str(path), *_version(path)).element_types
    if onnx.TensorProto.FLOAT in kinds:
        return "fp32"
    return "fp16" if onnx.TensorProto.FLOAT16 in kinds else None


def _check_runs(variant: Path, precision: str) -> None:
    """A graph ONNX Runtime refuses is no variant (an FP16 model quantized, say): said here, once, rather
    than at every trial's load."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(variant), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own exception types
        made = "converted" if precision == "fp16" else "quantized"
        raise VariantError(
            f"no {precision} variant: ONNX Runtime refuses the {made} graph: {str(exc).strip()[:400]}"
        ) from exc


class _NoPreProcessingAdvice(logging.Filter):
    """Drops ONNX Runtime's advice to pre-process a model before quantizing it, which it logs on the root
    logger at every quantization: a user of the tuner did not quantize anything, and cannot act on it."""

    def filter(self, record: logging.LogRecord) -> bool:
        # "Please consider to run pre-processing ..." (dynamic), "Please consider pre-processing ..." (static)
        message = str(record.msg)
        return not (message.startswith("Please consider") and "pre-processing before quantization" in message)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    advice = _NoPreProcessingAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _to_int8_static(source: Path, target: Path, calibration: Mapping[str, np.ndarray] | None) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise VariantError("no INT8 variant: static quantization needs calibration inputs")
    samples = _samples(calibration)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._samples = samples

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._samples, None)

    with _quiet_quantizer():
        quantize_static(
            str(source),
            str(target),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def _to_int8_dynamic(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_quantizer():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def _samples(inputs: Mapping[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    count = min(len(array) for array in inputs.values())
    for index in range(count):
        yield {name: array[index : index + 1] for name, array in inputs.items()}
