"""tuner.model._validation: the fixed validation batch every variant is checked on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tuner.errors import ModelError
from tuner.model import validation_inputs
from tuner.model_info import ModelInfo, TensorInfo, read_model_info


@pytest.fixture(scope="module")
def digits_info(digits_onnx: Path) -> ModelInfo:
    return read_model_info(digits_onnx)


@pytest.fixture(scope="module")
def detection_info(text_detection_onnx: Path) -> ModelInfo:
    return read_model_info(text_detection_onnx)


@pytest.fixture(scope="module")
def two_input_info(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    """A tiny ONNX model with an FP32 input [N, 3] and an INT64 input [N, 2]."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["ids"], ["ids_float"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["ids_float"], ["total"], keepdims=1),
            helper.make_node("Add", ["features", "total"], ["out"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 2]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("two_inputs") / "model.onnx"
    onnx.save(model, str(path))
    return read_model_info(path)


# --- digits_forest ----------------------------------------------------------------------------


def test_digits_forest_gets_the_digits_test_split(digits_info: ModelInfo) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    _, x_test, _, _ = train_test_split(digits.data, digits.target, test_size=0.25, random_state=0)

    inputs = validation_inputs("digits_forest", digits_info, count=12)

    assert list(inputs) == ["float_input"]
    batch = inputs["float_input"]
    assert batch.dtype == np.float32
    assert batch.shape == (12, 64)
    np.testing.assert_array_equal(batch, x_test[:12].astype(np.float32))


def test_digits_forest_ignores_the_seed(digits_info: ModelInfo) -> None:
    first = validation_inputs("digits_forest", digits_info, count=5, seed=0)["float_input"]
    second = validation_inputs("digits_forest", digits_info, count=5, seed=7)["float_input"]

    np.testing.assert_array_equal(first, second)


def test_the_digits_name_with_other_inputs_gets_random_inputs(two_input_info: ModelInfo) -> None:
    inputs = validation_inputs("digits_forest", two_input_info, count=4)

    assert set(inputs) == {"features", "ids"}
    assert inputs["features"].shape == (4, 3)


# --- text_detection ---------------------------------------------------------------------------


def test_text_detection_gets_normalized_pages(detection_info: ModelInfo) -> None:
    inputs = validation_inputs("text_detection", detection_info, count=3, seed=0)

    assert list(inputs) == ["x"]
    pages = inputs["x"]
    assert pages.dtype == np.float32
    assert pages.shape == (3, 3, 320, 320)
    assert np.isfinite(pages).all()
    # ImageNet normalization: values on both sides of zero, within the range of [0, 1] pixels.
    assert pages.min() < 0.0 < pages.max()
    assert pages.min() >= (0.0 - 0.485) / 0.229 - 1e-4
    assert pages.max() <= (1.0 - 0.406) / 0.225 + 1e-4
    for page in pages:
        assert page.std() > 0.0  # text on a background, not a constant
    assert not np.array_equal(pages[0], pages[1])


def test_text_detection_is_deterministic_per_seed(detection_info: ModelInfo) -> None:
    first = validation_inputs("text_detection", detection_info, count=2, seed=5)["x"]
    again = validation_inputs("text_detection", detection_info, count=2, seed=5)["x"]
    other = validation_inputs("text_detection", detection_info, count=2, seed=6)["x"]

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


# --- other models: seeded random inputs -------------------------------------------------------


def test_unknown_model_gets_seeded_random_inputs_per_input(two_input_info: ModelInfo) -> None:
    assert [(t.name, t.dtype, t.shape) for t in two_input_info.inputs] == [
        ("features", "FP32", (-1, 3)),
        ("ids", "INT64", (-1, 2)),
    ]

    inputs = validation_inputs("mystery", two_input_info, count=5, seed=3)

    assert set(inputs) == {"features", "ids"}
    assert inputs["features"].dtype == np.float32
    assert inputs["features"].shape == (5, 3)
    assert inputs["ids"].dtype == np.int64
    assert inputs["ids"].shape == (5, 2)
    assert np.isfinite(inputs["features"]).all()
    assert inputs["features"].std() > 0.0


def test_random_inputs_are_deterministic_per_seed(two_input_info: ModelInfo) -> None:
    first = validation_inputs("mystery", two_input_info, count=6, seed=1)
    again = validation_inputs("mystery", two_input_info, count=6, seed=1)
    other = validation_inputs("mystery", two_input_info, count=6, seed=2)

    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["features"], other["features"])


