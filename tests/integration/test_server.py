"""The embedded Triton server and the ONNX runner model, for real."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.http as triton_http
from factories import lookup_model, save_graph, scalar_output_model
from onnx import TensorProto, helper
from served import settled_statistics

from tuner.errors import MeasurementError, ModelLoadError, ServerStartError
from tuner.measure import infer_samples, warm_up
from tuner.model import compare, reference_outputs
from tuner.model_info import read_model_info
from tuner.trial import InstanceKind, TrialSpec
from tuner.triton import RUNNER_SOURCE, build_model_config, server_version, to_pbtxt
from tuner.triton._embedded import EmbeddedServer
from tuner.triton._ports import Ports, free_port

SPEC = TrialSpec(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=2000, instance_count=2)


def _install(repository: Path, name: str, onnx_path: Path, spec: TrialSpec = SPEC) -> None:
    version = repository / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copy(onnx_path, version / "model.onnx")
    shutil.copy(RUNNER_SOURCE, version / "model.py")
    config = build_model_config(name, read_model_info(onnx_path), spec)
    (repository / name / "config.pbtxt").write_text(to_pbtxt(config))


def _two_io_model(path: Path) -> Path:
    """y = a + 1.5 (FP32, shape [N, 3]); n = b * 2 (INT64, shape [N]): several inputs, outputs and dtypes."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "c"], ["y"]),
            helper.make_node("Mul", ["b", "two"], ["n"]),
        ],
        "two_io",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N"]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("n", TensorProto.INT64, ["N"]),
        ],
        initializer=[
            helper.make_tensor("c", TensorProto.FLOAT, [1], [1.5]),
            helper.make_tensor("two", TensorProto.INT64, [1], [2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, digits_onnx: Path):
    root = tmp_path_factory.mktemp("server")
    repository = root / "repository"
    _install(repository, "digits_forest", digits_onnx)
    # A long queue delay, so the dynamic batcher surely stacks the concurrent requests.
    batching = TrialSpec(max_batch_size=16, dynamic_batching=True, max_queue_delay_us=300_000, instance_count=1)
    _install(repository, "two_io", _two_io_model(root / "two_io.onnx"), batching)
    with EmbeddedServer(root / "work", repository) as srv:
        yield srv


def test_serves_the_forest_with_batching(server: EmbeddedServer) -> None:
    from sklearn.datasets import load_digits

    server.load("digits_forest")
    client = triton_http.InferenceServerClient(server.http_url)
    images = load_digits().data[:8].astype(np.float32)
    request = triton_http.InferInput("float_input", list(images.shape), "FP32")
    request.set_data_from_numpy(images)
    result = client.infer("digits_forest", [request])
    probabilities = result.as_numpy("probabilities")
    labels = result.as_numpy("label").reshape(-1)
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    assert (probabilities.argmax(axis=1) == labels).all()
    assert (labels == load_digits().target[:8]).mean() >= 0.75


def test_runner_stacks_concurrent_requests_of_several_dtypes(server: EmbeddedServer) -> None:
    server.load("two_io")
    client = triton_http.InferenceServerClient(server.http_url, concurrency=8)
    pending = []
    for i in range(8):
        a = np.full((2, 3), float(i), dtype=np.float32)
        b = np.array([i, i + 1], dtype=np.int64)
        inputs = [triton_http.InferInput("a", [2, 3], "FP32"), triton_http.InferInput("b", [2, 1], "INT64")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b.reshape(2, 1))
        pending.append((i, client.async_infer("two_io", inputs)))
    for i, future in pending:
        result = future.get_result()
        np.testing.assert_allclose(result.as_numpy("y"), np.full((2, 3), i + 1.5, dtype=np.float32))
        assert result.as_numpy("n").reshape(-1).tolist() == [2 * i, 2 * (i + 1)]
    stats = settled_statistics(server, "two_io", inferences=16)
    assert int(stats["inference_count"]) == 16
    # Dynamic batching stacked some requests into one execution.
    assert int(stats["execution_count"]) <= 4


def test_refused_config_carries_tritons_message(server: EmbeddedServer) -> None:
    repository = server.repository
    config_path = repository / "digits_forest" / "config.pbtxt"
    good = config_path.read_text()
    bad_spec = TrialSpec(max_batch_size=4, dynamic_batching=False, max_queue_delay_us=0, instance_count=1,
                         kind=InstanceKind.GPU)
    config_path.write_text(to_pbtxt(build_model_config("digits_forest", read_model_info(
        repository / "digits_forest" / "1" / "model.onnx"), bad_spec)))
    try:
        with pytest.raises(ModelLoadError) as caught:
            server.load("digits_forest")
        assert "GPU" in str(caught.value) or "gpu" in str(caught.value)
    finally:
        config_path.write_text(good)
    server.load("digits_forest")  # the server goes on serving good configs
    assert server.is_ready()


def test_a_provider_the_build_lacks_is_refused_by_the_runner_naming_the_extras(server: EmbeddedServer) -> None:
    # What the pre-flight refuses where it sees the runner's environment; a CPU instance, so that the runner
    # itself (not Triton's instance placement) meets the CUDA provider this machine's OpenVINO build lacks.
    repository = server.repository
    config_path = repository / "digits_forest" / "config.pbtxt"
    good = config_path.read_text()
    cuda_spec = TrialSpec(max_batch_size=4, dynamic_batching=False, max_queue_delay_us=0, instance_count=1,
                          accelerator="cuda")
    config_path.write_text(to_pbtxt(build_model_config("digits_forest", read_model_info(
        repository / "digits_forest" / "1" / "model.onnx"), cuda_spec)))
    try:
        with pytest.raises(ModelLoadError) as caught:
            server.load("digits_forest")
        message = str(caught.value)
        assert "execution provider CUDAExecutionProvider is not available here" in message
        assert "available: OpenVINOExecutionProvider, CPUExecutionProvider" in message
        assert "the gpu extra" in message
    finally:
        config_path.write_text(good)
    server.load("digits_forest")
    assert server.is_ready()


def test_port_taken_is_a_start_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedServer(tmp_path / "work", tmp_path / "repository",
                                ports=Ports(http=port, grpc=free_port(), metrics=free_port()),
                                startup_timeout_s=20)
        with pytest.raises(ServerStartError, match="already in use"):
            server.start()
    assert not server.is_alive()
    # the port is free again: a server of the same work folder, whose log holds the line above, starts
    again = EmbeddedServer(tmp_path / "work", tmp_path / "repository", startup_timeout_s=60)
    try:
        again.start()
        assert again.is_ready()
    finally:
        again.stop()


def test_warm_up_sends_the_requests_it_says(server: EmbeddedServer, tmp_path: Path) -> None:
    from tuner.measure import warm_up

    server.load("two_io")
    before = int(server.model_statistics("two_io")["model_stats"][0]["inference_count"])
    info = read_model_info(server.repository / "two_io" / "1" / "model.onnx")
    warm_up(server.http_url, "two_io", info, requests=6, concurrency=3)
    after = int(settled_statistics(server, "two_io", inferences=before + 6)["inference_count"])
    assert after - before == 6


@pytest.mark.serial  # batches form from request timing, which other tests' load disturbs
def test_a_longer_queue_delay_forms_larger_batches(tmp_path: Path, digits_onnx: Path) -> None:
    from tuner.measure import EngineSettings, SweepPlan
    from tuner.workers import WorkerSetup
    from tuner.workers._worker import Worker

    setup = WorkerSetup(
        model_name="digits_forest", model_path=digits_onnx, model_info=read_model_info(digits_onnx),
        workdir=tmp_path / "worker", sweep=SweepPlan(fixed=(8,)), engine=EngineSettings(window_ms=400, max_windows=5),
    )
    batches = {}
    with Worker(setup) as worker:
        for delay in (0, 20_000):
            spec = TrialSpec(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=delay, instance_count=1)
            outcome = worker.evaluate(spec)
            assert outcome.error is None, outcome.error
            server = outcome.server["8"]
            assert server["requests"] > 0 and server["executions"] <= server["requests"]
            assert sum(int(size) * count for size, count in server["batch_sizes"].items()) == server["requests"]
            batches[delay] = server["mean_batch"]
    # With 8 requests in flight, a 20 ms window fills batches the 0 ms one does not wait for.
    assert batches[20_000] > batches[0] * 1.5, batches


def test_a_started_server_says_its_version(server: EmbeddedServer) -> None:
    version = server_version(server)
    assert version is not None and version.split(".")[0].isdigit()


def test_a_cpu_worker_leaves_a_measured_config_for_the_next_load_to_replace(tmp_path: Path, digits_onnx: Path) -> None:
    import time

    import psutil

    from tuner.measure import EngineSettings, SweepPlan
    from tuner.workers import WorkerSetup
    from tuner.workers._worker import Worker

    setup = WorkerSetup(
        model_name="digits_forest", model_path=digits_onnx, model_info=read_model_info(digits_onnx),
        workdir=tmp_path / "worker", sweep=SweepPlan(fixed=(2,)), engine=EngineSettings(window_ms=300, max_windows=3),
    )

    def stubs(worker: Worker) -> int:
        children = psutil.Process(worker.server.pid).children(recursive=True)
        return sum("stub" in c.name() for c in children if c.status() != psutil.STATUS_ZOMBIE)

    with Worker(setup) as worker:
        # an ONNX file's configs are the tuner's, whole: no stub per load to ask the runner for its config
        assert "--disable-auto-complete-config" in psutil.Process(worker.server.pid).cmdline()
        two = worker.evaluate(TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0, instance_count=2))
        assert two.error is None, two.error
        assert stubs(worker) == 2, "the measured config stays loaded"
        assert two.timings_s["unload_s"] < 0.5, "nothing waited for the instances to stop"
        one = worker.evaluate(
            TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0, instance_count=1, precision="fp16")
        )
        assert one.error is None and one.points[0].throughput > 0, one.error
        deadline = time.monotonic() + 30
        while stubs(worker) != 1 and time.monotonic() < deadline:  # the old instances retire in the background
            time.sleep(0.1)
        assert stubs(worker) == 1, "the load replaced the two instances with one"
        failed = worker.evaluate(TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0,
                                           instance_count=1, precision="int8"))  # a forest has no INT8 variant
        assert failed.error is not None
        assert stubs(worker) == 0, "a failed trial unloads what is there"


