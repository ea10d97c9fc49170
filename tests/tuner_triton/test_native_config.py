"""build_native_config (Triton's onnxruntime backend form) and the runner's provider settings."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tuner.model_info import ModelInfo, read_model_info
from tuner.trial import InstanceKind, TrialSpec
from tuner.triton import build_model_config, build_native_config, parse_pbtxt, to_pbtxt
from tuner.triton._model_config import TENSORRT_WORKSPACE_BYTES, provider_options, runner_parameters

ACCELERATORS = ("none", "openvino", "cuda", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
_KIND = {"none": InstanceKind.CPU, "openvino": InstanceKind.CPU, "cuda": InstanceKind.GPU, "tensorrt": InstanceKind.GPU}
_RUNNER_ONLY = {"onnx_file", "execution_provider", "provider_options", "intra_op_threads", "graph_optimization_level"}


def _spec(accelerator: str = "none", precision: str = "fp32", **changes: object) -> TrialSpec:
    values: dict[str, object] = {
        "max_batch_size": 8,
        "dynamic_batching": True,
        "max_queue_delay_us": 250,
        "instance_count": 2,
        "cpu_threads": 3,
        "kind": _KIND[accelerator],
        "accelerator": accelerator,
        "precision": precision,
    }
    values.update(changes)
    return TrialSpec(**values)  # type: ignore[arg-type]


def _truthy(value: str) -> bool:
    assert value.lower() in ("true", "false", "1", "0"), value
    return value.lower() in ("true", "1")


SPECS = [_spec(a, p) for a, p in itertools.product(ACCELERATORS, PRECISIONS)]
SPEC_IDS = [f"{s.accelerator}-{s.precision}" for s in SPECS]


@pytest.fixture(scope="module")
def digits_info(digits_onnx: Path) -> ModelInfo:
    return read_model_info(digits_onnx)


# --- build_native_config ----------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_native_config_round_trips_through_text_format(digits_info: ModelInfo, spec: TrialSpec) -> None:
    config = build_native_config("digits_forest", digits_info, spec)

    text = text_format.MessageToString(config)
    parsed = text_format.Parse(text, pb.ModelConfig())

    assert parsed == config
    assert parse_pbtxt(to_pbtxt(config)) == config


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_native_config_is_the_onnxruntime_platform(digits_info: ModelInfo, spec: TrialSpec) -> None:
    config = build_native_config("digits_forest", digits_info, spec)

    assert config.name == "digits_forest"
    assert config.platform == "onnxruntime_onnx"
    assert config.backend == ""
    assert config.max_batch_size == spec.max_batch_size
    assert [t.name for t in config.input] == [t.name for t in digits_info.inputs]
    assert [t.name for t in config.output] == [t.name for t in digits_info.outputs]


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_native_config_accelerators(digits_info: ModelInfo, spec: TrialSpec) -> None:
    accelerators = build_native_config("m", digits_info, spec).optimization.execution_accelerators
    cpu = list(accelerators.cpu_execution_accelerator)
    gpu = list(accelerators.gpu_execution_accelerator)

    if spec.accelerator == "none":
        assert cpu == [] and gpu == []
    elif spec.accelerator == "openvino":
        assert gpu == []
        assert [a.name for a in cpu] == ["openvino"]
        assert dict(cpu[0].parameters) == {}
    elif spec.accelerator == "cuda":
        assert cpu == []
        assert [a.name for a in gpu] == ["cuda"]
    else:
        assert cpu == []
        assert [a.name for a in gpu] == ["tensorrt"]
        assert dict(gpu[0].parameters) == {
            "precision_mode": spec.precision.upper(),
            "max_workspace_size_bytes": "1073741824",
        }


def test_tensorrt_precision_modes(digits_info: ModelInfo) -> None:
    modes = [
        build_native_config("m", digits_info, _spec("tensorrt", p))
        .optimization.execution_accelerators.gpu_execution_accelerator[0]
        .parameters["precision_mode"]
        for p in PRECISIONS
    ]

    assert modes == ["FP32", "FP16", "INT8"]
    assert TENSORRT_WORKSPACE_BYTES == 1073741824


def test_no_accelerator_leaves_optimization_unset(digits_info: ModelInfo) -> None:
    config = build_native_config("m", digits_info, _spec("none"))

    assert "execution_accelerators" not in to_pbtxt(config)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_native_config_thread_parameters(digits_info: ModelInfo, spec: TrialSpec) -> None:
    parameters = {k: v.string_value for k, v in build_native_config("m", digits_info, spec).parameters.items()}

    assert parameters == {
        "intra_op_thread_count": str(spec.cpu_threads),
        "inter_op_thread_count": "1",
        "execution_mode": "0",
    }
    assert not _RUNNER_ONLY & set(parameters)  # none of the python runner's settings


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_native_config_instance_group(digits_info: ModelInfo, spec: TrialSpec) -> None:
    (group,) = build_native_config("m", digits_info, spec).instance_group

    expected = pb.ModelInstanceGroup.KIND_GPU if spec.kind is InstanceKind.GPU else pb.ModelInstanceGroup.KIND_CPU
    assert group.kind == expected
    assert group.count == spec.instance_count


def test_native_config_thread_count_follows_the_spec(digits_info: ModelInfo) -> None:
    config = build_native_config("m", digits_info, _spec("openvino", cpu_threads=7))

    assert config.parameters["intra_op_thread_count"].string_value == "7"


def test_native_config_batching_follows_the_spec(digits_info: ModelInfo) -> None:
    on = build_native_config("m", digits_info, _spec(dynamic_batching=True, max_queue_delay_us=900))
    off = build_native_config("m", digits_info, _spec(dynamic_batching=False))

    assert on.dynamic_batching.max_queue_delay_microseconds == 900
    assert not off.HasField("dynamic_batching")


def test_native_and_runner_configs_share_tensors_and_instances(digits_info: ModelInfo) -> None:
    spec = _spec("cuda", "fp16")
    native = build_native_config("m", digits_info, spec)
    runner = build_model_config("m", digits_info, spec)

    assert list(native.input) == list(runner.input)
    assert list(native.output) == list(runner.output)
    assert list(native.instance_group) == list(runner.instance_group)
    assert native.dynamic_batching == runner.dynamic_batching


# --- runner_parameters / provider_options -----------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "kind", "provider"),
    [
        ("none", InstanceKind.CPU, "CPUExecutionProvider"),
        ("none", InstanceKind.GPU, "CUDAExecutionProvider"),
        ("openvino", InstanceKind.CPU, "OpenVINOExecutionProvider"),
        ("cuda", InstanceKind.GPU, "CUDAExecutionProvider"),
        ("tensorrt", InstanceKind.GPU, "TensorrtExecutionProvider"),
    ],
)
def test_runner_execution_provider(accelerator: str, kind: InstanceKind, provider: str) -> None:
    parameters = runner_parameters(_spec(accelerator, kind=kind))

    assert parameters["execution_provider"] == provider
    assert parameters["intra_op_threads"] == "3"


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_provider_options_is_a_json_object(spec: TrialSpec) -> None:
    text = runner_parameters(spec)["provider_options"]
    options = json.loads(text)

    assert isinstance(options, dict)
    assert options == provider_options(spec)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in options.items())


def test_none_has_no_provider_options() -> None:
    assert json.loads(runner_parameters(_spec("none"))["provider_options"]) == {}


@pytest.mark.parametrize("threads", [1, 4])
def test_openvino_options(threads: int) -> None:
    spec = _spec("openvino", cpu_threads=threads)

    options = json.loads(runner_parameters(spec)["provider_options"])

    assert options["num_of_threads"] == str(spec.cpu_threads)
    assert options["device_type"] == "CPU"
    load_config = json.loads(options["load_config"])
    assert load_config == {"CPU": {"ENABLE_CPU_PINNING": "NO"}}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_tensorrt_options_follow_the_precision(precision: str) -> None:
    options = json.loads(runner_parameters(_spec("tensorrt", precision))["provider_options"])

    assert _truthy(options["trt_fp16_enable"]) is (precision == "fp16")
    assert _truthy(options["trt_int8_enable"]) is (precision == "int8")
    assert options["trt_max_workspace_size"] == str(TENSORRT_WORKSPACE_BYTES)


def test_cuda_options_have_no_openvino_or_tensorrt_keys() -> None:
    options = provider_options(_spec("cuda"))

    assert not any(key.startswith("trt_") for key in options)
    assert "num_of_threads" not in options