def test_random_inputs_of_other_dtypes() -> None:
    model = ModelInfo(
        inputs=(
            TensorInfo("half", "FP16", (-1, 2)),
            TensorInfo("flag", "BOOL", (-1, 4)),
            TensorInfo("pixels", "UINT8", (-1, 2, 2)),
            TensorInfo("fixed_batch", "INT32", (1, 3)),
        ),
        outputs=(TensorInfo("y", "FP32", (-1, 1)),),
    )

    inputs = validation_inputs("mystery", model, count=4)

    assert inputs["half"].dtype == np.float16 and inputs["half"].shape == (4, 2)
    assert inputs["flag"].dtype == np.bool_ and inputs["flag"].shape == (4, 4)
    assert inputs["pixels"].dtype == np.uint8 and inputs["pixels"].shape == (4, 2, 2)
    assert inputs["fixed_batch"].dtype == np.int32 and inputs["fixed_batch"].shape == (4, 3)


# --- model.validation_data files --------------------------------------------------------------


def test_npz_file_is_used_as_given(two_input_info: ModelInfo, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((7, 3)).astype(np.float32)
    ids = rng.integers(0, 100, size=(7, 2)).astype(np.int64)
    path = tmp_path / "data.npz"
    np.savez(path, ids=ids, features=features, unused=np.zeros(3))

    inputs = validation_inputs("mystery", two_input_info, data_file=path)

    assert list(inputs) == ["features", "ids"]  # the model's inputs, in its order; extras dropped
    np.testing.assert_array_equal(inputs["features"], features)
    np.testing.assert_array_equal(inputs["ids"], ids)


def test_a_data_file_wins_over_the_bundled_inputs(digits_info: ModelInfo, tmp_path: Path) -> None:
    samples = np.full((3, 64), 4.0, dtype=np.float32)
    path = tmp_path / "digits.npy"
    np.save(path, samples)

    inputs = validation_inputs("digits_forest", digits_info, data_file=path)

    np.testing.assert_array_equal(inputs["float_input"], samples)


def test_npz_missing_an_input(two_input_info: ModelInfo, tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, features=np.zeros((2, 3), dtype=np.float32))

    with pytest.raises(ModelError, match=r"^model\.validation_data") as caught:
        validation_inputs("mystery", two_input_info, data_file=path)
    assert "ids" in str(caught.value)


def test_npy_for_a_two_input_model(two_input_info: ModelInfo, tmp_path: Path) -> None:
    path = tmp_path / "data.npy"
    np.save(path, np.zeros((2, 3), dtype=np.float32))

    with pytest.raises(ModelError, match=r"^model\.validation_data"):
        validation_inputs("mystery", two_input_info, data_file=path)


@pytest.mark.parametrize("shape", [(2, 4), (2, 3, 1), (2,)], ids=["wrong-width", "extra-axis", "no-item-axis"])
def test_wrong_shaped_array(two_input_info: ModelInfo, tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, features=np.zeros(shape, dtype=np.float32), ids=np.zeros((2, 2), dtype=np.int64))

    with pytest.raises(ModelError, match=r"^model\.validation_data") as caught:
        validation_inputs("mystery", two_input_info, data_file=path)
    assert "features" in str(caught.value)


def test_wrong_shaped_npy_for_a_one_input_model(digits_info: ModelInfo, tmp_path: Path) -> None:
    path = tmp_path / "digits.npy"
    np.save(path, np.zeros((3, 8, 8), dtype=np.float32))

    with pytest.raises(ModelError, match=r"^model\.validation_data"):
        validation_inputs("digits_forest", digits_info, data_file=path)


def test_unreadable_data_file(two_input_info: ModelInfo, tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    path.write_text("not numpy at all")

    with pytest.raises(ModelError, match=r"^model\.validation_data"):
        validation_inputs("mystery", two_input_info, data_file=path)


def test_missing_data_file(two_input_info: ModelInfo, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"^model\.validation_data"):
        validation_inputs("mystery", two_input_info, data_file=tmp_path / "absent.npz")


def test_npz_with_the_wrong_dtype_is_cast_or_refused(two_input_info: ModelInfo, tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, features=np.zeros((2, 3), dtype=np.float64), ids=np.zeros((2, 2), dtype=np.int64))

    try:
        inputs = validation_inputs("mystery", two_input_info, data_file=path)
    except ModelError as exc:
        assert str(exc).startswith("model.validation_data")
    else:
        assert inputs["features"].dtype == np.float32


def test_a_data_file_gives_count_samples(two_input_info: ModelInfo, tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, features=np.zeros((20, 3), dtype=np.float32), ids=np.zeros((20, 2), dtype=np.int64))

    inputs = validation_inputs("mystery", two_input_info, data_file=path, count=8)

    assert {name: len(array) for name, array in inputs.items()} == {"features": 8, "ids": 8}
