"""TrialSpec -> Triton ModelConfig protobuf -> config.pbtxt text.

The configs are built as ``model_config_pb2.ModelConfig`` messages and printed with
``google.protobuf.text_format``, so every file the tuner writes is one Triton can parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tuner.model_info import ModelInfo, TensorInfo
from tuner.trial import InstanceKind, TrialSpec

#: The Python-backend model that runs the ONNX file, and the backend that runs it.
RUNNER_SOURCE = Path(__file__).parent / "ort_runner" / "model.py"
RUNNER_BACKEND = "python"


def runner_parameters(spec: TrialSpec) -> dict[str, str]:
    """The ONNX Runtime settings the runner reads from the config's ``parameters``."""
    return {
        "onnx_file": "model.onnx",
        "execution_provider": "CPUExecutionProvider",
        "intra_op_threads": str(spec.cpu_threads),
        "inter_op_threads": "1",
        "graph_optimization_level": "all",
    }


def build_model_config(name: str, model: ModelInfo, spec: TrialSpec) -> pb.ModelConfig:
    """Builds the Triton config of ``model`` under the knobs of ``spec``."""
    config = pb.ModelConfig(name=name, backend=RUNNER_BACKEND, max_batch_size=spec.max_batch_size)
    config.input.extend(_tensor(t, pb.ModelInput) for t in model.inputs)
    config.output.extend(_tensor(t, pb.ModelOutput) for t in model.outputs)
    if spec.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    kind = pb.ModelInstanceGroup.KIND_GPU if spec.kind is InstanceKind.GPU else pb.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=spec.instance_count, kind=kind)
    _set_parameters(config, runner_parameters(spec))
    return config


def _tensor(info: TensorInfo, message: type[pb.ModelInput] | type[pb.ModelOutput]):
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
