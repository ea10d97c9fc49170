"""`tuner report`, `export`, `compare` and the explanations, on two real short studies.

``digits-a``: four batching x instance configs of digits_forest, all feasible. ``digits-b``: FP32, FP16
and INT8 under an impossible p99 limit: INT8 FAILs (a forest has nothing to quantize) and every
measured config is infeasible. Both are measured by the real Triton server and perf_analyzer.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tuner.config import LoadSettings
from tuner.storage import read_study
from tuner.study import ConfigResult, config_results, recommend

TUNER = [sys.executable, "-m", "tuner.cli"]
BLUE, GREY = "rgb(31, 119, 180)", "rgb(170, 170, 170)"  # tuner.reports._charts.FEASIBLE and INFEASIBLE as drawn
# No fresh loads of the best configs at the end and no retries of busy windows, where the tuner has them:
# the tests read the report, not the recommendation's confidence.
# every config measured in full, under a tiny budget too
_LOAD = {"remeasure": {"top": 0}, "contamination_retries": 0, "early_stop": {"enabled": False}}
_QUICK = {k: v for k, v in _LOAD.items() if k in LoadSettings.model_fields}


@dataclass(frozen=True)
class Studies:
    folder: Path
    storage: str
    a: optuna.Study
    b: optuna.Study


def _configs(study: optuna.Study) -> list[ConfigResult]:
    stored = read_study(study)
    return config_results(stored.trials, stored.info)


def _recommended(study: optuna.Study) -> ConfigResult | None:
    """The recommended config, as every reader names it (tuner.study._verdict.recommend)."""
    stored = read_study(study)
    rec = recommend(config_results(stored.trials, stored.info), stored.info)
    return rec.config if rec else None


def _study_file(folder: Path, onnx: Path, name: str, space: dict, n_trials: int, **extra: object) -> Path:
    data = {
        "study": name,
        "storage": "sqlite:///tuner.db",
        "model": {"name": "digits_forest", "path": str(onnx)},
        "workers": {"backend": "local"},
        "search": {"sampler": "grid", "n_trials": n_trials, "space": space},
        "load": {"concurrency": [1, 4], "measurement_window_ms": 400, "max_windows": 3, "stability_percentage": 50,
                 "warmup_requests": 2, **_QUICK},
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _tuner(*args: object, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TUNER, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, digits_onnx: Path) -> Studies:
    folder = tmp_path_factory.mktemp("report")
    batching = {"max_batch_size": [8], "dynamic_batching": [False, True], "max_queue_delay_us": 0,
                "instance_count": [1, 2]}
    a = _study_file(folder, digits_onnx, "digits-a", batching, n_trials=5)
    b = _study_file(folder, digits_onnx, "digits-b", {**batching, "dynamic_batching": [False], "instance_count": 1,
                                                      "precision": ["fp32", "fp16", "int8"]}, n_trials=3,
                    constraints={"latency_p99_ms": {"max": 0.001}})
    for path in (a, b):
        result = _tuner("optimize", path, cwd=folder)
        assert result.returncode == 0, result.stderr + result.stdout
    storage = f"sqlite:///{folder / 'tuner.db'}"
    return Studies(folder, storage, optuna.load_study(study_name="digits-a", storage=storage),
                   optuna.load_study(study_name="digits-b", storage=storage))


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium here (scripts/test.sh installs Debian's `chromium` where apt-get can)")


def _rendered(html: Path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium has it."""
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000", "--dump-dom",
         html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _chart(dom: str, div_id: str) -> str:
    """The rendered markup of one chart's div (up to the next chart's)."""
    start = dom.index(f'id="{div_id}"')
    following = [dom.find(f'id="{other}"', start + 1) for other in
                 ("pareto", "curves", "no-curves", "breakdown", "batches", "resources", "importances", "accuracy",
                  "configs", "trials")]
    end = min([i for i in following if i > start] or [len(dom)])
    return dom[start:end]


_POINT = re.compile(r'<path class="point[^"]*"[^>]*fill: (rgb\([^)]*\))')


