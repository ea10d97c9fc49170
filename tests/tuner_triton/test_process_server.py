"""What a server the tuner started says when it goes down: how it ended, and the error it logged since it was ready.

The server here is a small stand-in process (tritonserver's start-up cannot be made to log a chosen error):
it logs a start-up error as Triton does on a machine without a GPU, answers Triton's readiness probe, and
on a request to /fail logs an error and exits with code 3.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuner.errors import ServerStartError
from tuner.triton._process import ProcessServer, exit_text

STAND_IN = """
import http.server, os, sys
print('E1207 00:00:00.000000 1 server.cc:241] "CudaDriverHelper has not been initialized."', flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/fail":
            print('E1207 00:00:01.000000 1 model.cc:10] "the model broke"', flush=True)
            os._exit(3)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


class StandIn(ProcessServer):
    def _command(self) -> list[str]:
        assert self.ports is not None
        return [sys.executable, "-c", STAND_IN, str(self.ports.http)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StandIn]:
    started = StandIn(tmp_path / "server", tmp_path / "repository", startup_timeout_s=20)
    started.start()
    yield started
    started.stop()


def _wait_dead(server: StandIn) -> None:
    deadline = time.monotonic() + 10
    while server.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.is_alive()


def test_a_killed_server_says_so_and_not_its_start_up_errors(server: StandIn) -> None:
    assert server.last_error() == "nothing logged since it became ready"  # the start-up error is past news
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    _wait_dead(server)

    assert server.last_error() == "killed by SIGKILL; last log line: nothing logged since it became ready"
    with pytest.raises(ServerStartError, match="tritonserver is not running: killed by SIGKILL"):
        server.load("any")


def test_a_server_that_exits_says_its_code_and_its_last_error_since_ready(server: StandIn) -> None:
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{server.http_url}/fail", timeout=5)
    _wait_dead(server)

    message = server.last_error()
    assert message.startswith("exited with code 3; last log line: E1207")
    assert message.endswith('"the model broke"')


def test_a_restart_reads_only_its_own_lines(server: StandIn) -> None:
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{server.http_url}/fail", timeout=5)
    _wait_dead(server)
    server.start()  # the log is appended to; the last run's error is not this run's

    assert server.is_alive() and "the model broke" not in server.last_error()


@pytest.mark.parametrize(
    ("code", "text"), [(0, "exited with code 0"), (1, "exited with code 1"), (-11, "killed by SIGSEGV"),
                       (-200, "killed by signal 200")]
)  # fmt: skip
def test_exit_text(code: int, text: str) -> None:
    assert exit_text(code) == text
