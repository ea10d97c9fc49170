"""Trials stopped after their screen read as PRUNED through the API: counted apart, with their reason."""

from __future__ import annotations

from pathlib import Path

from api_helpers import ApiServer, unique
from scripted import ScriptedPool, ScriptedRunner

from tuner.config import parse_config

#: p99 is 1000 / throughput: instance counts 2 and 4 reach a p99 over twice the 10 ms budget.
SCRIPT = {1: (100.0, 1.0), 2: (40.0, 1.0), 3: (110.0, 1.0), 4: (45.0, 1.0)}


def test_pruned_trials_are_counted_and_read_with_their_reason(api_server: ApiServer, storage_url: str,
                                                              digits_onnx: Path, tmp_path: Path) -> None:
    name = unique("api-pruned")
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

    with api_server.client() as http:
        counts = http.get(f"/studies/{name}").json()["trials"]
        page = http.get(f"/studies/{name}/trials", params={"state": "PRUNED"}).json()
        pruned = [http.get(f"/studies/{name}/trials/{t['number']}").json() for t in page["items"]]

    # the default config (one instance) is measured in full; 2 and 4 stop after their screen
    assert counts["PRUNED"] == page["total"] == 2 and counts["FAIL"] == 0
    assert counts["COMPLETE"] == 2 and counts["total"] == 4
    # the page says why each stopped, as the detail does: no request per trial to find out
    assert [t["pruned_reason"] for t in page["items"]] == [t["pruned_reason"] for t in pruned]
    for trial in pruned:
        assert trial["state"] == "PRUNED" and trial["fail_reason"] is None
        assert "ms in the screening window" in trial["pruned_reason"] and "the 10 ms budget" in trial["pruned_reason"]
        assert [p["concurrency"] for p in trial["points"]] == [8], "the screen's point"
        assert trial["explanations"][0]["rule"] == "pruned"
