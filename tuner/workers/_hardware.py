"""What this machine offers the workers: CPU cores and NVIDIA GPUs (through NVML, where present)."""

from __future__ import annotations

import logging
import os

from tuner.config import WorkerSettings
from tuner.pool import WorkerPlan

logger = logging.getLogger(__name__)


def cpu_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def gpu_count() -> int:
    """NVIDIA GPUs visible through NVML; 0 where there is no driver or no GPU."""
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        logger.debug("no GPU: %s", exc)
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def plan_workers(settings: WorkerSettings, cores: int | None = None, gpus: int | None = None) -> WorkerPlan:
    """Fills in what the study file left out from what the machine has.

    With GPUs: one worker per GPU. Without: one worker with every core. Cores are shared
    equally among the workers unless ``cpus_per_worker`` is given.
    """
    cores = cpu_cores() if cores is None else cores
    gpus = gpu_count() if gpus is None and settings.backend == "ray" else (gpus or 0)
    per_gpu = settings.gpus_per_worker if settings.gpus_per_worker is not None else (1.0 if gpus else 0.0)
    if settings.count is not None:
        count = settings.count
    elif per_gpu > 0 and gpus:
        count = max(1, int(gpus // per_gpu))
    else:
        count = 1
    cpus = int(settings.cpus_per_worker) if settings.cpus_per_worker is not None else max(1, cores // count)
    return WorkerPlan(count=count, cpus_per_worker=max(1, cpus), gpus_per_worker=per_gpu)
