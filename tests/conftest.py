from __future__ import annotations

from pathlib import Path

import pytest

from tuner import models

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """The project's model repository, with the bundled digits_forest model prepared."""
    repository = REPO_ROOT / "model_repository"
    models.prepare("digits_forest", repository)
    return repository


@pytest.fixture(scope="session")
def text_detection_onnx(model_repository: Path) -> Path:
    """The PP-OCRv4 detection model, taken out of the rapidocr_onnxruntime wheel (downloaded once)."""
    return models.prepare("text_detection", model_repository)


@pytest.fixture(scope="session")
def text_recognition_onnx(model_repository: Path) -> Path:
    """The PP-OCRv4 recognition model from the same wheel."""
    return models.prepare("text_recognition", model_repository)


@pytest.fixture(scope="session")
def digits_onnx(model_repository: Path) -> Path:
    return model_repository / "digits_forest" / "1" / "model.onnx"
