from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from factories import zipmap_classifier
from onnx import TensorProto, helper

from tuner.errors import ModelError
from tuner.model_info import TRITON_DTYPES, ModelInfo, TensorInfo, read_model_info
from tuner.study._plan import unserved_note


def _identity_model(path: Path, shape: list[int | str | None], elem_type: int = TensorProto.FLOAT) -> Path:
    """An Identity model whose input ``x`` and output ``y`` have ``shape``."""
    x = helper.make_tensor_value_info("x", elem_type, shape)
    y = helper.make_tensor_value_info("y", elem_type, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_digits_forest(digits_onnx: Path) -> None:
    info = read_model_info(digits_onnx)

    assert info == ModelInfo(
        inputs=(TensorInfo("float_input", "FP32", (-1, 64)),),
        outputs=(TensorInfo("label", "INT64", (-1,)), TensorInfo("probabilities", "FP32", (-1, 10))),
    )
    assert info.batch_dim_free
    assert info.inputs[0].item_shape == (64,)
    assert info.outputs[0].item_shape == ()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.onnx"

    with pytest.raises(ModelError, match="not found") as excinfo:
        read_model_info(path)

    assert str(path) in str(excinfo.value)


def test_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        read_model_info(tmp_path)


def test_non_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00\xffnot an onnx model at all\x01\x02" * 10)

    with pytest.raises(ModelError, match="cannot read ONNX model"):
        read_model_info(path)


def test_an_empty_file_is_said_to_hold_no_graph(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")  # parses as an empty model, with no graph, inputs or outputs

    with pytest.raises(ModelError, match="holds no ONNX graph: is it empty, or cut short"):
        read_model_info(path)


def test_a_model_that_takes_no_inputs_is_refused(tmp_path: Path) -> None:
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    constant = helper.make_node("Constant", [], ["y"], value=helper.make_tensor("v", TensorProto.FLOAT, [1, 4], [1.0] * 4))
    path = tmp_path / "constant.onnx"
    onnx.save(helper.make_model(helper.make_graph([constant], "g", [], [y])), str(path))

    with pytest.raises(ModelError, match="constant.onnx takes no inputs: Triton refuses a request that carries none"):
        read_model_info(path)


def test_input_override_with_item_shape(digits_onnx: Path) -> None:
    info = read_model_info(digits_onnx, [TensorInfo("float_input", "", (64,))])  # "": the model's type

    assert info.inputs == (TensorInfo("float_input", "FP32", (-1, 64)),)
    assert info.outputs[1] == TensorInfo("probabilities", "FP32", (-1, 10))


@pytest.mark.parametrize(("given", "message"), [
    (TensorInfo("float_input", "", (65,)), r"float_input is given shape \[65\], and model.onnx takes \[N, 64\]"),
    (TensorInfo("float_input", "", (8, 8)), r"float_input is given shape \[8, 8\], and model.onnx takes \[N, 64\]"),
    (TensorInfo("float_input", "FP16", (64,)), r"float_input is given dtype FP16, and model.onnx takes FP32"),
    (TensorInfo("float_input", "", (1, 64)), (r"float_input is given shape \[1, 64\], whose first dimension is the "
                                             r"batch's, which model.onnx leaves free: give \[64\] \(the batch "
                                             r"dimension left out\) or \[-1, 64\]")),
])
def test_an_override_that_contradicts_the_model_names_model_inputs(
    digits_onnx: Path, given: TensorInfo, message: str
) -> None:
    with pytest.raises(ModelError, match=rf"^model\.inputs: {message}"):
        read_model_info(digits_onnx, [given])


def test_input_override_with_full_shape(digits_onnx: Path) -> None:
    info = read_model_info(digits_onnx, [TensorInfo("float_input", "FP32", (-1, 64))])

    assert info.inputs[0].shape == (-1, 64)


def test_unknown_override_name(digits_onnx: Path) -> None:
    with pytest.raises(ModelError, match="input_x") as excinfo:
        read_model_info(digits_onnx, [TensorInfo("input_x", "FP32", (64,))])

    assert "float_input" in str(excinfo.value)  # the real inputs are listed


def test_free_non_batch_dimension_names_the_input(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "free.onnx", ["N", 3, "H", "W"])

    with pytest.raises(ModelError, match="free dimensions") as excinfo:
        read_model_info(path)

    assert "'x'" in str(excinfo.value)
    assert "[-1, 3, -1, -1]" in str(excinfo.value)


def test_free_dimensions_take_the_shape_of_the_samples(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "free.onnx", ["N", 3, "H", "W"])
    np.save(tmp_path / "one.npy", np.zeros((2, 3, 16, 24), dtype=np.float32))
    np.savez(tmp_path / "named.npz", x=np.zeros((2, 3, 8, 8), dtype=np.float32))

    for data, shape in ((tmp_path / "one.npy", (-1, 3, 16, 24)), (tmp_path / "named.npz", (-1, 3, 8, 8))):
        info = read_model_info(path, shape_data=data)
        assert info.inputs[0].shape == shape and info.shaped_by_data == ("x",)

    given = read_model_info(path, [TensorInfo("x", "FP32", (3, 4, 4))], shape_data=tmp_path / "one.npy")
    assert given.inputs[0].shape == (-1, 3, 4, 4) and given.shaped_by_data == (), "model.inputs comes first"
    assert read_model_info(_identity_model(tmp_path / "fixed.onnx", ["N", 3]), shape_data=tmp_path / "one.npy").shaped_by_data == ()


def test_samples_that_do_not_fit_leave_the_dimension_free_and_the_error_names_both_ways(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "free.onnx", ["N", 3, "H", "W"])
    np.save(tmp_path / "flat.npy", np.zeros((2, 48), dtype=np.float32))  # another rank
    np.save(tmp_path / "four.npy", np.zeros((2, 4, 8, 8), dtype=np.float32))  # 4 channels where the model fixes 3
    np.savez(tmp_path / "other.npz", y=np.zeros((2, 3, 8, 8), dtype=np.float32))  # another input's name

    for name in ("flat.npy", "four.npy", "other.npz"):
        with pytest.raises(ModelError, match=r"free dimensions .*model.inputs, or samples of it in model.validation_data"):
            read_model_info(path, shape_data=tmp_path / name)


def test_unknown_dimension_counts_as_free(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "unknown.onnx", [None, None])

    with pytest.raises(ModelError, match="'x'"):
        read_model_info(path)


def test_free_dimension_fixed_by_override(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "free.onnx", ["N", 3, "H", "W"])

    info = read_model_info(path, [TensorInfo("x", "FP32", (3, 32, 32))])

    assert info.inputs == (TensorInfo("x", "FP32", (-1, 3, 32, 32)),)
    assert info.outputs == (TensorInfo("y", "FP32", (-1, 3, -1, -1)),)  # outputs may stay free


def test_fixed_batch_dimension(tmp_path: Path) -> None:
    info = read_model_info(_identity_model(tmp_path / "fixed.onnx", [2, 5]))

    assert info.inputs[0].shape == (2, 5)
    assert not info.batch_dim_free
    assert [t.name for t in info.unbatched] == ["x", "y"]


def test_an_output_without_a_free_first_dimension_stops_batching() -> None:
    batched = TensorInfo("x", "FP32", (-1, 4))
    for output in (TensorInfo("stat", "FP32", ()), TensorInfo("boxes", "FP32", (10, 4))):
        info = ModelInfo((batched,), (TensorInfo("y", "FP32", (-1, 4)), output))
        assert not info.batch_dim_free
        assert info.unbatched == (output,)
    assert ModelInfo((batched,), (TensorInfo("y", "FP32", (-1, 4)),)).batch_dim_free


@pytest.mark.parametrize(
    ("elem_type", "dtype"),
    [
        (TensorProto.UINT8, "UINT8"),
        (TensorProto.INT32, "INT32"),
        (TensorProto.BOOL, "BOOL"),
        (TensorProto.DOUBLE, "FP64"),
    ],
)
def test_element_types(tmp_path: Path, elem_type: int, dtype: str) -> None:
    info = read_model_info(_identity_model(tmp_path / "t.onnx", ["N", 2], elem_type))

    assert info.inputs[0].dtype == dtype
    assert dtype in TRITON_DTYPES


def test_an_input_of_a_type_the_tuner_cannot_send_is_refused_by_name(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "s.onnx", ["N", 2], TensorProto.STRING)

    with pytest.raises(ModelError, match=r"input 'x' of s.onnx is tensor\(string\), which the tuner cannot send"):
        read_model_info(path)


def test_a_classifier_s_zipmap_output_is_left_unserved_and_said_so(tmp_path: Path) -> None:
    path = zipmap_classifier(tmp_path / "classifier.onnx")

    info = read_model_info(path)

    assert [t.name for t in info.outputs] == ["output_label"]
    assert info.unserved == (("output_probability", "seq(map(int64,tensor(float)))"),)
    note = unserved_note(info.unserved)
    assert "output_probability (seq(map(int64,tensor(float))))" in note and "'zipmap': False" in note


def test_a_string_output_is_left_unserved_beside_a_tensor_one(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    names = helper.make_tensor_value_info("names", TensorProto.STRING, ["N", 2])
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Cast", ["x"], ["names"], to=TensorProto.STRING)]
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y, names])), str(path))

    info = read_model_info(path)

    assert [t.name for t in info.outputs] == ["y"] and info.unserved == (("names", "tensor(string)"),)
    assert "zipmap" not in unserved_note(info.unserved)


