"""Workers: each owns a Triton server and measures trials; pools keep every worker busy.

    plan = plan_workers(cfg.workers)                  # cores and GPUs per worker
    with LocalPool(setup) as pool: ...                # or RayPool: both keep tuner.pool's contract

``hardware`` reads what the machine offers, ``load_setup`` turns the study file's load section
into a worker's engine settings and sweep plan, ``ray_init`` starts (or joins) Ray.
"""

from __future__ import annotations

from tuner.workers._hardware import cpu_cores, plan_workers
from tuner.workers._load_setup import engine_settings, real_samples, sweep_plan
from tuner.workers._pool import LocalPool, RayPool, RaySettings
from tuner.workers._worker import WorkerSetup

__all__ = [
    "LocalPool",
    "RayPool",
    "RaySettings",
    "WorkerSetup",
    "cpu_cores",
    "engine_settings",
    "plan_workers",
    "real_samples",
    "sweep_plan",
]
