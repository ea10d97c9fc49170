"""Reading a finished study: tables, HTML and PNG reports, explanations, comparisons, export, verify.

    data = gather(study, store)             # StudyData: what every report shows
    write_html(data, path)
    export_trial(study, store, out_dir)     # the recommendation as a model repository
    verify_study(study, store)              # measures it again against what was stored

Reports read the stored study only (tuner.storage, tuner.study's verdict); export writes the
recommended config as a model repository, verify measures it again against what was stored.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tuner.reports._compare import comparison, comparison_json
from tuner.reports._data import gather, params_text
from tuner.reports._explain import explain_trial, step_compute_ms
from tuner.reports._export import export_trial, study_config
from tuner.reports._report import Curves, study_document
from tuner.reports._verify import MAX_REPEATS, choose_target, record, stored_verifications, verify_study

if TYPE_CHECKING:
    from tuner.reports._html import write_html
    from tuner.reports._png import write_pngs

# These modules load matplotlib and plotly: imported when one of their names is first used.
_LAZY = {
    "write_html": "tuner.reports._html",
    "write_pngs": "tuner.reports._png",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_REPEATS",
    "Curves",
    "choose_target",
    "comparison",
    "comparison_json",
    "explain_trial",
    "export_trial",
    "gather",
    "params_text",
    "record",
    "step_compute_ms",
    "stored_verifications",
    "study_config",
    "study_document",
    "verify_study",
    "write_html",
    "write_pngs",
]