def test_a_model_with_no_output_triton_can_return_is_refused(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    seq = helper.make_tensor_sequence_value_info("parts", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("SequenceConstruct", ["x"], ["parts"])], "g", [x], [seq])
    path = tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph), str(path))

    with pytest.raises(ModelError, match=r"no output of q.onnx is a tensor of a type the tuner serves: parts \(seq\(tensor\(float\)\)\)"):
        read_model_info(path)


def test_initializers_are_not_inputs(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x, w], [y], [weight])
    path = tmp_path / "init.onnx"
    onnx.save(helper.make_model(graph), str(path))

    info = read_model_info(path)

    assert [t.name for t in info.inputs] == ["x"]


def test_text_detection_input_is_fixed_to_320(text_detection_onnx: Path) -> None:
    info = read_model_info(text_detection_onnx)

    assert info.inputs == (TensorInfo("x", "FP32", (-1, 3, 320, 320)),)
    assert info.outputs[0].shape == (-1, 1, 320, 320)


@pytest.mark.parametrize(
    ("outputs", "region"),
    [
        ([TensorInfo("y", "FP32", (-1, 1, 320, 320))], 4 * 320 * 320),  # a free batch counts once
        ([TensorInfo("label", "INT64", (-1,)), TensorInfo("p", "FP16", (-1, 10))], 20),  # the largest
        ([TensorInfo("y", "UINT8", (2, 3))], 6),  # a fixed first dimension is the request's
        ([TensorInfo("y", "FP32", (-1, -1, 16))], "unknown"),  # a free sequence
        ([TensorInfo("y", "FP32", (-1, 4)), TensorInfo("s", "BYTES", (-1, 1))], "unknown"),  # strings
    ],
)
def test_the_shared_memory_region_of_each_output_fits_the_largest(outputs: list[TensorInfo], region: object) -> None:
    from tuner.measure import output_region_bytes
    from tuner.measure._perf_analyzer import UNKNOWN_OUTPUT_BYTES

    info = ModelInfo(inputs=(TensorInfo("x", "FP32", (-1, 4)),), outputs=tuple(outputs))
    assert output_region_bytes(info) == (UNKNOWN_OUTPUT_BYTES if region == "unknown" else region)
