"""Writes a fitted scikit-learn classifier as ONNX, for the landscapes' model scripts beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skl2onnx import to_onnx


def write_classifier(model: Any, sample: Any, out: Path) -> None:
    """Converts ``model`` (class probabilities as a plain tensor, not a list of maps) and writes it to ``out``.

    Args:
        model: The fitted classifier.
        sample: A batch of its input, which gives the ONNX input's type and width.
        out: The ONNX file to write, its folder made where missing.
    """
    onx = to_onnx(model, sample, options={id(model): {"zipmap": False}}, target_opset={"": 15, "ai.onnx.ml": 3})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onx.SerializeToString())
