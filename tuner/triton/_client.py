"""What every kind of server does the same way through Triton's HTTP API."""

from __future__ import annotations

import logging
import time

import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

logger = logging.getLogger(__name__)


def clean_message(exc: InferenceServerException) -> str:
    """Triton's own message of an error, without the client's decoration."""
    message = exc.message() if hasattr(exc, "message") else str(exc)
    return (message or str(exc)).strip()


def probe_ready(url: str, timeout_s: float = 2.0) -> bool:
    """True when the server at ``url`` (host:port) answers that it is ready within ``timeout_s``."""
    try:
        probe = triton_http.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
        try:
            return bool(probe.is_server_ready())
        finally:
            probe.close()
    except Exception:  # noqa: BLE001 - any transport error means not ready
        return False


def wait_unloaded(client: triton_http.InferenceServerClient, name: str, timeout_s: float) -> None:
    """Returns once model ``name`` is neither ready nor unloading, so its instances are gone.

    A model loaded from the repository is followed in the repository index; one loaded with
    files in the request (remote servers) is not listed there, so its readiness is followed.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = {m.get("name"): m.get("state") for m in client.get_model_repository_index()}
        if name in states:
            if states[name] not in ("READY", "UNLOADING"):
                return
        elif not client.is_model_ready(name):
            return
        time.sleep(0.05)
    logger.warning("model %s still unloading after %.0f s", name, timeout_s)
