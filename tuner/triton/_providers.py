"""The ONNX Runtime execution providers the python-backend runner will find, seen before anything starts.

    providers = runner_providers(cfg.server, workers_here=cfg.workers.ray_address is None)
    # ("OpenVINOExecutionProvider", "CPUExecutionProvider") with the cpu extra; None: out of sight

The runner (ort_runner/model.py) imports onnxruntime from the environment its server gives the
python backend stub: the tuner's own for the embedded server (tuner.triton._embedded puts this
interpreter's environment first on the stub's PATH) and for a local binary, so the providers that
environment has are the ones this process's onnxruntime reports. Which ONNX Runtime build that is,
the OpenVINO one or the CUDA one, is an install choice (the ``cpu`` and ``gpu`` extras).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuner.config import ServerSettings

logger = logging.getLogger(__name__)


def installed_providers() -> tuple[str, ...]:
    """The execution providers of the ONNX Runtime installed here, in its order of preference; () without one."""
    try:
        import onnxruntime
    except ImportError:
        logger.debug("no onnxruntime module in this environment")
        return ()
    return tuple(onnxruntime.get_available_providers())


def runner_providers(settings: ServerSettings, workers_here: bool = True) -> tuple[str, ...] | None:
    """The providers the trials' runner will have, or None where they are out of the tuner's sight.

    Args:
        settings: The study file's ``server`` section.
        workers_here: The workers run on this machine, in this environment (not on a Ray
            cluster's other nodes, whose environments may hold another build).

    Returns:
        None where the server runs models on its own onnxruntime backend (``native``), or the
        runner in a container or on a remote server, or the workers elsewhere: their ONNX Runtime
        is not this environment's.
    """
    if settings.native or settings.launch in ("docker", "remote") or not workers_here:
        return None
    return installed_providers()
