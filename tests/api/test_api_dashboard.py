"""`tuner dashboard`: optuna-dashboard on the tuner's storage, read back through its own HTTP API."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import httpx
import optuna
from api_helpers import TUNER, RealStudy, free_port, stop, unique, wait_for

from api.dashboard import label_studies
from tuner.storage import Store


def test_the_dashboard_shows_the_study_the_api_ran(real_study: RealStudy, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*TUNER, "dashboard", "--storage", real_study.server.storage, "--port", str(port)],
            cwd=tmp_path, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/api/studies", process, log)
        summaries = httpx.get(f"{base}/api/studies", timeout=30).json()["study_summaries"]
        summary = next(s for s in summaries if s["study_name"] == real_study.name)
        detail = httpx.get(f"{base}/api/studies/{summary['study_id']}", timeout=30).json()
        assert detail["name"] == real_study.name
        assert detail["directions"] == ["maximize", "minimize"]
        assert detail["objective_names"] == ["throughput", "latency_p99_ms"]  # the charts' labels
        assert len(detail["trials"]) == 3 and all(t["state"] == "Complete" for t in detail["trials"])
        assert {"max_batch_size", "instance_count"} <= {p["name"] for p in detail["trials"][1]["params"]}
        assert any(a["key"] == "study_file" for a in detail["user_attrs"])
        with real_study.server.client() as http:
            pareto = http.get(f"/studies/{real_study.name}/pareto").json()
        # The API's front is over configs: each of its configs is one of the dashboard's best trials.
        best = {t["number"] for t in detail["best_trials"]}
        assert pareto["configs"] and all(c["trial"] in best for c in pareto["configs"])
    finally:
        stop(process)


def test_studies_without_metric_names_get_them_from_their_study_file(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    name = unique("unlabelled")
    study = optuna.create_study(study_name=name, storage=store.optuna, directions=["maximize", "minimize"])
    study.set_user_attr("study_file", {"objectives": [{"metric": "throughput", "direction": "maximize"},
                                                      {"metric": "latency_p50_ms", "direction": "minimize"}]})
    optuna.create_study(study_name="foreign", storage=store.optuna)  # not the tuner's: left alone
    assert label_studies(store) == [name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert store.load_study(name).metric_names == ["throughput", "latency_p50_ms"]
        assert store.load_study("foreign").metric_names is None
    assert label_studies(store) == []
    store.close()