def test_the_shared_memory_a_killed_server_left_is_removed_when_it_starts_again(tmp_path: Path, digits_onnx: Path) -> None:
    import os
    import signal
    import stat

    from tuner.triton._process import SHM_FOLDER, shm_prefix

    repository = tmp_path / "repository"
    _install(repository, "digits_forest", digits_onnx)
    server = EmbeddedServer(tmp_path / "work", repository)
    prefix = shm_prefix(server.workdir)
    try:
        server.start()
        server.load("digits_forest")
        regions = sorted(SHM_FOLDER.glob(f"{prefix}*"))
        assert regions, "the python backend names its regions with the server's own prefix"
        # only this user reads the tensors (the server still serves so: test_serves_the_forest_with_batching)
        assert {stat.S_IMODE(r.stat().st_mode) for r in regions} == {0o600}
        os.killpg(server.pid, signal.SIGKILL)  # the server and its stubs, as the OOM killer or a timeout would
        server._process.wait()  # type: ignore[union-attr]
        assert all(r.exists() for r in regions), "a killed python backend removes none of its regions"

        server.start()  # started again after it died: what it left goes first
        assert not any(r.exists() for r in regions)
    finally:
        server.stop()
    assert not any(SHM_FOLDER.glob(f"{prefix}*")), "a stopped server leaves none"


