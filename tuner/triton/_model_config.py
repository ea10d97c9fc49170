"""TrialSpec -> Triton ModelConfig protobuf -> config.pbtxt text.

Two forms for ONNX models: ``build_model_config`` for the embedded server, where the python-backend
runner (tuner/triton/ort_runner/model.py) reads its provider and threads from ``parameters``, and
``build_native_config`` for a full Triton's onnxruntime backend (``platform:
"onnxruntime_onnx"`` with ``optimization { execution_accelerators { ... } }``).

A model from a repository brings its own config.pbtxt: it is the base, ``tune_config`` sets the
spec's Triton knobs on a copy and keeps every other field (``tuned_knobs`` reads those knobs back,
as the model's default config), and both ONNX forms take it as their ``base``.

The configs are built as ``model_config_pb2.ModelConfig`` messages and printed with
``google.protobuf.text_format``, so every file the tuner writes is one Triton can parse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tuner.config import PERFORMANCE_HINTS
from tuner.model_info import ModelInfo, TensorInfo
from tuner.trial import ACCELERATOR_PROVIDERS, InstanceKind, TrialSpec, execution_provider

#: The Python-backend model that runs the ONNX file, and the backend that runs it.
RUNNER_SOURCE = Path(__file__).parent / "ort_runner" / "model.py"
RUNNER_BACKEND = "python"


TENSORRT_WORKSPACE_BYTES = 1 << 30

#: The backend of each platform name Triton accepts in place of ``backend``.
PLATFORM_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "tensorrt_plan": "tensorrt",
    "ensemble": "ensemble",
}
#: The parameter a backend reads an instance's threads from (the backends' READMEs). PyTorch's
#: INTER_OP_THREAD_COUNT is one for the whole backend (the first model's wins), so only the intra-op
#: count is tuned; ONNX Runtime's are set by the two ONNX forms below.
THREAD_PARAMETERS = {"openvino": "INFERENCE_NUM_THREADS", "pytorch": "INTRA_OP_THREAD_COUNT"}


def config_backend(config: pb.ModelConfig) -> str:
    """The backend that runs ``config``: its ``backend``, or the one its ``platform`` names."""
    return config.backend or PLATFORM_BACKENDS.get(config.platform, config.platform)


def runner_parameters(spec: TrialSpec) -> dict[str, str]:
    """The ONNX Runtime settings the runner reads from the config's ``parameters``."""
    return {
        "onnx_file": "model.onnx",
        "execution_provider": execution_provider(spec.accelerator, spec.kind),
        "provider_options": json.dumps(provider_options(spec), sort_keys=True),
        "intra_op_threads": str(spec.cpu_threads),
        "inter_op_threads": "1",
        "graph_optimization_level": "all",
    }


def provider_options(spec: TrialSpec) -> dict[str, str]:
    """The execution provider's own options for the spec's accelerator and precision.

    OpenVINO gets the spec's threads and no CPU pinning: with pinning on, single-threaded
    instances all land on the first core. TensorRT runs FP16 and INT8 from its own flags (INT8
    on the QDQ variant, whose scales it reads).
    """
    if spec.accelerator == "openvino":
        return {
            "device_type": "CPU",
            "precision": "ACCURACY",  # run the graph at the precision the variant has
            "num_of_threads": str(spec.cpu_threads),
            "load_config": json.dumps({"CPU": {"ENABLE_CPU_PINNING": "NO"}}),
        }
    if spec.accelerator == "tensorrt":
        return {
            "trt_fp16_enable": str(spec.precision == "fp16"),
            "trt_int8_enable": str(spec.precision == "int8"),
            "trt_max_workspace_size": str(TENSORRT_WORKSPACE_BYTES),
        }
    if spec.accelerator == "cuda":
        return {"cudnn_conv_algo_search": "HEURISTIC"}
    return {}


def build_model_config(
    name: str, model: ModelInfo, spec: TrialSpec, base: pb.ModelConfig | None = None
) -> pb.ModelConfig:
    """The config of ``model`` under ``spec`` for the embedded server's python-backend runner.

    With a ``base`` (an onnxruntime model's own config) its other fields are kept; its platform
    and model file name give way to the runner's, which reads the ONNX file's name from its
    parameters.
    """
    config = _from_base(name, model, spec, base if base is not None else pb.ModelConfig())
    onnx_file = config.default_model_filename or "model.onnx"
    config.ClearField("platform")
    config.ClearField("default_model_filename")  # the python backend would take it for its model.py
    config.backend = RUNNER_BACKEND
    _set_parameters(config, runner_parameters(spec) | {"onnx_file": onnx_file})
    return config


def build_native_config(
    name: str, model: ModelInfo, spec: TrialSpec, base: pb.ModelConfig | None = None
) -> pb.ModelConfig:
    """The config for a full Triton's onnxruntime backend, in the form that backend documents.

    Accelerators go in ``optimization.execution_accelerators``; threads in ``parameters``. The
    model file is the variant of the spec's precision, except under TensorRT, which takes FP16
    and INT8 as its ``precision_mode``. With a ``base``, its other fields are kept.
    """
    config = _from_base(name, model, spec, base if base is not None else pb.ModelConfig())
    if not config.backend:
        config.platform = "onnxruntime_onnx"
    accelerators = config.optimization.execution_accelerators
    if spec.accelerator == "openvino":
        accelerators.cpu_execution_accelerator.add(name="openvino")
    elif spec.accelerator == "tensorrt":
        tensorrt = accelerators.gpu_execution_accelerator.add(name="tensorrt")
        tensorrt.parameters["precision_mode"] = spec.precision.upper()
        tensorrt.parameters["max_workspace_size_bytes"] = str(TENSORRT_WORKSPACE_BYTES)
    elif spec.accelerator == "cuda":
        accelerators.gpu_execution_accelerator.add(name="cuda")
    _set_parameters(
        config,
        {
            "intra_op_thread_count": str(spec.cpu_threads),
            "inter_op_thread_count": "1",
            "execution_mode": "0",
        },
    )
    return config


