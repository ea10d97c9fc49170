"""tuner.model._accuracy: a variant's answers against the FP32 model's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from factories import lookup_model, zipmap_classifier

from tuner.errors import ModelError
from tuner.model import check_reference, compare, reference_outputs, validation_inputs
from tuner.model._accuracy import is_classifier_output
from tuner.model_info import ModelInfo, TensorInfo, read_model_info

_INPUT = TensorInfo("x", "FP32", (-1, 4))


def _model(*outputs: TensorInfo) -> ModelInfo:
    return ModelInfo(inputs=(_INPUT,), outputs=outputs)


# --- is_classifier_output ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "tensor",
    [
        TensorInfo("label", "INT64", (-1,)),
        TensorInfo("label", "INT64", (-1, 1)),
        TensorInfo("label", "INT32", (-1,)),
        TensorInfo("scores", "FP32", (-1, 10)),
        TensorInfo("scores", "FP16", (-1, 3)),
        TensorInfo("sequence", "FP32", (-1, 40, 97)),
    ],
    ids=["int64-[N]", "int64-[N,1]", "int32-[N]", "fp32-[N,C]", "fp16-[N,C]", "fp32-[N,T,C]"],
)
def test_classifier_outputs(tensor: TensorInfo) -> None:
    assert is_classifier_output(tensor)


@pytest.mark.parametrize(
    "tensor",
    [
        TensorInfo("map", "FP32", (-1, 1, 320, 320)),
        TensorInfo("score", "FP32", (-1, 1)),
        TensorInfo("value", "FP32", (-1,)),
        TensorInfo("ids", "INT64", (-1, 5)),
        TensorInfo("ids", "INT64", (-1, 2, 3)),
    ],
    ids=["fp32-[N,1,H,W]", "fp32-[N,1]", "fp32-[N]", "int64-[N,5]", "int64-[N,2,3]"],
)
def test_non_classifier_outputs(tensor: TensorInfo) -> None:
    assert not is_classifier_output(tensor)


# --- compare ----------------------------------------------------------------------------------


def test_identical_outputs_have_no_drop_and_no_errors() -> None:
    model = _model(TensorInfo("scores", "FP32", (-1, 3)), TensorInfo("map", "FP32", (-1, 1, 2, 2)))
    rng = np.random.default_rng(0)
    outputs = {
        "scores": rng.standard_normal((6, 3)).astype(np.float32),
        "map": rng.standard_normal((6, 1, 2, 2)).astype(np.float32),
    }

    result = compare(model, outputs, {k: v.copy() for k, v in outputs.items()})

    assert result["accuracy_drop"] == 0.0
    assert result["samples"] == 6
    assert set(result["outputs"]) == {"scores", "map"}
    for numbers in result["outputs"].values():
        assert numbers["max_abs_error"] == 0.0
        assert numbers["max_rel_error"] == 0.0
        assert numbers["cosine_similarity"] == pytest.approx(1.0)
    assert result["outputs"]["scores"]["top1_agreement"] == 1.0
    assert "top1_agreement" not in result["outputs"]["map"]


def test_identical_non_classifier_output_has_no_drop() -> None:
    model = _model(TensorInfo("map", "FP32", (-1, 1, 4, 4)))
    outputs = {"map": np.random.default_rng(1).random((3, 1, 4, 4)).astype(np.float32)}

    result = compare(model, outputs, {"map": outputs["map"].copy()})

    assert result["accuracy_drop"] == pytest.approx(0.0, abs=1e-12)
    assert result["outputs"]["map"]["cosine_similarity"] == pytest.approx(1.0)


def test_classifier_with_half_the_argmaxes_changed() -> None:
    model = _model(TensorInfo("scores", "FP32", (-1, 3)))
    reference = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]], dtype=np.float32)
    got = reference.copy()
    got[0] = [0.05, 0.9, 0.05]  # class 0 -> 1
    got[2] = [0.6, 0.2, 0.2]  # class 2 -> 0

    result = compare(model, {"scores": reference}, {"scores": got})

    assert result["outputs"]["scores"]["top1_agreement"] == 0.5
    assert result["accuracy_drop"] == pytest.approx(0.5)


def test_an_embedding_judged_by_cosine_is_not_failed_by_its_largest_dimension_moving() -> None:
    """An embedding [N, C] has the shape of class scores; its top-1 "class" means nothing. With
    ``cosine``, a change of the largest dimension that keeps the vectors close costs little."""
    model = _model(TensorInfo("embedding", "FP32", (-1, 4)))
    reference = np.array([[0.50, 0.49, 0.1, 0.1], [0.1, 0.2, 0.9, 0.1]], dtype=np.float32)
    got = np.array([[0.49, 0.50, 0.1, 0.1], [0.1, 0.2, 0.9, 0.1]], dtype=np.float32)

    guessed = compare(model, {"embedding": reference}, {"embedding": got})
    cosine = compare(model, {"embedding": reference}, {"embedding": got}, metric="cosine")

    assert guessed["accuracy_drop"] == pytest.approx(0.5) and guessed["judged_by"] == "top1_agreement"
    assert cosine["accuracy_drop"] == pytest.approx(1.0 - cosine["outputs"]["embedding"]["cosine_similarity"])
    assert cosine["accuracy_drop"] < 1e-3 and cosine["judged_by"] == "cosine_similarity"
    assert "top1_agreement" not in cosine["outputs"]["embedding"]


def test_sequence_classifier_counts_positions() -> None:
    model = _model(TensorInfo("sequence", "FP32", (-1, 2, 3)))
    reference = np.zeros((2, 2, 3), dtype=np.float32)
    reference[:, :, 0] = 1.0  # every position: class 0
    got = reference.copy()
    got[1, 1] = [0.0, 0.0, 1.0]  # one of four positions changes

    result = compare(model, {"sequence": reference}, {"sequence": got})

    assert result["outputs"]["sequence"]["top1_agreement"] == 0.75
    assert result["accuracy_drop"] == pytest.approx(0.25)


@pytest.mark.parametrize("shape", [(-1,), (-1, 1)], ids=["[N]", "[N,1]"])
def test_int64_labels_count_as_a_classifier(shape: tuple[int, ...]) -> None:
    model = _model(TensorInfo("label", "INT64", shape))
    array_shape = (4,) if len(shape) == 1 else (4, 1)
    reference = np.array([3, 1, 4, 1], dtype=np.int64).reshape(array_shape)
    got = np.array([3, 1, 5, 9], dtype=np.int64).reshape(array_shape)

    result = compare(model, {"label": reference}, {"label": got})

    assert result["outputs"]["label"]["top1_agreement"] == 0.5
    assert result["accuracy_drop"] == pytest.approx(0.5)


def test_non_classifier_drop_is_one_minus_cosine() -> None:
    model = _model(TensorInfo("value", "FP32", (-1,)))
    reference = np.array([1.0, -4.0, 2.0], dtype=np.float32)
    got = np.array([1.5, -4.0, 1.0], dtype=np.float32)

    result = compare(model, {"value": reference}, {"value": got})
    numbers = result["outputs"]["value"]

    # |diff| = [0.5, 0, 1]; the largest |reference| is 4.
    assert numbers["max_abs_error"] == pytest.approx(1.0)
    assert numbers["max_rel_error"] == pytest.approx(0.25)
    cosine = 19.5 / math.sqrt(21.0 * 19.25)  # (1.5 + 16 + 2) / (|ref| * |got|)
    assert numbers["cosine_similarity"] == pytest.approx(cosine)
    assert "top1_agreement" not in numbers
    assert result["accuracy_drop"] == pytest.approx(1.0 - cosine)
    assert result["samples"] == 3


def test_errors_on_a_hand_computed_map() -> None:
    model = _model(TensorInfo("map", "FP32", (-1, 1, 2, 2)))
    reference = np.array([[[[0.5, 2.0], [-1.0, 0.0]]], [[[0.25, 0.0], [1.0, 1.0]]]], dtype=np.float32)
    got = reference.copy()
    got[0, 0, 0, 1] = 1.5  # |diff| 0.5
    got[1, 0, 1, 0] = 1.75  # |diff| 0.75, the largest

    numbers = compare(model, {"map": reference}, {"map": got})["outputs"]["map"]

    assert numbers["max_abs_error"] == pytest.approx(0.75)
    assert numbers["max_rel_error"] == pytest.approx(0.75 / 2.0)
    ref, out = reference.ravel().astype(np.float64), got.ravel().astype(np.float64)
    assert numbers["cosine_similarity"] == pytest.approx(ref @ out / (np.linalg.norm(ref) * np.linalg.norm(out)))


def test_all_zero_reference() -> None:
    model = _model(TensorInfo("map", "FP32", (-1, 1, 2, 2)))
    zeros = np.zeros((2, 1, 2, 2), dtype=np.float32)

    same = compare(model, {"map": zeros}, {"map": zeros.copy()})
    assert same["accuracy_drop"] == 0.0
    assert same["outputs"]["map"]["cosine_similarity"] == 1.0

    got = zeros.copy()
    got[0, 0, 0, 0] = 0.5
    different = compare(model, {"map": zeros}, {"map": got})
    # No scale to divide by: the relative error falls back to the absolute one.
    assert different["outputs"]["map"]["max_abs_error"] == pytest.approx(0.5)
    assert different["outputs"]["map"]["max_rel_error"] == pytest.approx(0.5)
    assert different["outputs"]["map"]["cosine_similarity"] == 0.0
    assert different["accuracy_drop"] == pytest.approx(1.0)


def test_a_classifier_output_decides_the_drop_over_a_non_classifier() -> None:
    model = _model(TensorInfo("scores", "FP32", (-1, 2)), TensorInfo("map", "FP32", (-1, 1, 2, 2)))
    scores = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    reference = {"scores": scores, "map": np.ones((2, 1, 2, 2), dtype=np.float32)}
    got = {"scores": scores.copy(), "map": -np.ones((2, 1, 2, 2), dtype=np.float32)}  # cosine -1

    result = compare(model, reference, got)

    assert result["outputs"]["map"]["cosine_similarity"] == pytest.approx(-1.0)
    assert result["accuracy_drop"] == 0.0  # the classifier agrees everywhere


def test_the_worst_classifier_decides_the_drop() -> None:
    model = _model(TensorInfo("label", "INT64", (-1,)), TensorInfo("scores", "FP32", (-1, 2)))
    reference = {"label": np.array([0, 1, 0, 1]), "scores": np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]}
    got = {"label": np.array([0, 1, 0, 0]), "scores": np.eye(2, dtype=np.float32)[[1, 0, 0, 1]]}

    result = compare(model, reference, got)

    assert result["outputs"]["label"]["top1_agreement"] == 0.75
    assert result["outputs"]["scores"]["top1_agreement"] == 0.5
    assert result["accuracy_drop"] == pytest.approx(0.5)


def test_a_model_without_outputs_has_no_drop() -> None:
    result = compare(_model(), {}, {})

    assert result == {"accuracy_drop": 0.0, "judged_by": "cosine_similarity", "outputs": {}, "samples": 0}


# --- reference_outputs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_batch(digits_onnx: Path) -> tuple[ModelInfo, dict[str, np.ndarray]]:
    info = read_model_info(digits_onnx)
    return info, validation_inputs("digits_forest", info, count=16)


def test_reference_outputs_of_digits_match_onnxruntime(
    digits_onnx: Path, digits_batch: tuple[ModelInfo, dict[str, np.ndarray]]
) -> None:
    info, inputs = digits_batch

    reference = reference_outputs(str(digits_onnx), inputs)

    session = ort.InferenceSession(str(digits_onnx), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(names, inputs)))
    assert set(reference) == set(expected) == {t.name for t in info.outputs}
    np.testing.assert_array_equal(reference["label"], expected["label"])
    np.testing.assert_allclose(reference["probabilities"], expected["probabilities"], rtol=1e-6, atol=1e-6)

    probabilities = reference["probabilities"]
    assert probabilities.shape == (16, 10)
    assert reference["label"].shape == (16,)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(reference["label"], probabilities.argmax(axis=1))


def test_digits_against_itself_has_no_drop(
    digits_onnx: Path, digits_batch: tuple[ModelInfo, dict[str, np.ndarray]]
) -> None:
    info, inputs = digits_batch
    reference = reference_outputs(str(digits_onnx), inputs)

    result = compare(info, reference, reference_outputs(str(digits_onnx), inputs))

    assert result["accuracy_drop"] == 0.0
    assert result["samples"] == 16
    assert result["outputs"]["label"]["top1_agreement"] == 1.0
    assert result["outputs"]["probabilities"]["top1_agreement"] == 1.0


def test_a_model_that_refuses_the_made_up_inputs_is_said_to_at_once(tmp_path: Path) -> None:
    path = lookup_model(tmp_path / "lookup.onnx", categories=4)
    made_up = validation_inputs("lookup", read_model_info(path))
    assert made_up["cat"].max() >= 4, "the seeded random ids reach past the table"

    with pytest.raises(ModelError, match=r"makes up .*integers 0-7.*Gather.*give inputs the model takes in model.validation_data"):
        check_reference(path, made_up, made_up=True)
    with pytest.raises(ModelError, match=r"^model.validation_data: ONNX Runtime fails on the first sample: .*Gather"):
        check_reference(path, made_up, made_up=False)
    check_reference(path, {"cat": made_up["cat"] % 4}, made_up=False)  # ids within the table run


def test_a_classifier_s_zipmap_output_is_neither_run_nor_compared(tmp_path: Path) -> None:
    path = zipmap_classifier(tmp_path / "classifier.onnx")
    info = read_model_info(path)
    made_up = validation_inputs("classifier", info, count=4)

    check_reference(path, made_up, made_up=True)  # the sequence of maps is not asked for
    reference = reference_outputs(str(path), made_up)

    assert set(reference) == {"output_label"} and reference["output_label"].shape == (4,)
    assert compare(info, reference, reference)["accuracy_drop"] == 0.0


def test_a_sample_answered_with_another_size_agrees_in_nothing() -> None:
    # a detector's kept boxes: 2, 1 and 3 of them; the variant keeps one box fewer on the last sample
    model = _model(TensorInfo("boxes", "FP32", (-1, 4)))
    reference = {"boxes": [np.ones((2, 4)), np.full((1, 4), 2.0), np.arange(12.0).reshape(3, 4)]}
    same = compare(model, reference, {"boxes": [a.copy() for a in reference["boxes"]]})
    fewer = compare(model, reference, {"boxes": [*reference["boxes"][:2], reference["boxes"][2][:2]]})

    assert same["accuracy_drop"] == 0.0 and "samples_of_another_size" not in same["outputs"]["boxes"]
    assert fewer["outputs"]["boxes"]["samples_of_another_size"] == 1
    assert fewer["outputs"]["boxes"]["cosine_similarity"] == pytest.approx(2 / 3)
    assert fewer["outputs"]["boxes"]["top1_agreement"] == pytest.approx(2 / 3), "[N, 4] reads as class scores"
    assert fewer["accuracy_drop"] == pytest.approx(1 / 3)