def _markers(chart: str) -> list[str]:
    """The fill colour of each scatter marker drawn in a rendered Plotly chart (an empty trace draws none)."""
    return _POINT.findall(chart)


def _markers_per_trace(chart: str) -> list[list[str]]:
    return [_POINT.findall(trace) for trace in chart.split('<g class="trace scatter')[1:]]


def _report(studies: Studies, name: str) -> Path:
    out = studies.folder / f"{name}.html"
    result = _tuner("report", name, "--storage", studies.storage, "-o", out, cwd=studies.folder)
    assert result.returncode == 0, result.stderr + result.stdout
    return out


def test_html_report_renders_the_pareto_front_in_chromium(studies: Studies) -> None:
    html = _report(studies, "digits-a")
    text = html.read_text()
    assert "<script src=" not in text, "the page must open offline"
    dom = _rendered(html)
    pareto = _chart(dom, "pareto")
    assert "main-svg" in pareto, "Plotly did not draw the chart"
    markers = _markers(pareto)
    assert len(markers) == len(_configs(studies.a)) >= 4, "one marker per measured config"
    assert set(markers) == {BLUE}, "every config is feasible"
    recommended = _recommended(studies.a).number
    assert f"recommended (trial {recommended})" in pareto and "default (trial 0)" in pareto
    for chart in ("curves", "breakdown", "batches", "resources", "importances"):
        assert "main-svg" in _chart(dom, chart), chart
    # Two concurrencies per trial: the curves chart has two markers per top config drawn.
    assert all(len(points) == 2 for points in _markers_per_trace(_chart(dom, "curves")))
    assert "data-rule=" in dom, "no trial reading in the page"


def test_report_of_a_study_with_failures_greys_the_infeasible(studies: Studies) -> None:
    dom = _rendered(_report(studies, "digits-b"))
    states = [t.state for t in studies.b.trials]
    assert TrialState.FAIL in states and TrialState.COMPLETE in states
    markers = _markers(_chart(dom, "pareto"))
    assert len(markers) == len(_configs(studies.b)) and set(markers) == {GREY}
    assert "No feasible config" in dom
    configs = html.unescape(_chart(dom, "configs"))
    assert "infeasible: latency_p99_ms" in configs and "> max 0.001" in configs
    trials = _chart(dom, "trials")
    assert "no INT8 variant" in trials and "Infeasible: p99 latency" in trials


def test_png_charts(studies: Studies) -> None:
    from PIL import Image

    out = studies.folder / "png"
    result = _tuner("report", "digits-a", "--storage", studies.storage, "--format", "png", "-o", out,
                    cwd=studies.folder)
    assert result.returncode == 0, result.stderr
    for name in ("pareto", "curves", "breakdown", "batches"):
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and image.width > 500 and image.height > 300


def test_show_and_the_api_explain_each_trial(studies: Studies) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings

    complete = next(t for t in studies.b.trials if t.state == TrialState.COMPLETE)
    shown = _tuner("show", "digits-b", "--storage", studies.storage, "--trial", complete.number, cwd=studies.folder)
    assert "What the numbers say" in shown.stdout and "Infeasible: p99 latency" in shown.stdout
    failed = next(t for t in studies.b.trials if t.state == TrialState.FAIL)
    document = json.loads(_tuner("show", "digits-b", "--storage", studies.storage, "--json", cwd=studies.folder).stdout)
    assert document["trials"][failed.number]["explanations"][0]["rule"] == "failed"

    with TestClient(create_app(ApiSettings.from_env(studies.storage)), base_url="http://localhost") as client:
        detail = client.get(f"/studies/digits-b/trials/{complete.number}").json()
    rules = [e["rule"] for e in detail["explanations"]]
    assert rules[0] == "constraint" and "over its limit of 0.001 ms" in detail["explanations"][0]["text"]


