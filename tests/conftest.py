from __future__ import annotations

from pathlib import Path

import pytest

from tuner import models

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Fixtures defined here are cheap once scripts/test.sh has prepared the models: no grouping by them.
_ROOT_BASEIDS = ("", "tests")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keeps the tests that share a module- or session-wide fixture on one xdist worker.

    Such fixtures start servers or run whole studies; on several workers each would build its own.
    The group is where the widest such fixture is defined (``tests/api`` for the API's servers, a
    module's path for its own).
    """
    for item in items:
        group = _shared_fixture_home(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def _shared_fixture_home(item: pytest.Item) -> str | None:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    homes = [
        definition.baseid
        for definitions in info.name2fixturedefs.values()
        for definition in definitions[-1:]
        if definition.scope in ("session", "package", "module") and definition.baseid not in _ROOT_BASEIDS
    ]
    return min(homes, key=len) if homes else None


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
