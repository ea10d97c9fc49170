from __future__ import annotations

import pytest

from tuner.config import WorkerSettings
from tuner.workers import plan_workers
from tuner.workers._hardware import gpu_count


def test_no_gpu_here_means_zero_not_an_error() -> None:
    assert gpu_count() >= 0


@pytest.mark.parametrize(
    ("settings", "cores", "gpus", "expected"),
    [
        ({}, 8, 0, (1, 8, 0.0)),
        ({"count": 2}, 8, 0, (2, 4, 0.0)),
        ({"count": 3}, 2, 0, (3, 1, 0.0)),
        ({"count": 2, "cpus_per_worker": 1}, 8, 0, (2, 1, 0.0)),
        ({}, 16, 4, (4, 4, 1.0)),
        ({"gpus_per_worker": 2}, 16, 4, (2, 8, 2.0)),
        ({"count": 1, "gpus_per_worker": 0}, 16, 4, (1, 16, 0.0)),
    ],
)
def test_plan_fills_in_what_the_study_left_out(settings: dict, cores: int, gpus: int, expected: tuple) -> None:
    plan = plan_workers(WorkerSettings(**settings), cores=cores, gpus=gpus)
    assert (plan.count, plan.cpus_per_worker, plan.gpus_per_worker) == expected
    assert plan.on_gpu == (expected[2] > 0)
