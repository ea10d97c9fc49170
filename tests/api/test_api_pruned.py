"""Trials stopped after their screen read as PRUNED through the API, and interrupted ones as interrupted:
counted apart, with their reason."""

from __future__ import annotations

from pathlib import Path

from api_helpers import ApiServer, unique
from scripted import ScriptedPool, ScriptedRunner

from tuner.config import parse_config
from tuner.storage import ATTR_INTERRUPTED, Store

#: p99 is 1000 / throughput: instance counts 2 and 4 reach a p99 over twice the 10 ms budget.
SCRIPT = {1: (100.0, 1.0), 2: (40.0, 1.0), 3: (110.0, 1.0), 4: (45.0, 1.0)}


def _scripted_study(name: str, storage_url: str, digits_onnx: Path, tmp_path: Path) -> None:
    cfg = parse_config({
        "study": name, "storage": storage_url,
        "model": {"name": "digits_forest", "path": str(digits_onnx)},
        "workers": {"backend": "local", "cpus_per_worker": 2},
        "search": {"sampler": "grid", "n_trials": 4, "seed": 1,
                   "space": {"instance_count": [1, 2, 3, 4], "max_batch_size": 1, "dynamic_batching": False,
                             "max_queue_delay_us": 0}},
        "constraints": {"latency_p99_ms": {"max": 10}},
        "load": {"concurrency": [8], "remeasure": {"loads": 0}},
    }, tmp_path)
    ScriptedRunner(cfg, ScriptedPool(SCRIPT)).run()


def test_pruned_trials_are_counted_and_read_with_their_reason(api_server: ApiServer, storage_url: str,
                                                              digits_onnx: Path, tmp_path: Path) -> None:
    name = unique("api-pruned")
    _scripted_study(name, storage_url, digits_onnx, tmp_path)

    with api_server.client() as http:
        counts = http.get(f"/studies/{name}").json()["trials"]
        page = http.get(f"/studies/{name}/trials", params={"state": "PRUNED"}).json()
        pruned = [http.get(f"/studies/{name}/trials/{t['number']}").json() for t in page["items"]]

    # the default config (one instance) is measured in full; 2 and 4 stop after their screen
    assert counts["PRUNED"] == page["total"] == 2 and counts["FAIL"] == 0
    assert counts["COMPLETE"] == 2 and counts["total"] == 4 and counts["interrupted"] == 0
    # the page says why each stopped, as the detail does: no request per trial to find out
    assert [t["pruned_reason"] for t in page["items"]] == [t["pruned_reason"] for t in pruned]
    for trial in pruned:
        assert trial["state"] == "PRUNED" and trial["fail_reason"] is None
        assert "ms in the screening window" in trial["pruned_reason"] and "the 10 ms budget" in trial["pruned_reason"]
        assert [p["concurrency"] for p in trial["points"]] == [8], "the screen's point"
        assert trial["explanations"][0]["rule"] == "pruned"


def test_interrupted_trials_are_counted_apart_from_failed_configs(api_server: ApiServer, storage_url: str,
                                                                 digits_onnx: Path, tmp_path: Path) -> None:
    import optuna

    name = unique("api-interrupted")
    _scripted_study(name, storage_url, digits_onnx, tmp_path)
    # a driver stopped by SIGTERM mid-trial stores it FAIL, marked interrupted; a config that failed is plain FAIL
    store = Store(storage_url)
    study = store.load_study(name)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={ATTR_INTERRUPTED: True}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    store.close()

    with api_server.client() as http:
        counts = http.get(f"/studies/{name}").json()["trials"]
        listed = {s["name"]: s["trials"] for s in http.get("/studies").json()}

    assert counts["FAIL"] == 2 and counts["interrupted"] == 1 and counts["total"] == 6
    assert listed[name] == counts
