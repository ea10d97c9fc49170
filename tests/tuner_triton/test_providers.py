"""tuner.triton._providers: the ONNX Runtime providers the python-backend runner will find, seen before a start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.config import ServerSettings
from tuner.triton import installed_providers, runner_providers
from tuner.triton._embedded import embedded_environment


def test_the_providers_are_those_of_the_environment_the_embedded_runner_imports_from() -> None:
    # The stub imports onnxruntime from the environment first on the PATH the embedded server gives it.
    env = embedded_environment({"PATH": "/usr/bin:/bin"})
    python = shutil.which("python", path=env["PATH"])
    assert python is not None and Path(python).parent == Path(sys.executable).parent
    probe = "import json, onnxruntime; print(json.dumps(onnxruntime.get_available_providers()))"
    done = subprocess.run([python, "-c", probe], env=env, capture_output=True, text=True, check=True, timeout=60)
    assert tuple(json.loads(done.stdout)) == installed_providers() == runner_providers(ServerSettings())
    assert "CPUExecutionProvider" in installed_providers()


@pytest.mark.parametrize(
    ("server", "workers_here"),
    [
        ({"launch": "remote", "remote": ["127.0.0.1:8000"], "triton_backend": "python"}, True),
        ({"launch": "docker", "triton_backend": "python"}, True),
        ({"launch": "docker"}, True),  # the image's own onnxruntime backend
        ({"launch": "local", "binary": sys.executable}, True),  # Triton's onnxruntime backend, not the runner
        ({"launch": "embedded"}, False),  # workers on a Ray cluster's other nodes
    ],
)
def test_runners_whose_onnxruntime_is_not_this_environments_are_out_of_sight(
    server: dict[str, object], workers_here: bool
) -> None:
    assert runner_providers(ServerSettings.model_validate(server), workers_here) is None


def test_a_local_binary_with_the_python_backend_runs_the_runner_here() -> None:
    settings = ServerSettings.model_validate({"launch": "local", "binary": sys.executable, "triton_backend": "python"})
    assert runner_providers(settings) == installed_providers()
