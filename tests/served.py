"""What the tests read from a started Triton server: one definition instead of a copy per test module."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def settled_statistics(server: Any, name: str, inferences: int, timeout_s: float = 10.0) -> dict[str, Any]:
    """Model ``name``'s statistics once they count ``inferences`` (or at the timeout).

    The server counts a request after it answers it (the python backend reports an execution's
    statistics after sending its responses), so a client holding every answer can read a count
    that lags them. ``server`` is any of the tuner's servers (``model_statistics``).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        stats = server.model_statistics(name)["model_stats"][0]
        if int(stats["inference_count"]) >= inferences or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def run_tuner(
    *args: object, cwd: Path, timeout_s: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``tuner ARGS`` as a user runs it: a process of its own in ``cwd``, no input, its output kept;
    ``env`` is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "tuner.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def infer_on_fresh_server(
    repository: Path, workdir: Path, model: str, inputs: dict[str, np.ndarray], load: tuple[str, ...] = ()
) -> Any:
    """Serves ``repository`` on a fresh embedded server, loads ``load`` and then ``model``, and returns
    the answer (``InferResult``) of one request of ``inputs`` (by name, numpy arrays)."""
    import tritonclient.http as triton_http
    from tritonclient.utils import np_to_triton_dtype

    from tuner.triton._embedded import EmbeddedServer

    with EmbeddedServer(workdir, repository) as server:
        for name in (*load, model):
            server.load(name)
        client = triton_http.InferenceServerClient(server.http_url)
        requests = []
        for name, array in inputs.items():
            request = triton_http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            request.set_data_from_numpy(array)
            requests.append(request)
        try:
            return client.infer(model, requests)
        finally:
            client.close()
