"""The model under study: bundled examples, reduced-precision variants, validation inputs, accuracy.

    prepare("digits_forest", repository)         # a bundled example model, built on demand
    path = build_variant(source, "fp16", cache_dir)  # FP16 / INT8 copies, cached by content
    inputs = validation_inputs(name, info)           # the fixed batch every variant is checked on
    agreement = compare(info, reference, got)        # a variant's answers against FP32's
    model = read_repository_model(repository, name)  # a model of a Triton repository, its config the base

What a model takes and returns (``ModelInfo``) is in ``tuner.model_info``: every stage reads it.
"""

from __future__ import annotations

from tuner.model._accuracy import check_reference, compare, reference_outputs
from tuner.model._bundled import DEFAULT_MODELS, prepare
from tuner.model._repository import (
    RepositoryModel,
    StudyModel,
    check_launch_runs,
    open_model,
    read_repository_model,
    repository_model_info,
)
from tuner.model._validation import load_samples, validation_inputs
from tuner.model._variants import build_variant, external_data, float_precision, install_model_file

__all__ = [
    "DEFAULT_MODELS",
    "RepositoryModel",
    "StudyModel",
    "build_variant",
    "check_launch_runs",
    "check_reference",
    "compare",
    "external_data",
    "float_precision",
    "install_model_file",
    "load_samples",
    "open_model",
    "prepare",
    "read_repository_model",
    "reference_outputs",
    "repository_model_info",
    "validation_inputs",
]
