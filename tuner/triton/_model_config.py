"""TrialSpec -> Triton ModelConfig protobuf -> config.pbtxt text.

Two forms: ``build_model_config`` for the embedded server, where the python-backend runner
(tuner/triton/ort_runner/model.py) reads its provider and threads from ``parameters``, and
``build_native_config`` for a full Triton's onnxruntime backend (``platform:
"onnxruntime_onnx"`` with ``optimization { execution_accelerators { ... } }``).

The configs are built as ``model_config_pb2.ModelConfig`` messages and printed with
``google.protobuf.text_format``, so every file the tuner writes is one Triton can parse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tuner.model_info import ModelInfo, TensorInfo
from tuner.trial import InstanceKind, TrialSpec, execution_provider

#: The Python-backend model that runs the ONNX file, and the backend that runs it.
RUNNER_SOURCE = Path(__file__).parent / "ort_runner" / "model.py"
RUNNER_BACKEND = "python"


TENSORRT_WORKSPACE_BYTES = 1 << 30


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


def build_model_config(name: str, model: ModelInfo, spec: TrialSpec) -> pb.ModelConfig:
    """The config of ``model`` under ``spec`` for the embedded server's python-backend runner."""
    config = _base_config(name, model, spec)
    config.backend = RUNNER_BACKEND
    _set_parameters(config, runner_parameters(spec))
    return config


def build_native_config(name: str, model: ModelInfo, spec: TrialSpec) -> pb.ModelConfig:
    """The config for a full Triton's onnxruntime backend, in the form that backend documents.

    Accelerators go in ``optimization.execution_accelerators``; threads in ``parameters``. The
    model file is the variant of the spec's precision, except under TensorRT, which takes FP16
    and INT8 as its ``precision_mode``.
    """
    config = _base_config(name, model, spec)
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


def _base_config(name: str, model: ModelInfo, spec: TrialSpec) -> pb.ModelConfig:
    config = pb.ModelConfig(name=name, max_batch_size=spec.max_batch_size)
    config.input.extend(_tensor(t, pb.ModelInput) for t in model.inputs)
    config.output.extend(_tensor(t, pb.ModelOutput) for t in model.outputs)
    if spec.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    kind = pb.ModelInstanceGroup.KIND_GPU if spec.kind is InstanceKind.GPU else pb.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=spec.instance_count, kind=kind)
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
