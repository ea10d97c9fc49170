"""The text recognizer: a model whose output is a sequence of class scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuner.model import compare, reference_outputs, validation_inputs
from tuner.model._accuracy import is_classifier_output
from tuner.model_info import ModelInfo, TensorInfo, read_model_info


def test_prepared_recognizer_reads_rendered_lines(text_recognition_onnx: Path) -> None:
    info = read_model_info(text_recognition_onnx)
    assert info.inputs == (TensorInfo("x", "FP32", (-1, 3, 48, 320)),)
    (output,) = info.outputs
    assert output.shape[-1] == 6625 and is_classifier_output(output)

    lines = validation_inputs("text_recognition", info, count=3)["x"]
    assert lines.shape == (3, 3, 48, 320) and lines.min() >= -1.0 and lines.max() <= 1.0
    scores = reference_outputs(str(text_recognition_onnx), {"x": lines})[output.name]
    assert scores.shape[0] == 3 and scores.shape[2] == 6625
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, rtol=1e-3)
    # Rendered text is read as characters, not only as blanks (class 0).
    assert (scores.argmax(axis=-1) != 0).any(axis=1).all()


def test_top1_agreement_counts_positions_of_a_sequence() -> None:
    info = ModelInfo(inputs=(TensorInfo("x", "FP32", (-1, 4)),), outputs=(TensorInfo("p", "FP32", (-1, -1, 5)),))
    reference = np.zeros((2, 4, 5), dtype=np.float32)
    reference[:, :, 1] = 1.0  # every position says class 1
    got = reference.copy()
    got[0, 0] = [0, 0, 1, 0, 0]  # one of the 8 positions changes its mind
    result = compare(info, {"p": reference}, {"p": got})
    assert result["outputs"]["p"]["top1_agreement"] == 7 / 8
    assert result["accuracy_drop"] == 1 / 8