def tune_config(base: pb.ModelConfig, spec: TrialSpec) -> pb.ModelConfig:
    """A copy of ``base`` with the spec's Triton knobs set and every other field kept.

    The knobs: ``max_batch_size``, the dynamic batcher (its other fields, such as preferred batch
    sizes, kept where it stays on) and its queue delay, and the count of every instance group (each
    keeps its kind and devices; a config without one gets one of the spec's kind); for the OpenVINO
    and PyTorch backends, an instance's threads (``THREAD_PARAMETERS``), and OpenVINO's
    ``PERFORMANCE_HINT`` where the spec sets one.
    """
    config = pb.ModelConfig()
    config.CopyFrom(base)
    config.max_batch_size = spec.max_batch_size
    if spec.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    else:
        config.ClearField("dynamic_batching")
    for group in config.instance_group:
        group.count = spec.instance_count
    if not config.instance_group:
        kind = pb.ModelInstanceGroup.KIND_GPU if spec.kind is InstanceKind.GPU else pb.ModelInstanceGroup.KIND_CPU
        config.instance_group.add(count=spec.instance_count, kind=kind)
    backend = config_backend(config)
    if backend in THREAD_PARAMETERS:
        config.parameters[THREAD_PARAMETERS[backend]].string_value = str(spec.cpu_threads)
    if backend == "openvino" and spec.performance_hint:
        config.parameters["PERFORMANCE_HINT"].string_value = spec.performance_hint.upper()
    return config


def tuned_knobs(config: pb.ModelConfig) -> dict[str, Any]:
    """The values a model's own config gives the knobs the tuner tunes, by knob name.

    They are the model's default config (the study's first trial): a knob the config leaves to
    Triton is left out, and the search space's default stands for it.
    """
    knobs: dict[str, Any] = {"dynamic_batching": config.HasField("dynamic_batching")}
    if config.max_batch_size > 0:
        knobs["max_batch_size"] = config.max_batch_size
    if config.HasField("dynamic_batching"):
        knobs["max_queue_delay_us"] = config.dynamic_batching.max_queue_delay_microseconds
    if config.instance_group:
        knobs["instance_count"] = config.instance_group[0].count or 1  # Triton's default count is 1
    backend = config_backend(config)
    threads = config.parameters.get(THREAD_PARAMETERS.get(backend, "intra_op_thread_count"))
    if threads is not None and threads.string_value.isdigit():
        knobs["cpu_threads"] = int(threads.string_value)
    hint = config.parameters.get("PERFORMANCE_HINT")
    if backend == "openvino" and hint is not None and hint.string_value.lower() in PERFORMANCE_HINTS:
        knobs["performance_hint"] = hint.string_value.lower()
    accelerators = config.optimization.execution_accelerators
    named = [a.name for a in (*accelerators.gpu_execution_accelerator, *accelerators.cpu_execution_accelerator)]
    if named and named[0] in ACCELERATOR_PROVIDERS:
        knobs["accelerator"] = named[0]
    return knobs


def _from_base(name: str, model: ModelInfo, spec: TrialSpec, base: pb.ModelConfig) -> pb.ModelConfig:
    """``base`` tuned to ``spec`` for an ONNX backend: tensors it leaves out (Triton completes them for
    ONNX files) are taken from ``model``, and its accelerators give way to the spec's. An empty base
    gives the tuner's own config of the model."""
    config = tune_config(base, spec)
    config.name = name
    if not config.input:
        config.input.extend(_tensor(t, pb.ModelInput) for t in model.inputs)
    if not config.output:
        config.output.extend(_tensor(t, pb.ModelOutput) for t in model.outputs)
    config.optimization.ClearField("execution_accelerators")
    if config.optimization.ByteSize() == 0:
        config.ClearField("optimization")
    return config


def _tensor(info: TensorInfo, message: type[pb.ModelInput | pb.ModelOutput]) -> pb.ModelInput | pb.ModelOutput:
    tensor = message(name=info.name, data_type=pb.DataType.Value(f"TYPE_{info.dtype}"))
    if info.item_shape:
        tensor.dims.extend(info.item_shape)
    else:
        # A tensor with only the batch dimension: Triton wants dims [1], reshaped to a scalar.
        tensor.dims.append(1)
        tensor.reshape.SetInParent()
    return tensor


def _set_parameters(config: pb.ModelConfig, parameters: Mapping[str, str]) -> None:
    for key, value in parameters.items():
        config.parameters[key].string_value = value


def to_pbtxt(config: pb.ModelConfig) -> str:
    """The config.pbtxt text of ``config``."""
    return text_format.MessageToString(config)


def parse_pbtxt(text: str) -> pb.ModelConfig:
    """Parses config.pbtxt text back into a ModelConfig."""
    return text_format.Parse(text, pb.ModelConfig())
