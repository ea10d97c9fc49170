"""The secret header of the restricted protocols: its forms on HTTP, gRPC, perf_analyzer and the command line.

tests/integration/test_restricted.py checks against a real server that the forms are the ones
Triton asks for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_aio
import tritonclient.http as triton_http
from tritonclient._request import Request

from tuner.errors import ConfigError
from tuner.triton import Access, redact, with_access
from tuner.triton._access import ENV_KEY, ENV_VALUE, HeaderPlugin

ACCESS = Access("tuner-key", "s3cret")


def test_generate_draws_a_new_long_secret() -> None:
    first, second = Access.generate(), Access.generate()
    assert first.key == second.key == "tuner-key"
    assert first.value != second.value and len(first.value) >= 32


def test_the_secret_stays_out_of_repr_and_logs() -> None:
    assert "s3cret" not in repr(ACCESS)
    assert redact("tritonserver --http-restricted-api=x:tuner-key=s3cret", ACCESS) == (
        "tritonserver --http-restricted-api=x:tuner-key=<secret>"
    )
    assert redact("s3cret", None) == "s3cret"


def test_header_forms() -> None:
    assert ACCESS.http_headers() == {"tuner-key": "s3cret"}
    assert ACCESS.grpc_headers() == {"triton-grpc-protocol-tuner-key": "s3cret"}
    assert ACCESS.perf_analyzer_args("grpc") == ["-H", "triton-grpc-protocol-tuner-key:s3cret"]
    assert ACCESS.perf_analyzer_args("http") == ["-H", "tuner-key:s3cret"]
    assert ACCESS.server_args() == [
        "--grpc-restricted-protocol=model-repository,model-config,shared-memory:tuner-key=s3cret",
        "--http-restricted-api=model-repository,model-config,shared-memory:tuner-key=s3cret",
    ]


def test_plugin_adds_the_header_and_hides_it() -> None:
    plugin = HeaderPlugin({"tuner-key": "s3cret"})
    request = Request({"other": "1"})
    plugin(request)
    assert request.headers == {"other": "1", "tuner-key": "s3cret"}
    assert "s3cret" not in repr(plugin)


@pytest.fixture
def event_loop_set() -> Iterator[None]:
    """A grpc.aio client takes the thread's event loop: an earlier test's asyncio.run leaves none set."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


@pytest.mark.parametrize(("make", "header"), [
    (lambda: triton_http.InferenceServerClient("127.0.0.1:1"), "tuner-key"),
    (lambda: triton_grpc.InferenceServerClient("127.0.0.1:1"), "triton-grpc-protocol-tuner-key"),
    (lambda: triton_aio.InferenceServerClient("127.0.0.1:1"), "triton-grpc-protocol-tuner-key"),
])
@pytest.mark.usefixtures("event_loop_set")
def test_with_access_gives_each_client_its_protocol_form(make, header: str) -> None:
    client = with_access(make(), ACCESS)
    request = Request(None)
    client._call_plugin(request)  # what every call of the client does before it sends
    assert request.headers == {header: "s3cret"}
    plain = with_access(make(), None)
    request = Request(None)
    plain._call_plugin(request)
    assert request.headers == {}


def test_from_environment() -> None:
    assert Access.from_environment({}) is None
    assert Access.from_environment({ENV_KEY: "ops-key", ENV_VALUE: "v:1/x"}) == Access("ops-key", "v:1/x")


@pytest.mark.parametrize("env", [
    {ENV_KEY: "ops-key"},
    {ENV_VALUE: "the-value"},
    {ENV_KEY: "ops key", ENV_VALUE: "the-value"},
    {ENV_KEY: "ops-key", ENV_VALUE: "the value"},
    {ENV_KEY: "ops-key", ENV_VALUE: "the\nvalue"},
])
def test_from_environment_refuses_half_or_malformed(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="TUNER_TRITON_HEADER_") as refused:
        Access.from_environment(env)
    assert "the-value" not in str(refused.value) and "the value" not in str(refused.value)
