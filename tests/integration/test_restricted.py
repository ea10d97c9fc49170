"""The servers the tuner starts load no model for a client without their secret header, for real.

An intruder is another local process that reaches a worker's ports on 127.0.0.1 and sends a
model-load request carrying a python-backend ``model.py``; that model.py, once run, writes a
marker file. Refused, it never runs; sent with the server's own header (the control), it does.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from optuna.trial import TrialState
from test_optimize import TUNER, _wait_for_running_trial, load, servers_under, study_file
from tritonclient.utils import InferenceServerException

from tuner.errors import MeasurementError
from tuner.measure import EngineSettings, PerfAnalyzer, request_samples
from tuner.measure._warmup import infer_inputs
from tuner.model_info import read_model_info
from tuner.trial import TrialSpec
from tuner.triton import RUNNER_SOURCE, Access, build_model_config, to_pbtxt, with_access
from tuner.triton._embedded import EmbeddedServer

INTRUDER_CONFIG = json.dumps({
    "name": "intruder", "backend": "python", "max_batch_size": 0,
    "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1]}],
    "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}],
})


def intruder_files(marker: Path) -> dict[str, bytes]:
    """A python-backend model whose code, once the server imports it, writes ``marker``."""
    source = f"""
from pathlib import Path
Path({str(marker)!r}).write_text("the intruder's code ran")


class TritonPythonModel:
    def execute(self, requests):
        return []
"""
    return {"file:1/model.py": source.encode()}


def attempts(http_url: str, grpc_url: str, marker: Path) -> dict[str, str]:
    """Triton's answer to each unauthenticated load of the intruder: no header, then a wrong one."""
    files = intruder_files(marker)
    http = triton_http.InferenceServerClient(http_url)
    grpc = triton_grpc.InferenceServerClient(grpc_url)
    tries = {
        "http, no header": lambda: http.load_model("intruder", config=INTRUDER_CONFIG, files=files),
        "http, wrong header": lambda: http.load_model(
            "intruder", config=INTRUDER_CONFIG, files=files, headers={"tuner-key": "guess"}),
        "grpc, no header": lambda: grpc.load_model("intruder", config=INTRUDER_CONFIG, files=files),
        "grpc, wrong header": lambda: grpc.load_model(
            "intruder", config=INTRUDER_CONFIG, files=files, headers={"triton-grpc-protocol-tuner-key": "guess"}),
    }
    answers = {}
    try:
        for name, attempt in tries.items():
            try:
                attempt()
                answers[name] = "loaded"
            except InferenceServerException as exc:
                answers[name] = exc.message() or str(exc)
    finally:
        http.close()
        grpc.close()
    return answers


def _option(cmdline: list[str], name: str) -> str:
    return next((arg.split("=", 1)[1] for arg in cmdline if arg.startswith(f"--{name}=")), "")


