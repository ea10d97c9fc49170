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


def test_the_end_of_a_load_is_read_once_the_late_counts_are_in() -> None:
    """Triton counts the last requests (and an ensemble's python steps) a moment after their answers:
    the snapshot that closes a load waits for the counters to hold still."""
    from tuner.measure._engine import Probe
    from tuner.measure._usage import UsageMonitor

    counts = iter([8, 9, 10])  # what three reads see while the last two requests are being counted

    def statistics() -> dict:
        return _stats(next(counts, 10), 10, {1: 10}, 0, 0)

    assert Probe(statistics, UsageMonitor(lambda: None)).snap_quiet().counters["requests"] == 10
    counts = iter([9, 10, 10, 10])  # the model is counted, its step not yet: the step is waited for too
    lagging = iter([9, 9, 10])
    probe = Probe(statistics, UsageMonitor(lambda: None),
                  steps=lambda: {"step": _stats(next(lagging, 10), 10, {1: 10}, 0, 0)})
    start = probe.snap()  # 9 and 9
    end = probe.snap_after(start, answered=1)
    assert window(start.counters, end.counters).steps["step"].requests == 1
