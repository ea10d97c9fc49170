"""A Triton server someone else runs, reached at a URL: the tuner sends each config with its model files.

    server = RemoteServer("gpu-box:8000", repository, grpc_url="gpu-box:8001")
    with server:                     # start(): waits until the server answers ready
        server.load("model")         # config.pbtxt and 1/* of repository/model go in the request
        ...
        server.unload("model")       # only that model; stop() unloads what this object loaded

The server must run in explicit model-control mode (``--model-control-mode=explicit``). The worker
keeps writing the model's folder in its own repository as for any server; ``load`` reads it and
sends it through Triton's model-load API as a config override with the files
(``file:1/model.onnx``...), over gRPC, so no shared disk is needed and large models fit in one
request. Triton keeps such a model in a temporary folder of its own.

A server reachable by others should restrict its model-changing protocols (Triton's
``--grpc-restricted-protocol`` and ``--http-restricted-api``, see tuner.triton._access): the
tuner then sends the header its operator set in ``TUNER_TRITON_HEADER_KEY`` and
``TUNER_TRITON_HEADER_VALUE`` (the environment of the processes that run the workers).

Limits: the server's processes are on another machine, so ``pid`` is None and its CPU use is not
measured, nor is its log read (``log_tail`` gives the errors this object received); the tuner
touches only the models it loaded, so other models on the server keep running and share its
hardware with the measurements; a model of the same name already on the server is replaced, so
tune under a name no one else serves there; one worker per server, as two would disturb each
other's numbers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TypeVar

import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from google.protobuf import json_format
from tritonclient.utils import InferenceServerException
from typing_extensions import Self

from tuner.errors import ModelLoadError, ServerStartError
from tuner.triton._access import Access, with_access
from tuner.triton._client import clean_message, probe_ready, wait_unloaded
from tuner.triton._model_config import parse_pbtxt

logger = logging.getLogger(__name__)

_Client = TypeVar("_Client", triton_http.InferenceServerClient, triton_grpc.InferenceServerClient)

#: Triton's default gRPC port, assumed on the HTTP URL's host when no gRPC URL is given.
DEFAULT_GRPC_PORT = 8001


def host_port(url: str) -> str:
    """``host:port`` of a URL given as ``host:port`` or ``http://host:port[/]``."""
    return url.strip().removeprefix("http://").rstrip("/")


def load_request(repository: Path, name: str) -> tuple[str, dict[str, bytes]]:
    """The config (as Triton's JSON) and the files of model ``name`` in ``repository``, for a load with override.

    Files are those of the version folders (``1/model.onnx`` -> ``file:1/model.onnx``).

    Raises:
        ModelLoadError: the model's folder has no config.pbtxt.
    """
    folder = repository / name
    try:
        config = parse_pbtxt((folder / "config.pbtxt").read_text())
    except OSError as exc:
        raise ModelLoadError(f"cannot read the config of {name}: {exc.strerror or exc}") from exc
    files = {
        f"file:{path.relative_to(folder).as_posix()}": path.read_bytes()
        for version in sorted(folder.iterdir())
        if version.is_dir() and version.name.isdigit()
        for path in sorted(version.rglob("*"))
        if path.is_file()
    }
    return json_format.MessageToJson(config, preserving_proto_field_name=True), files


