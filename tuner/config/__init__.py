"""The study file: pydantic models of study.yaml, validated once at the edge.

    cfg = load_config(Path("search_spaces/digits_forest_cpu.yaml"))

Every error names the field path (``search.space.instance_count.low: ...``). Relative paths
in the file, the SQLite database and the work folder included, are relative to the file.
One module per section: ``_model``, ``_server`` (server and workers), ``_search``, ``_load``,
and ``_study`` (the whole file, objectives, constraints, reading it).
"""

from __future__ import annotations

from tuner.config._base import real_path
from tuner.config._load import ConcurrencySearch, EarlyStop, LoadSettings, Remeasure
from tuner.config._model import ModelSettings, TensorSpec
from tuner.config._search import (
    ACCELERATORS,
    GPU_ACCELERATORS,
    KNOB_BACKENDS,
    PERFORMANCE_HINTS,
    PRECISIONS,
    SAMPLER_NAMES,
    IntRange,
    SearchSettings,
    SpaceSettings,
    Transfer,
)
from tuner.config._server import RemoteEndpoint, ServerSettings, WorkerSettings
from tuner.config._study import (
    Bound,
    Objective,
    StudyConfig,
    load_config,
    parse_config,
    parse_yaml,
    resolve_storage,
)

__all__ = [
    "ACCELERATORS",
    "GPU_ACCELERATORS",
    "KNOB_BACKENDS",
    "PERFORMANCE_HINTS",
    "PRECISIONS",
    "SAMPLER_NAMES",
    "Bound",
    "ConcurrencySearch",
    "EarlyStop",
    "IntRange",
    "LoadSettings",
    "ModelSettings",
    "Objective",
    "Remeasure",
    "RemoteEndpoint",
    "SearchSettings",
    "ServerSettings",
    "SpaceSettings",
    "StudyConfig",
    "TensorSpec",
    "Transfer",
    "WorkerSettings",
    "load_config",
    "parse_config",
    "parse_yaml",
    "real_path",
    "resolve_storage",
]
