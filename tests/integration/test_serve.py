"""`tuner serve`: a repository served on the embedded server until Ctrl-C, as a user runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from factories import ensemble_repository

from tuner.errors import ConfigError
from tuner.triton._ports import free_port
from tuner.triton._serve import repository_models


def test_a_served_repository_answers_loads_nothing_for_its_clients_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    repository = ensemble_repository(tmp_path / "deploy")
    (repository / "quadrupler" / "1").mkdir()  # an ensemble's version folder is empty, as an export writes it
    port = free_port()
    command = [sys.executable, "-m", "tuner.cli", "serve", str(repository), "--port", str(port)]
    served = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert served.stdout is not None
        line = served.stdout.readline()  # printed once every model is loaded
        assert line.startswith(f"serving first, second, quadrupler from {repository}: HTTP 127.0.0.1:{port}"), line
        client = triton_http.InferenceServerClient(f"127.0.0.1:{port}")
        request = triton_http.InferInput("IN", [1, 4], "FP32")
        request.set_data_from_numpy(np.arange(4, dtype=np.float32).reshape(1, 4))
        np.testing.assert_array_equal(client.infer("quadrupler", [request]).as_numpy("OUT"), [[0, 4, 8, 12]])
        with pytest.raises(Exception, match="restricted"):
            client.unload_model("quadrupler")  # its clients infer; only the command loads
        served.send_signal(signal.SIGINT)
        output, _ = served.communicate(timeout=60)
    finally:
        if served.poll() is None:
            served.kill()
    assert served.returncode == 0 and output.strip().endswith("stopped"), output
    deadline = time.monotonic() + 10
    while any(p.is_running() for p in _servers_of(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _servers_of(port), "the server and its stubs stopped with the command"


def _servers_of(port: int) -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if f"--http-port={port}" in (p.info["cmdline"] or [])]


def test_a_folder_without_a_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no model"):
        repository_models(tmp_path / "empty")
    with pytest.raises(ConfigError, match="is not a folder"):
        repository_models(tmp_path / "nowhere")
    (tmp_path / "empty" / "broken").mkdir()
    (tmp_path / "empty" / "broken" / "config.pbtxt").write_text("name: {")
    with pytest.raises(ConfigError, match="broken/config.pbtxt is not a model config"):
        repository_models(tmp_path / "empty")
