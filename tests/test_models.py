from __future__ import annotations

from pathlib import Path

from tuner.model._bundled import base_config


def test_bundled_base_configs_match_the_writer(model_repository: Path) -> None:
    path = model_repository / "digits_forest"
    assert (path / "config.pbtxt").read_text() == base_config("digits_forest", path / "1" / "model.onnx")
