from __future__ import annotations

from tuner.measure._server_stats import model_counters, window


def _stats(requests: int, executions: int, batches: dict[int, int], queue_ns: int, infer_ns: int) -> dict:
    return {"model_stats": [{
        "name": "m", "execution_count": executions, "inference_count": requests,
        "inference_stats": {"success": {"count": requests, "ns": 0}, "queue": {"count": requests, "ns": queue_ns},
                            "compute_infer": {"count": requests, "ns": infer_ns}},
        "batch_stats": [{"batch_size": size, "compute_infer": {"count": count, "ns": 0}} for size, count in batches.items()],
    }]}


def test_window_is_the_difference_of_two_snapshots() -> None:
    before = model_counters(_stats(10, 10, {1: 10}, 5_000_000, 20_000_000))
    after = model_counters(_stats(110, 40, {1: 20, 4: 20}, 105_000_000, 220_000_000))
    result = window(before, after)
    assert (result.requests, result.executions) == (100, 30)
    assert result.batch_sizes == {1: 10, 4: 20}
    assert result.mean_batch == 100 / 30
    assert result.queue_ms == 1.0 and result.compute_infer_ms == 2.0
    assert result.as_dict()["batch_sizes"] == {"1": 10, "4": 20}


def test_an_idle_window_has_no_batches() -> None:
    snapshot = model_counters(_stats(5, 5, {1: 5}, 1, 1))
    result = window(snapshot, snapshot)
    assert (result.requests, result.executions, result.batch_sizes, result.mean_batch) == (0, 0, {}, 0.0)