def test_a_running_study_refuses_an_unauthenticated_load(tmp_path: Path, digits_onnx: Path) -> None:
    path = study_file(tmp_path, digits_onnx, name="guarded")
    marker = tmp_path.parent / f"{tmp_path.name}-intruder-ran"
    process = subprocess.Popen([*TUNER, "optimize", str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_running_trial(tmp_path, "guarded", process)
        (server,) = [p for p in servers_under(tmp_path) if p.name() == "tritonserver"]
        cmdline = server.cmdline()
        http_url = f"127.0.0.1:{_option(cmdline, 'http-port')}"
        grpc_url = f"127.0.0.1:{_option(cmdline, 'grpc-port')}"
        answers = attempts(http_url, grpc_url, marker)
        # The secret, as any local user reads it from /proc (the documented limit), to look for it on disk.
        secret = _option(cmdline, "http-restricted-api").rpartition("=")[2]
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert answers == {
        "http, no header": "This API is restricted, expecting header 'tuner-key'",
        "http, wrong header": "This API is restricted, expecting header 'tuner-key'",
        "grpc, no header": "This protocol is restricted, expecting header 'triton-grpc-protocol-tuner-key'",
        "grpc, wrong header": "This protocol is restricted, expecting header 'triton-grpc-protocol-tuner-key'",
    }
    assert not marker.exists(), "the intruder's model.py ran"
    assert process.returncode == 0, stderr
    study = load(tmp_path, "guarded")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert len(secret) >= 32
    assert secret not in stdout + stderr
    leaks = [str(f) for f in tmp_path.rglob("*") if f.is_file() and secret.encode() in f.read_bytes()]
    assert not leaks, f"the server's secret was written to {leaks}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, digits_onnx: Path):
    """An embedded server with the digits forest loaded, as a worker has it."""
    root = tmp_path_factory.mktemp("restricted")
    version = root / "repository" / "digits_forest" / "1"
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(digits_onnx.read_bytes())
    (version / "model.py").write_bytes(RUNNER_SOURCE.read_bytes())
    spec = TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0, instance_count=1)
    config = build_model_config("digits_forest", read_model_info(digits_onnx), spec)
    (root / "repository" / "digits_forest" / "config.pbtxt").write_text(to_pbtxt(config))
    with EmbeddedServer(root / "work", root / "repository") as server:
        server.load("digits_forest")
        yield server, root


def test_with_the_servers_header_the_same_load_runs_the_code(served: tuple[EmbeddedServer, Path]) -> None:
    """The control: the payload the study's server refused is one that runs when let in."""
    server, root = served
    marker = root / "intruder-ran"
    assert set(attempts(server.http_url, server.grpc_url, marker).values()) != {"loaded"}
    assert not marker.exists()
    client = with_access(triton_grpc.InferenceServerClient(server.grpc_url), server.access)
    client.load_model("intruder", config=INTRUDER_CONFIG, files=intruder_files(marker))
    client.unload_model("intruder")
    client.close()
    assert marker.read_text() == "the intruder's code ran"
    deadline = time.monotonic() + 60  # the unload finishes in the background; the server is ready after it
    while not server.is_ready() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_health_metadata_statistics_and_inference_stay_open(served: tuple[EmbeddedServer, Path]) -> None:
    server, _ = served
    http = triton_http.InferenceServerClient(server.http_url)
    info = read_model_info(Path(server.repository / "digits_forest" / "1" / "model.onnx"))
    assert http.is_server_ready() and http.is_model_ready("digits_forest")
    assert http.get_model_metadata("digits_forest")["name"] == "digits_forest"
    answer = http.infer("digits_forest", infer_inputs(info, request_samples(info, "random", None)[0]))
    assert answer.as_numpy(info.outputs[0].name) is not None
    # Triton counts a request after answering it: its count may lag the answer by a moment
    deadline = time.monotonic() + 10
    while http.get_inference_statistics("digits_forest")["model_stats"][0]["inference_count"] == 0:
        assert time.monotonic() < deadline, "the statistics never counted the request"
        time.sleep(0.05)
    with pytest.raises(InferenceServerException, match="restricted"):
        http.get_model_config("digits_forest")
    with pytest.raises(InferenceServerException, match="restricted"):
        http.get_model_repository_index()
    http.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_measures_with_the_header_only(
    served: tuple[EmbeddedServer, Path], tmp_path: Path, protocol: str
) -> None:
    server, _ = served
    settings = EngineSettings(window_ms=300, max_windows=4, protocol=protocol, stability_percentage=50)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    point = PerfAnalyzer(url, tmp_path / "perf", settings, access=server.access).run("digits_forest", 1)
    assert point.throughput > 0
    with pytest.raises(MeasurementError, match="restricted"):
        PerfAnalyzer(url, tmp_path / "perf", settings, access=None).run("digits_forest", 1)
    with pytest.raises(MeasurementError, match="restricted"):
        PerfAnalyzer(url, tmp_path / "perf", settings, access=Access("tuner-key", "guess")).run("digits_forest", 1)


def test_the_secret_changes_at_each_start_and_stays_out_of_the_log(
    served: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, _ = served
    assert server.access is not None
    assert server.access.value not in server.log_path.read_text()
    restricting = ("--grpc-restricted-protocol=", "--http-restricted-api=")
    own = [arg for arg in psutil.Process(server.pid).cmdline() if arg.startswith(restricting)]
    assert own == server.access.server_args()
    other = EmbeddedServer(tmp_path / "work", tmp_path / "repository")
    with other:
        assert other.access is not None and other.access.value != server.access.value
    assert other.access.value not in other.log_path.read_text()


def test_perf_analyzer_passes_the_tensors_through_shared_memory_when_asked(
    served: tuple[EmbeddedServer, Path], tmp_path: Path, digits_onnx: Path
) -> None:
    """``load.shared_memory: system``: perf_analyzer registers its regions (a restricted protocol, so with
    the server's header) and the server reads the requests from them."""
    import threading

    from tuner.measure import output_region_bytes

    server, _ = served
    assert server.access is not None
    size = output_region_bytes(read_model_info(digits_onnx))
    settings = EngineSettings(
        window_ms=300, max_windows=4, stability_percentage=50, shared_memory="system", output_bytes=size
    )
    regions: list[str] = []
    done = threading.Event()

    def status() -> list[dict]:
        # a client of its own in each thread: the HTTP client's gevent hub belongs to the thread that made it
        http = with_access(triton_http.InferenceServerClient(server.http_url), server.access)
        try:
            return http.get_system_shared_memory_status()
        finally:
            http.close()

    def watch() -> None:
        while not done.is_set() and not regions:
            regions.extend(region["name"] for region in status())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        point = PerfAnalyzer(server.grpc_url, tmp_path / "perf", settings, access=server.access).run("digits_forest", 2)
    finally:
        done.set()
        watcher.join()
    assert point.throughput > 0
    assert regions, "perf_analyzer registered no shared memory region"
    assert status() == [], "the run left its regions registered"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_engine_unregisters_the_regions_a_run_left_and_no_other(
    served: tuple[EmbeddedServer, Path], tmp_path: Path, protocol: str
) -> None:
    """Triton 2.51 refuses to unregister a region a request still holds, so perf_analyzer's own clean-up
    can leave its regions on a loaded machine; the engine unregisters those it names as perf_analyzer
    does (key = "/" + name), and leaves a region someone else named otherwise."""
    server, _ = served
    client = with_access(triton_grpc.InferenceServerClient(server.grpc_url), server.access)
    for name, key in (("float_input_0_0", "/float_input_0_0"), ("label", "/label"), ("theirs", "/someone-else")):
        (Path("/dev/shm") / key[1:]).write_bytes(bytes(64))
        client.register_system_shared_memory(name, key, 64)
    url = server.http_url if protocol == "http" else server.grpc_url
    settings = EngineSettings(shared_memory="system", output_bytes=64, protocol=protocol)
    try:
        PerfAnalyzer(url, tmp_path / "perf", settings, access=server.access)._release_regions()
        left = client.get_system_shared_memory_status(as_json=True).get("regions", {})
        assert sorted(left) == ["theirs"]
    finally:
        client.unregister_system_shared_memory()
        client.close()
        for key in ("float_input_0_0", "label", "someone-else"):
            (Path("/dev/shm") / key).unlink(missing_ok=True)
