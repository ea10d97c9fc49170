"""Serving a model repository (what ``tuner export`` writes) on the embedded server, until stopped.

    serve_repository(folder, "127.0.0.1", Ports(8000, 8001, 8002), on_ready=print)   # returns on Ctrl-C

The embedded server is the one the tuner measured with: an exported config served here runs as it ran in
its study, on a machine without Docker or a Triton install of its own. Its model-changing endpoints are
restricted to a key that only this process knows (``Access``): clients infer, and load nothing.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf import text_format

from tuner.errors import ConfigError, ServerStartError
from tuner.triton._embedded import EmbeddedServer
from tuner.triton._model_config import parse_pbtxt
from tuner.triton._ports import Ports


def repository_models(folder: Path) -> list[str]:
    """The models of a repository folder (each subfolder with a config.pbtxt), ensembles last: Triton loads an
    ensemble's composing models with it, but a model it finds already loaded is not loaded twice.

    Raises:
        ConfigError: the folder holds no model, or a config.pbtxt does not parse.
    """
    if not folder.is_dir():
        raise ConfigError(f"FOLDER: {folder} is not a folder")
    models: list[tuple[bool, str]] = []
    for config in sorted(folder.glob("*/config.pbtxt")):
        try:
            platform = parse_pbtxt(config.read_text()).platform
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            raise ConfigError(f"FOLDER: {config} is not a model config: {exc}") from None
        models.append((platform == "ensemble", config.parent.name))
    if not models:
        raise ConfigError(f"FOLDER: {folder} holds no model (a folder with a config.pbtxt), as `tuner export` writes")
    return [name for _, name in sorted(models)]


def serve_repository(
    folder: Path, address: str, ports: Ports, on_ready: Callable[[list[str]], None], poll_s: float = 1.0
) -> None:
    """Serves every model of ``folder`` until Ctrl-C (a KeyboardInterrupt, which stops the server and is
    raised again); ``on_ready`` is told the models once they are loaded.

    Raises:
        ConfigError: the folder holds no model.
        ServerStartError: the server did not start, or stopped on its own (the message says how).
        ModelLoadError: Triton refused a model; the message is Triton's.
    """
    models = repository_models(folder)
    with (
        tempfile.TemporaryDirectory(prefix="tuner-serve-") as work,
        EmbeddedServer(Path(work), folder, address=address, ports=ports) as server,
    ):
        for name in models:
            server.load(name)
        on_ready(models)
        while server.is_alive():
            time.sleep(poll_s)
        raise ServerStartError(f"the server stopped: {server.last_error()}")
