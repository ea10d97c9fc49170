"""Requests from the worker itself: the warm-up after every load, and the accuracy check's inference.

Warm-up sends a few requests per concurrency slot through Triton's HTTP client.

The first requests an instance serves pay for lazy initialisation (ONNX Runtime allocations,
thread pools); sending them from this process takes milliseconds, where starting another
perf_analyzer would take about a second.
"""

from __future__ import annotations

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from tuner.errors import MeasurementError
from tuner.model_info import Answers, ModelInfo, by_sample, one_sample
from tuner.triton import Access, with_access


def random_inputs(model: ModelInfo, batch: int = 1, seed: int = 0) -> list[triton_http.InferInput]:
    """One request's inputs filled with random values of each input's type and shape."""
    rng = np.random.default_rng(seed)
    inputs = []
    for tensor in model.inputs:
        # A batch-only tensor travels as [batch, 1] (see tuner.triton).
        shape = [batch, *(d if d > 0 else 1 for d in tensor.item_shape)] if tensor.item_shape else [batch, 1]
        dtype = np.dtype(triton_to_np_dtype(tensor.dtype))
        if dtype.kind == "f":
            data = rng.random(shape, dtype=np.float64).astype(dtype)
        elif dtype.kind == "b":
            data = rng.integers(0, 2, size=shape).astype(bool)
        else:
            data = rng.integers(0, 8, size=shape).astype(dtype)
        request = triton_http.InferInput(tensor.name, shape, tensor.dtype)
        request.set_data_from_numpy(data)
        inputs.append(request)
    return inputs


def sample_inputs(model: ModelInfo, samples: dict[str, np.ndarray], index: int) -> list[triton_http.InferInput]:
    """One request's inputs: sample ``index`` (first axis) of ``samples``, by input name."""
    inputs = []
    for tensor in model.inputs:
        sample = samples[tensor.name][index : index + 1]
        if not tensor.item_shape:
            sample = sample.reshape(1, 1)
        request = triton_http.InferInput(tensor.name, list(sample.shape), tensor.dtype)
        request.set_data_from_numpy(np.ascontiguousarray(sample))
        inputs.append(request)
    return inputs


def warm_up(
    url: str,
    model_name: str,
    model: ModelInfo,
    requests: int,
    concurrency: int,
    access: Access | None = None,
    samples: dict[str, np.ndarray] | None = None,
) -> None:
    """Sends ``requests`` inference requests, ``concurrency`` at a time, and checks the answers.

    ``access`` is the server's header (tuner.triton.TritonServer.access), sent with each request.
    ``samples``: the load's real inputs (``load.input_data``), whose first sample is sent; None sends
    random ones, which a model that takes indices may refuse.

    Raises:
        MeasurementError: the server answered a request with an error.
    """
    if requests <= 0:
        return
    inputs = sample_inputs(model, samples, 0) if samples else random_inputs(model)
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
    count = min(len(array) for array in inputs.values())
    results: dict[str, list[np.ndarray]] = {t.name: [] for t in model.outputs}
    try:
        for index in range(count):
            answer = client.infer(model_name, sample_inputs(model, inputs, index))
            for tensor in model.outputs:
                results[tensor.name].append(one_sample(answer.as_numpy(tensor.name), tensor.follows_batch))
    except InferenceServerException as exc:
        raise MeasurementError(f"inference of the validation batch failed: {exc.message() or exc}") from exc
    finally:
        client.close()
    return {name: by_sample(answers) for name, answers in results.items()}
