"""One answer everywhere: on a study with re-measured configs, the API, the CLI, the report and the
export name the same trial, the one tuner.study._verdict recommends, and not the best single load.

Each reader is used as a user would: the API over HTTP, the CLI as a subprocess, the report and the
export through their functions. The export's choice is read from ``tuner.reports._export.choose``, the part
of ``export_trial`` that picks the trial: the stored study has no model file to copy.
"""

from __future__ import annotations

import json
import subprocess

from api_helpers import REPO_ROOT, TUNER, ApiServer

from tuner.reports import _data as report_data
from tuner.reports import _export as export
from tuner.storage import Store, StoredStudy, read_study
from tuner.study import Recommendation, config_results, recommend


def _stored(storage_url: str, name: str) -> tuple[StoredStudy, int]:
    """The stored study and the trial tuner.reports._export chooses by default, read through one Store."""
    store = Store(storage_url)
    try:
        stored = read_study(store.load_study(name), store)
        return stored, export.choose(stored).trial.number
    finally:
        store.close()


def _report_recommended(storage_url: str, name: str) -> int | None:
    store = Store(storage_url)
    try:
        return report_data.gather(store.load_study(name), store, importances=False).recommended
    finally:
        store.close()


def _cli_recommended(storage_url: str, name: str) -> int | None:
    shown = subprocess.run([*TUNER, "show", name, "--storage", storage_url, "--json"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["recommended_trial"]


def _api_recommended(api_server: ApiServer, name: str) -> dict[str, int | None]:
    with api_server.client() as http:
        return {
            "recommendation": http.get(f"/studies/{name}/recommendation").json()["trial"],
            "pareto": http.get(f"/studies/{name}/pareto").json()["recommended_trial"],
            "summary": http.get(f"/studies/{name}").json()["recommended_trial"],
        }


def _expected(stored: StoredStudy) -> Recommendation:
    rec = recommend(config_results(stored.trials, stored.info), stored.info)
    assert rec is not None
    return rec


def test_api_cli_report_and_export_name_the_recommended_config(api_server: ApiServer, remeasured_study: str,
                                                                storage_url: str) -> None:
    stored, exported = _stored(storage_url, remeasured_study)
    expected = _expected(stored)
    best_load = max((t for t in stored.trials if t.feasible), key=lambda t: t.values[0])
    # Judging by single loads would name another config: the answer below can tell the two rules apart.
    assert best_load.number not in {t.number for t in expected.config.loads}
    assert len(expected.config.loads) > 1  # the recommended config was re-measured
    answers = {
        **{f"api {route}": number for route, number in _api_recommended(api_server, remeasured_study).items()},
        "cli show --json": _cli_recommended(storage_url, remeasured_study),
        "report": _report_recommended(storage_url, remeasured_study),
        "export": exported,
    }
    assert answers == dict.fromkeys(answers, expected.number)