class RemoteServer:
    """A Triton server at a URL, in explicit model-control mode.

    Args:
        url: Its HTTP endpoint, ``host:port`` or ``http://host:port``.
        repository: The worker's own model repository, read by ``load``.
        grpc_url: Its gRPC endpoint (``host:port``); None: the HTTP host at port 8001.
        native: True when the server runs models on its onnxruntime backend, False through the
            python-backend runner (whose model.py is then sent with the model).
        startup_timeout_s: How long start() waits for the server to answer ready.
        access: The header the server's restricted protocols ask for (its operator chose it:
            see tuner.triton._access.Access.from_environment); None sends none.
    """

    pid: int | None = None  # the server's processes are not on this machine

    def __init__(
        self,
        url: str,
        repository: Path,
        grpc_url: str | None = None,
        native: bool = True,
        startup_timeout_s: float = 60.0,
        access: Access | None = None,
    ) -> None:
        self.http_url = host_port(url)
        self.access = access
        self.grpc_url = grpc_url or f"{self.http_url.rsplit(':', 1)[0]}:{DEFAULT_GRPC_PORT}"
        self.repository = repository.resolve()
        self.native = native
        self.startup_timeout_s = startup_timeout_s
        self._http: triton_http.InferenceServerClient | None = None
        self._grpc: triton_grpc.InferenceServerClient | None = None
        self._loaded: set[str] = set()
        self._errors: list[str] = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Waits until the server answers ready.

        Raises:
            ServerStartError: it did not within the start-up timeout.
        """
        if self._http is not None:
            return
        deadline = time.monotonic() + self.startup_timeout_s
        while not probe_ready(self.http_url):
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"no Triton server answered ready at {self.http_url} within {self.startup_timeout_s:.0f} s"
                )
            time.sleep(0.5)
        self._http = with_access(triton_http.InferenceServerClient(self.http_url, network_timeout=120.0), self.access)
        self._grpc = with_access(triton_grpc.InferenceServerClient(self.grpc_url), self.access)
        logger.info("using the Triton server at %s (gRPC %s)", self.http_url, self.grpc_url)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Unloads the models this object loaded and closes the connections; the server keeps running."""
        if self._http is not None:
            for name in sorted(self._loaded):
                with contextlib.suppress(Exception):  # a server that is gone has nothing loaded
                    self.unload(name, timeout_s=timeout_s)
        self._loaded.clear()
        for client in (self._http, self._grpc):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._http = self._grpc = None

    def is_alive(self) -> bool:
        """True when the server answers that it is live."""
        if self._http is None:
            return False
        try:
            return bool(self._http.is_server_live())
        except Exception:  # noqa: BLE001 - any transport error means gone
            return False

    def is_ready(self) -> bool:
        return self._http is not None and probe_ready(self.http_url)

    # -- models ----------------------------------------------------------------------------

    def load(self, model_name: str) -> None:
        """Loads (or reloads) ``model_name`` from the worker's repository folder, sent with the request.

        Raises:
            ModelLoadError: Triton refused the model; the message is Triton's.
            ServerStartError: the server does not answer.
        """
        config, files = load_request(self.repository, model_name)
        client = self._require(self._grpc)
        try:
            client.load_model(model_name, config=config, files=files)
        except InferenceServerException as exc:
            self._raise_if_gone()
            raise ModelLoadError(self._note(clean_message(exc))) from exc
        self._loaded.add(model_name)

    def unload(self, model_name: str, timeout_s: float = 60.0) -> None:
        """Unloads ``model_name`` only (not the models it depends on) and waits until it is gone."""
        client = self._require(self._http)
        try:
            client.unload_model(model_name, unload_dependents=False)
        except InferenceServerException as exc:
            self._raise_if_gone()
            logger.warning("unload of %s failed: %s", model_name, self._note(clean_message(exc)))
            return
        self._loaded.discard(model_name)
        wait_unloaded(client, model_name, timeout_s)

    def model_statistics(self, model_name: str) -> dict:
        return self._require(self._http).get_inference_statistics(model_name)

    def log_tail(self, lines: int = 20) -> str:
        """The last errors the server answered this object with (its log is on its own machine)."""
        return "\n".join(self._errors[-lines:])

    def last_error(self) -> str:
        return self._errors[-1] if self._errors else f"no answer from {self.http_url}"

    # -- internals -------------------------------------------------------------------------

    def _require(self, client: _Client | None) -> _Client:
        if client is None:
            raise ServerStartError(f"not connected to the Triton server at {self.http_url}: start() first")
        return client

    def _raise_if_gone(self) -> None:
        if not self.is_alive():
            raise ServerStartError(f"the Triton server at {self.http_url} does not answer")

    def _note(self, message: str) -> str:
        self._errors = [*self._errors[-99:], message[:500]]
        return message
