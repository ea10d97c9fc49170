"""Triton: the config.pbtxt writer and the server, in four launch modes.

    server = make_server(settings, workdir, repository)    # embedded, local, docker or remote
    server.start()
    server.load(name)          # the config.pbtxt build_model_config wrote for the trial

Every launch mode keeps the ``TritonServer`` contract (start, load, unload, stop); ``Access``
carries the headers a restricted server wants. ``ort_runner/model.py`` is the python-backend
model that runs ONNX Runtime inside Triton; ``runner_providers`` says which execution providers it
will find there (the ONNX Runtime build is the ``cpu`` or ``gpu`` install extra).
"""

from __future__ import annotations

from tuner.triton._access import Access, redact, with_access
from tuner.triton._embedded import pytriton_libs
from tuner.triton._model_config import (
    RUNNER_BACKEND,
    RUNNER_SOURCE,
    build_model_config,
    build_native_config,
    config_backend,
    parse_pbtxt,
    to_pbtxt,
    tune_config,
    tuned_knobs,
)
from tuner.triton._ports import Ports, port_is_free
from tuner.triton._process import die_with_parent, kill_orphans
from tuner.triton._providers import installed_providers, runner_providers
from tuner.triton._serve import serve_repository
from tuner.triton._server import TritonServer, check_launch, make_server, worker_gpus
from tuner.triton._versions import cpu_model, server_version, versions

__all__ = [
    "RUNNER_BACKEND",
    "RUNNER_SOURCE",
    "Access",
    "Ports",
    "TritonServer",
    "build_model_config",
    "build_native_config",
    "check_launch",
    "config_backend",
    "cpu_model",
    "die_with_parent",
    "installed_providers",
    "kill_orphans",
    "make_server",
    "parse_pbtxt",
    "port_is_free",
    "pytriton_libs",
    "redact",
    "runner_providers",
    "serve_repository",
    "server_version",
    "to_pbtxt",
    "tune_config",
    "tuned_knobs",
    "versions",
    "with_access",
    "worker_gpus",
]
