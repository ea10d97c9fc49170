from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as pb

from tuner.model_info import ModelInfo, TensorInfo, read_model_info
from tuner.trial import InstanceKind, TrialSpec
from tuner.triton import RUNNER_BACKEND, build_model_config, parse_pbtxt, to_pbtxt
from tuner.triton._model_config import runner_parameters

HAND_MADE = ModelInfo(
    inputs=(
        TensorInfo("image", "UINT8", (-1, 3, 32, 32)),
        TensorInfo("scale", "FP16", (-1, 1)),
    ),
    outputs=(
        TensorInfo("scores", "FP64", (-1, 5)),
        TensorInfo("count", "INT32", (-1,)),
    ),
)


@pytest.fixture(scope="module")
def digits_info(digits_onnx: Path) -> ModelInfo:
    return read_model_info(digits_onnx)


def _spec(**changes: object) -> TrialSpec:
    values: dict[str, object] = {
        "max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 500, "instance_count": 2, "cpu_threads": 3
    }
    values.update(changes)
    return TrialSpec(**values)  # type: ignore[arg-type]


def test_name_backend_and_max_batch_size(digits_info: ModelInfo) -> None:
    config = build_model_config("digits_forest", digits_info, _spec(max_batch_size=16))

    assert config.name == "digits_forest"
    assert config.backend == RUNNER_BACKEND == "python"
    assert config.max_batch_size == 16


def test_dynamic_batching_has_the_queue_delay(digits_info: ModelInfo) -> None:
    config = build_model_config("m", digits_info, _spec(dynamic_batching=True, max_queue_delay_us=1234))

    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 1234


def test_dynamic_batching_with_zero_delay_is_still_present(digits_info: ModelInfo) -> None:
    config = build_model_config("m", digits_info, _spec(dynamic_batching=True, max_queue_delay_us=0))

    assert config.HasField("dynamic_batching")
    assert "dynamic_batching" in to_pbtxt(config)


def test_no_dynamic_batching_when_off(digits_info: ModelInfo) -> None:
    config = build_model_config("m", digits_info, _spec(dynamic_batching=False, max_queue_delay_us=700))

    assert not config.HasField("dynamic_batching")
    assert "dynamic_batching" not in to_pbtxt(config)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [(InstanceKind.CPU, pb.ModelInstanceGroup.KIND_CPU), (InstanceKind.GPU, pb.ModelInstanceGroup.KIND_GPU)],
)
def test_instance_group(digits_info: ModelInfo, kind: InstanceKind, expected: int) -> None:
    config = build_model_config("m", digits_info, _spec(instance_count=3, kind=kind))

    assert len(config.instance_group) == 1
    assert config.instance_group[0].count == 3
    assert config.instance_group[0].kind == expected


def test_parameters_carry_runner_settings(digits_info: ModelInfo) -> None:
    spec = _spec(cpu_threads=5)
    config = build_model_config("m", digits_info, spec)

    params = {key: value.string_value for key, value in config.parameters.items()}
    assert params == runner_parameters(spec)
    assert params["intra_op_threads"] == "5"
    assert params["onnx_file"] == "model.onnx"
    assert params["inter_op_threads"] == "1"


def test_digits_forest_tensors(digits_info: ModelInfo) -> None:
    config = build_model_config("m", digits_info, _spec())

    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("float_input", pb.TYPE_FP32, [64])]
    assert not config.input[0].HasField("reshape")
    outputs = {t.name: t for t in config.output}
    assert list(outputs) == ["label", "probabilities"]
    assert outputs["probabilities"].data_type == pb.TYPE_FP32
    assert list(outputs["probabilities"].dims) == [10]
    assert not outputs["probabilities"].HasField("reshape")


def test_batch_only_output_gets_dims_one_and_a_scalar_reshape(digits_info: ModelInfo) -> None:
    config = build_model_config("m", digits_info, _spec())

    label = next(t for t in config.output if t.name == "label")
    assert label.data_type == pb.TYPE_INT64
    assert list(label.dims) == [1]
    assert label.HasField("reshape")
    assert list(label.reshape.shape) == []


def test_hand_made_model_tensors() -> None:
    config = build_model_config("hand", HAND_MADE, _spec())

    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("image", pb.TYPE_UINT8, [3, 32, 32]),
        ("scale", pb.TYPE_FP16, [1]),
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("scores", pb.TYPE_FP64, [5]),
        ("count", pb.TYPE_INT32, [1]),
    ]
    # (-1, 1) keeps its real dim and needs no reshape; only the batch-only (-1,) gets one
    assert not config.input[1].HasField("reshape")
    assert config.output[1].HasField("reshape")


def test_batch_only_input_is_reshaped_too() -> None:
    info = ModelInfo(inputs=(TensorInfo("ids", "INT64", (-1,)),), outputs=(TensorInfo("y", "BOOL", (-1, 2)),))

    config = build_model_config("m", info, _spec())

    assert list(config.input[0].dims) == [1]
    assert config.input[0].HasField("reshape")
    assert config.output[0].data_type == pb.TYPE_BOOL


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("kind", list(InstanceKind))
def test_pbtxt_round_trip(digits_info: ModelInfo, dynamic: bool, kind: InstanceKind) -> None:
    config = build_model_config("digits_forest", digits_info, _spec(dynamic_batching=dynamic, kind=kind))

    text = to_pbtxt(config)

    assert parse_pbtxt(text) == config


def test_hand_made_round_trip() -> None:
    config = build_model_config("hand", HAND_MADE, _spec(max_batch_size=1, instance_count=4))

    assert parse_pbtxt(to_pbtxt(config)) == config


def test_pbtxt_text_has_triton_field_names(digits_info: ModelInfo) -> None:
    text = to_pbtxt(build_model_config("digits_forest", digits_info, _spec(max_queue_delay_us=250)))

    assert 'name: "digits_forest"' in text
    assert "max_batch_size: 8" in text
    assert "max_queue_delay_microseconds: 250" in text
    assert "kind: KIND_CPU" in text
    assert "data_type: TYPE_FP32" in text


def test_parse_pbtxt_rejects_unknown_fields() -> None:
    from google.protobuf.text_format import ParseError

    with pytest.raises(ParseError):
        parse_pbtxt('name: "m"\nmax_batch: 4\n')
