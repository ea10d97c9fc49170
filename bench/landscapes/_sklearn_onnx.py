"""Writes a fitted scikit-learn classifier as ONNX, for the landscapes' model scripts beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skl2onnx import to_onnx

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


def write_classifier(model: Any, x: Any, y: Any, name: str) -> Path:
    """Converts ``model`` (class probabilities as a plain tensor, not a list of maps), writes it to
    model_repository/NAME/1/model.onnx and prints the file's size and the model's training accuracy.

    Args:
        model: The classifier, fitted on ``x`` and ``y``.
        x: Its training inputs; the first row gives the ONNX input's type and width.
        y: Its training labels.
        name: The model's name in the repository.
    """
    out = REPOSITORY / name / "1" / "model.onnx"
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset={"": 15, "ai.onnx.ml": 3})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onx.SerializeToString())
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, training accuracy {model.score(x, y):.3f}")
    return out
