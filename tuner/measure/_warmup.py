"""Requests from the worker itself: the warm-up after every load, and the accuracy check's inference.

Warm-up sends a few requests per concurrency slot through Triton's HTTP client.

The first requests an instance serves pay for lazy initialisation (ONNX Runtime allocations,
thread pools); sending them from this process takes milliseconds, where starting another
perf_analyzer would take about a second.
"""

from __future__ import annotations

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tuner.errors import MeasurementError
from tuner.measure._builtin import request_samples
from tuner.model_info import Answers, ModelInfo, by_sample, one_sample
from tuner.triton import Access, with_access


def infer_inputs(model: ModelInfo, request: dict[str, np.ndarray]) -> list[triton_http.InferInput]:
    """A request's inputs for Triton's HTTP client, from one array per input name (``request_samples``)."""
    inputs = []
    for tensor in model.inputs:
        data = np.ascontiguousarray(request[tensor.name])
        tensor_input = triton_http.InferInput(tensor.name, list(data.shape), tensor.dtype)
        tensor_input.set_data_from_numpy(data)
        inputs.append(tensor_input)
    return inputs


def warm_up(
    url: str,
    model_name: str,
    model: ModelInfo,
    requests: int,
    concurrency: int,
    access: Access | None = None,
    samples: dict[str, np.ndarray] | None = None,
    input_data: str = "random",
) -> None:
    """Sends ``requests`` inference requests, ``concurrency`` at a time, and checks the answers.

    ``access`` is the server's header (tuner.triton.TritonServer.access), sent with each request.
    The request is the first the load generator sends (``request_samples``): the first of the load's
    real ``samples`` where given, else the ``input_data`` it makes (``random``, or ``zero``, which a model
    taking ids into a small table may need).

    Raises:
        MeasurementError: the server answered a request with an error.
    """
    if requests <= 0:
        return
    inputs = infer_inputs(model, request_samples(model, input_data, samples)[0])
    client = with_access(
        triton_http.InferenceServerClient(url, concurrency=max(1, concurrency), network_timeout=120.0), access
    )
    try:
        for start in range(0, requests, concurrency):
            batch = [client.async_infer(model_name, inputs) for _ in range(min(concurrency, requests - start))]
            for pending in batch:
                pending.get_result()
    except InferenceServerException as exc:
        raise MeasurementError(f"warm-up request failed: {exc.message() or exc}") from exc
    finally:
        client.close()


def infer_samples(
    url: str, model_name: str, model: ModelInfo, inputs: dict[str, np.ndarray], access: Access | None = None
) -> dict[str, Answers]:
    """Runs each sample of ``inputs`` (first axis) through the server; each output's answers by sample
    (``Answers``: stacked where their shapes agree).

    ``access`` is the server's header, sent with each request.

    Raises:
        MeasurementError: the server answered with an error.
    """
    client = with_access(triton_http.InferenceServerClient(url, network_timeout=120.0), access)
    results: dict[str, list[np.ndarray]] = {t.name: [] for t in model.outputs}
    try:
        for request in request_samples(model, "random", inputs):  # the samples, each a request of its own
            answer = client.infer(model_name, infer_inputs(model, request))
            for tensor in model.outputs:
                results[tensor.name].append(one_sample(answer.as_numpy(tensor.name), tensor.follows_batch))
    except InferenceServerException as exc:
        raise MeasurementError(f"inference of the validation batch failed: {exc.message() or exc}") from exc
    finally:
        client.close()
    return {name: by_sample(answers) for name, answers in results.items()}
