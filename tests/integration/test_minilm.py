"""The transformer: MiniLM exported to ONNX, INT64 token inputs, measured and checked on real sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from tuner.config import parse_config
from tuner.model import _bundled as models
from tuner.storage import Store
from tuner.study import StudyRunner

torch = pytest.importorskip("torch", reason="the transformer extra is not installed: pip install -e '.[transformer]'")
pytest.importorskip("transformers", reason="the transformer extra is not installed")


@pytest.fixture(scope="module")
def minilm_onnx(model_repository: Path) -> Path:
    return models.prepare("minilm", model_repository)


def test_exported_encoder_matches_sentence_embeddings(minilm_onnx: Path) -> None:
    import onnxruntime as ort

    tokens = models.minilm_tokens(["A cat sits on the mat.", "A cat is sitting on a mat.", "Stock prices fell."])
    session = ort.InferenceSession(str(minilm_onnx), providers=["CPUExecutionProvider"])
    (embedding,) = session.run(["embedding"], tokens)
    assert embedding.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-4)
    similar, unrelated = embedding[0] @ embedding[1], embedding[0] @ embedding[2]
    assert similar > 0.8 and unrelated < 0.3  # paraphrases close, unrelated sentences apart


def test_minilm_study_with_dynamic_int8(tmp_path: Path, minilm_onnx: Path) -> None:
    cfg = parse_config(
        {
            "study": "minilm",
            "storage": "sqlite:///tuner.db",
            "model": {"name": "minilm", "path": str(minilm_onnx), "validation_samples": 4},
            "workers": {"backend": "local"},
            "search": {"sampler": "grid", "n_trials": 3, "space": {
                "max_batch_size": 4, "dynamic_batching": False, "instance_count": 1, "precision": ["fp32", "int8"]}},
            "load": {"remeasure": {"top": 0}, "concurrency": [1], "measurement_window_ms": 1000, "max_windows": 5, "warmup_requests": 1,
                     "early_stop": {"enabled": False}},
        },
        tmp_path,
    )
    StudyRunner(cfg, Store(cfg.storage)).run()
    study = optuna.load_study(study_name="minilm", storage=cfg.storage)
    by_precision = {t.params["precision"]: t for t in study.trials if "reused_from" not in t.user_attrs}
    reasons = {p: t.user_attrs.get("fail_reason") for p, t in by_precision.items()}
    assert {p: t.state for p, t in by_precision.items()} == {"fp32": TrialState.COMPLETE, "int8": TrialState.COMPLETE}, reasons
    assert by_precision["fp32"].user_attrs["accuracy"]["accuracy_drop"] < 1e-5
    int8 = by_precision["int8"].user_attrs["accuracy"]["outputs"]["embedding"]
    assert 0.9 < int8["cosine_similarity"] < 1.0  # dynamic INT8 moves the embeddings, a little
    assert all(t.values[0] > 0 for t in by_precision.values())