def test_export_serves_in_a_fresh_triton(studies: Studies, tmp_path: Path, digits_onnx: Path) -> None:
    import tritonclient.http as triton_http
    from sklearn.datasets import load_digits

    from tuner.triton._embedded import EmbeddedServer

    out = tmp_path / "deploy"
    result = _tuner("export", "digits-a", out, "--storage", studies.storage, cwd=studies.folder)
    assert result.returncode == 0, result.stderr
    recommended = _recommended(studies.a).representative
    model = out / "digits_forest"
    assert sorted(p.name for p in model.rglob("*") if p.is_file()) == ["config.pbtxt", "model.onnx", "model.py"]
    assert (model / "1" / "model.onnx").read_bytes() == digits_onnx.read_bytes()
    readme = (out / "README.md").read_text()
    assert f"trial {recommended.number} of study digits-a" in readme
    assert f"{recommended.values[0]:.4g} infer/s" in readme
    assert "perf_analyzer -m digits_forest" in readme and "--measurement-interval 400" in readme

    digits = load_digits()
    samples = digits.data[:8].astype(np.float32)  # the config's max_batch_size
    with EmbeddedServer(tmp_path / "server", out) as server:
        server.load("digits_forest")
        client = triton_http.InferenceServerClient(server.http_url)
        request = triton_http.InferInput("float_input", list(samples.shape), "FP32")
        request.set_data_from_numpy(samples)
        labels = client.infer("digits_forest", [request]).as_numpy("label").reshape(-1)
        client.close()
    assert (labels == digits.target[:8]).mean() >= 0.75

    again = _tuner("export", "digits-a", out, "--storage", studies.storage, cwd=studies.folder)
    assert again.returncode == 2 and "already exists" in again.stderr
    failed = next(t for t in studies.b.trials if t.state == TrialState.FAIL)
    refused = _tuner("export", "digits-b", tmp_path / "x", "--trial", failed.number, "--storage", studies.storage,
                     cwd=studies.folder)
    assert refused.returncode == 2 and "FAIL" in refused.stderr


def test_export_rebuilds_the_variant_of_the_trial(studies: Studies, tmp_path: Path, digits_onnx: Path) -> None:
    from tuner.model import build_variant

    fp16 = next(t for t in studies.b.trials if t.params.get("precision") == "fp16" and t.state == TrialState.COMPLETE)
    result = _tuner("export", "digits-b", tmp_path / "fp16", "--trial", fp16.number, "--storage", studies.storage,
                    cwd=studies.folder)
    assert result.returncode == 0, result.stderr
    exported = (tmp_path / "fp16" / "digits_forest" / "1" / "model.onnx").read_bytes()
    assert exported != digits_onnx.read_bytes()
    assert exported == build_variant(digits_onnx, "fp16", tmp_path / "variants").read_bytes()


def test_export_under_a_latency_budget_picks_the_fastest_point_within_it(studies: Studies, tmp_path: Path) -> None:
    from tuner.reports import Curves
    from tuner.storage import Store

    store = Store(studies.storage)
    stored = read_study(studies.a, store)
    p99s = sorted(p.latency_p99_ms for t in stored.trials if t.complete for p in t.curve)
    budget = p99s[len(p99s) // 2]
    found = Curves(config_results(stored.trials, stored.info), stored.info.bounds).best(max_p99_ms=budget)
    assert found is not None and found.point.latency_p99_ms <= budget
    result = _tuner("export", "digits-a", tmp_path / "budget", "--max-p99-ms", budget, "--storage", studies.storage,
                    cwd=studies.folder)
    assert result.returncode == 0, result.stderr
    assert f"exported trial {found.trial.number} " in result.stdout
    assert f"concurrency {found.point.concurrency}" in result.stdout


def test_compare_puts_the_fronts_side_by_side(studies: Studies) -> None:
    result = _tuner("compare", "digits-a", "digits-b", "--storage", studies.storage, cwd=studies.folder)
    assert result.returncode == 0, result.stderr
    assert "digits-a: Pareto front" in result.stdout and "digits-b: Pareto front" in result.stdout
    assert "no feasible config" in result.stdout and "Recommendations" in result.stdout
    document = json.loads(_tuner("compare", "digits-a", "digits-b", "--storage", studies.storage, "--json",
                                 cwd=studies.folder).stdout)
    assert document["a"]["recommended_trial"] == _recommended(studies.a).number
    assert document["b"]["recommended_trial"] is None and document["b"]["pareto_front"] == []
