"""Where studies live: Optuna's storage and the tuner's own tables, and their typed read side.

    store = Store(url)                                   # opens (and migrates) the database
    stored = read_study(store.load_study(name), store)   # typed trials, bounds, constraint misses

``Store`` retries transient database errors; ``StudyLease`` keeps one driver per study. The
tuner's tables are migrated by Alembic (``tuner.storage.migrations``).
"""

from __future__ import annotations

from tuner.storage._lease import StudyLease, live_driver, refuse_if_driven
from tuner.storage._store import Store, TrialRecord, redact_url
from tuner.storage._stored import (
    ATTR_ACCURACY,
    ATTR_DEFAULT,
    ATTR_FAIL_REASON,
    ATTR_INTERRUPTED,
    ATTR_METRICS,
    ATTR_MODEL_BACKEND,
    ATTR_MODEL_DIGEST,
    ATTR_NO_VARIANT,
    ATTR_PRUNED_REASON,
    ATTR_REMEASURE_OF,
    ATTR_REUSED_FROM,
    ATTR_SERVER,
    ATTR_SERVER_RESTARTED,
    ATTR_SPEC_KEY,
    ATTR_STUDY_FILE,
    ATTR_TIMINGS,
    ATTR_VERIFICATIONS,
    ATTR_WARM_START,
    ATTR_WARM_START_FROM,
    ATTR_WORKER,
    ATTR_WORKER_CORES,
    ATTR_WORKERS,
    Bounds,
    ConstraintMiss,
    StoredStudy,
    StoredTrial,
    StudyInfo,
    bounds_text,
    misses,
    no_trial,
    point_of,
    read_info,
    read_study,
    read_trial,
    read_trials,
)

__all__ = [
    "ATTR_ACCURACY",
    "ATTR_DEFAULT",
    "ATTR_FAIL_REASON",
    "ATTR_INTERRUPTED",
    "ATTR_METRICS",
    "ATTR_MODEL_BACKEND",
    "ATTR_MODEL_DIGEST",
    "ATTR_NO_VARIANT",
    "ATTR_PRUNED_REASON",
    "ATTR_REMEASURE_OF",
    "ATTR_REUSED_FROM",
    "ATTR_SERVER",
    "ATTR_SERVER_RESTARTED",
    "ATTR_SPEC_KEY",
    "ATTR_STUDY_FILE",
    "ATTR_TIMINGS",
    "ATTR_VERIFICATIONS",
    "ATTR_WARM_START",
    "ATTR_WARM_START_FROM",
    "ATTR_WORKER",
    "ATTR_WORKERS",
    "ATTR_WORKER_CORES",
    "Bounds",
    "ConstraintMiss",
    "Store",
    "StoredStudy",
    "StoredTrial",
    "StudyInfo",
    "StudyLease",
    "TrialRecord",
    "bounds_text",
    "live_driver",
    "misses",
    "no_trial",
    "point_of",
    "read_info",
    "read_study",
    "read_trial",
    "read_trials",
    "redact_url",
    "refuse_if_driven",
]