#: The config the plan gives a model that cannot batch: one request at a time.
ONE_AT_A_TIME = TrialSpec(max_batch_size=1, dynamic_batching=False, max_queue_delay_us=0, instance_count=1)


def test_a_model_with_a_scalar_output_answers_each_request_as_onnx_runtime_does(server: EmbeddedServer, tmp_path: Path) -> None:
    onnx_path = scalar_output_model(tmp_path / "scalar.onnx")
    info = read_model_info(onnx_path)
    assert [t.name for t in info.unbatched] == ["stat"]
    _install(server.repository, "scalar_output", onnx_path, ONE_AT_A_TIME)
    server.load("scalar_output")
    samples = {"x": np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)}

    served = infer_samples(server.http_url, "scalar_output", info, samples)
    reference = reference_outputs(str(onnx_path), samples)

    assert reference["stat"].shape == (5,), "one statistic per sample"
    np.testing.assert_allclose(served["stat"].reshape(-1), samples["x"].mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(served["y"], np.maximum(samples["x"], 0.0))
    assert compare(info, reference, served)["accuracy_drop"] == 0.0


def test_warm_up_sends_what_the_load_generator_sends_first(server: EmbeddedServer, tmp_path: Path) -> None:
    # random ids reach past the table of this lookup; the load's samples (load.input_data) and zeros do not.
    # One instance: error answers from two at once crash the python backend now and then (SIGSEGV with
    # boost::interprocess::lock_exception, triton-inference-server/server#8882), and the module's server with it
    onnx_path = lookup_model(tmp_path / "lookup.onnx", categories=4)
    info = read_model_info(onnx_path)
    _install(server.repository, "lookup", onnx_path, ONE_AT_A_TIME)
    server.load("lookup")
    samples = {"cat": np.array([[0, 1, 3], [2, 2, 2]], dtype=np.int64)}

    warm_up(server.http_url, "lookup", info, requests=4, concurrency=2, samples=samples)
    warm_up(server.http_url, "lookup", info, requests=4, concurrency=2, input_data="zero")
    with pytest.raises(MeasurementError, match="warm-up request failed"):
        warm_up(server.http_url, "lookup", info, requests=4, concurrency=2)


def _kept_model(path: Path) -> Path:
    """kept = the indices of x's elements above 0.5, one row each ([K, 2]: K is the data's), and y = x:
    an output whose first dimension does not follow the batch, though the file says it is free."""
    graph = helper.make_graph(
        [
            helper.make_node("Greater", ["x", "half"], ["above"]),
            helper.make_node("NonZero", ["above"], ["where"]),
            helper.make_node("Transpose", ["where"], ["kept"], perm=[1, 0]),
            helper.make_node("Identity", ["x"], ["y"]),
        ],
        "kept",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("kept", TensorProto.INT64, ["K", 2]), helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])],
    )
    return save_graph(graph, path)


