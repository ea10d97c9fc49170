"""What decides what a measurement means, besides the config: the software and the CPU that measured it.

    versions()                    # {"tuner": ..., "python": ..., "nvidia-pytriton": ..., "tritonclient": ...}
    cpu_model()                   # "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    server_version(server)        # "2.50.0": what a started Triton server says of itself

The embedded Triton is the nvidia-pytriton wheel's build, and perf_analyzer is the tritonclient
wheel's binary, so their package versions name them; ``server_version`` asks a running server
(any launch mode) for its own. Landscapes, search results and verifications store the same keys.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
from pathlib import Path

import tritonclient.http as triton_http

from tuner import __version__
from tuner.triton._access import with_access
from tuner.triton._server import TritonServer

logger = logging.getLogger(__name__)

#: The packages whose versions decide what a measurement means: the embedded Triton
#: (nvidia-pytriton), perf_analyzer (tritonclient), ONNX Runtime and the sampler (optuna).
PACKAGES = ("nvidia-pytriton", "tritonclient", "onnxruntime-openvino", "onnxruntime", "onnxruntime-gpu", "optuna")


def versions() -> dict[str, str]:
    """The tuner's, Python's and the measuring packages' versions (those installed)."""
    found = {"tuner": __version__, "python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's ``model name``), else what the platform says, else the architecture."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def server_version(server: TritonServer) -> str | None:
    """The version a started server reports (Triton's server metadata), or None where it does not answer."""
    try:
        client = triton_http.InferenceServerClient(server.http_url, network_timeout=10.0)
        try:
            metadata = with_access(client, server.access).get_server_metadata()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - a version is a note for the reader, never a reason to fail
        logger.warning("the server at %s did not say its version: %s", server.http_url, exc)
        return None
    version = metadata.get("version") if isinstance(metadata, dict) else None
    return str(version) if version else None
