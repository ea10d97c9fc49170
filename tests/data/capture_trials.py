"""Writes trials of real studies to measured_trials.json, the data tests/test_explain.py reads.

    python tests/data/capture_trials.py sqlite:///tuner.db digits-rules:5 digits-report:2 sqlite:///b.db x:0

Each entry holds what the explanation rules read from storage: the trial's state, fail reason,
params, spec, metrics (the judged point), constraints, the study's bounds, the server's windows
by concurrency and the measured curve.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tuner.reports._explain import bounds_of
from tuner.storage import Store
from tuner.storage import _stored as rs


def capture(args: list[str]) -> list[dict]:
    """``args``: storage URLs, each followed by the ``study:number`` items to take from it."""
    store = None
    entries = []
    for item in args:
        if "://" in item:
            store = Store(item, must_exist=True)
            continue
        assert store is not None, "name a storage URL first"
        name, number = item.rsplit(":", 1)
        study = store.load_study(name)
        trial = study.trials[int(number)]
        record = store.records([trial._trial_id]).get(trial._trial_id)
        attrs = trial.user_attrs
        entries.append({
            "source": f"study {name} ({study.user_attrs.get(rs.ATTR_STUDY_FILE, {}).get('model', {}).get('name')}), "
                      f"trial {trial.number}",
            "state": trial.state.name,
            "fail_reason": attrs.get(rs.ATTR_FAIL_REASON),
            "params": trial.params,
            "spec": record.spec if record else None,
            "metrics": attrs.get(rs.ATTR_METRICS),
            "constraints": trial.constraints,
            "bounds": bounds_of(study),
            "server": attrs.get(rs.ATTR_SERVER),
            "accuracy": attrs.get(rs.ATTR_ACCURACY),
            "curve": [p.as_dict() for p in record.points] if record else [],
        })
    return entries


if __name__ == "__main__":
    out = Path(__file__).with_name("measured_trials.json")
    out.write_text(json.dumps(capture(sys.argv[1:]), indent=1) + "\n")
    print(f"wrote {out}")
