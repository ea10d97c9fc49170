"""What the server did during a measurement, from Triton's statistics API.

Two snapshots of the model's statistics give the requests served between them, the executions
they were batched into, how many executions ran at each batch size (what dynamic batching and
the queue delay changed inside the server), and the time per request in the queue and in
compute input/infer/output. Which window the snapshots bracket is the load engine's business
(tuner.measure._engine). For an ensemble the snapshots hold each composing model's counters too
(``steps``), and the window each step's: where the pipeline's requests waited and ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict


class ServerPointFields(TypedDict):
    """The LoadPoint fields a ServerWindow fills, typed so that ``replace(point, **fields)`` is checked."""

    server_queue_ms: float
    server_compute_input_ms: float
    server_compute_infer_ms: float
    server_compute_output_ms: float


@dataclass(frozen=True)
class ServerWindow:
    """The server's side of one measurement.

    Attributes:
        requests: Inference requests completed.
        executions: Model executions they ran in (fewer than requests where batches formed).
        batch_sizes: Executions by the batch size they ran at.
        queue_ms / compute_*_ms: Mean per request over the window.
        steps: For an ensemble, each composing model's window by name, in the order it runs them.
    """

    requests: int
    executions: int
    batch_sizes: dict[int, int] = field(default_factory=dict)
    queue_ms: float = 0.0
    compute_input_ms: float = 0.0
    compute_infer_ms: float = 0.0
    compute_output_ms: float = 0.0
    steps: dict[str, ServerWindow] = field(default_factory=dict)

    @property
    def mean_batch(self) -> float:
        return self.requests / self.executions if self.executions else 0.0

    def as_dict(self) -> dict[str, Any]:
        steps = {"steps": {name: step.as_dict() for name, step in self.steps.items()}} if self.steps else {}
        return {
            **steps,
            "requests": self.requests,
            "executions": self.executions,
            "mean_batch": round(self.mean_batch, 3),
            "batch_sizes": {str(size): count for size, count in sorted(self.batch_sizes.items())},
            "queue_ms": round(self.queue_ms, 3),
            "compute_input_ms": round(self.compute_input_ms, 3),
            "compute_infer_ms": round(self.compute_infer_ms, 3),
            "compute_output_ms": round(self.compute_output_ms, 3),
        }

    def as_point_fields(self) -> ServerPointFields:
        """The LoadPoint fields of the server's breakdown.

        An ensemble's requests wait in each step's queue, and Triton counts in the ensemble's own
        statistics only its own (none, as it has no batcher): its queue is the steps' together.
        """
        return {
            "server_queue_ms": self.queue_ms + sum(step.queue_ms for step in self.steps.values()),
            "server_compute_input_ms": self.compute_input_ms,
            "server_compute_infer_ms": self.compute_infer_ms,
            "server_compute_output_ms": self.compute_output_ms,
        }


def model_counters(statistics: Mapping[str, Any]) -> dict[str, Any]:
    """The cumulative counters of the one model in a statistics answer."""
    (model,) = statistics["model_stats"]
    inference = model.get("inference_stats", {})
    return {
        "requests": int(inference.get("success", {}).get("count", 0)),
        "executions": int(model.get("execution_count", 0)),
        "queue_ns": int(inference.get("queue", {}).get("ns", 0)),
        "input_ns": int(inference.get("compute_input", {}).get("ns", 0)),
        "infer_ns": int(inference.get("compute_infer", {}).get("ns", 0)),
        "output_ns": int(inference.get("compute_output", {}).get("ns", 0)),
        "batches": {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in model.get("batch_stats", [])},
    }


def window(before: Mapping[str, Any], after: Mapping[str, Any]) -> ServerWindow:
    """The difference of two ``model_counters`` snapshots (with their ``steps``, where they have them)."""
    steps = {name: window(before["steps"][name], counters) for name, counters in after.get("steps", {}).items()}
    requests = after["requests"] - before["requests"]
    batches = {
        size: count - before["batches"].get(size, 0)
        for size, count in after["batches"].items()
        if count - before["batches"].get(size, 0) > 0
    }
    per_request = 1e-6 / requests if requests else 0.0
    return ServerWindow(
        requests=requests,
        executions=after["executions"] - before["executions"],
        batch_sizes=batches,
        queue_ms=(after["queue_ns"] - before["queue_ns"]) * per_request,
        compute_input_ms=(after.get("input_ns", 0) - before.get("input_ns", 0)) * per_request,
        compute_infer_ms=(after["infer_ns"] - before["infer_ns"]) * per_request,
        compute_output_ms=(after.get("output_ns", 0) - before.get("output_ns", 0)) * per_request,
        steps=steps,
    )