def test_requests_stacked_into_a_batch_whose_output_the_data_sizes_are_answered_each_alone(server: EmbeddedServer, tmp_path: Path) -> None:
    onnx_path = _kept_model(tmp_path / "kept.onnx")
    batching = TrialSpec(max_batch_size=16, dynamic_batching=True, max_queue_delay_us=300_000, instance_count=1)
    _install(server.repository, "kept", onnx_path, batching)
    server.load("kept")
    client = triton_http.InferenceServerClient(server.http_url, concurrency=4)
    # 3 + 0 + 1 + 2 rows kept: not one per request, so the stacked answer cannot be split by request
    rows = [[0.9, 0.9, 0.9], [0.1, 0.1, 0.1], [0.9, 0.1, 0.1], [0.9, 0.9, 0.1]]
    samples = [np.array([row], dtype=np.float32) for row in rows]
    pending = []
    for sample in samples:
        request = triton_http.InferInput("x", [1, 3], "FP32")
        request.set_data_from_numpy(sample)
        pending.append(client.async_infer("kept", [request]))

    for sample, future in zip(samples, pending):
        kept = future.get_result().as_numpy("kept")
        assert kept.tolist() == np.argwhere(sample > 0.5).tolist(), "each request's own answer"
    stats = settled_statistics(server, "kept", inferences=4)
    assert int(stats["execution_count"]) < 4, "the batcher stacked requests, as the config lets it"


def test_answers_whose_sizes_differ_by_sample_are_checked_sample_by_sample(server: EmbeddedServer, tmp_path: Path) -> None:
    onnx_path = _kept_model(tmp_path / "kept_each.onnx")
    info = read_model_info(onnx_path)
    _install(server.repository, "kept_each", onnx_path, ONE_AT_A_TIME)
    server.load("kept_each")
    samples = {"x": np.array([[0.9, 0.9, 0.9], [0.1, 0.1, 0.1], [0.9, 0.1, 0.1]], dtype=np.float32)}

    served = infer_samples(server.http_url, "kept_each", info, samples)
    reference = reference_outputs(str(onnx_path), samples)

    assert [np.size(a) for a in served["kept"]] == [np.size(a) for a in reference["kept"]] == [6, 0, 2]
    result = compare(info, reference, served)
    assert result["accuracy_drop"] == 0.0 and result["samples"] == 3
