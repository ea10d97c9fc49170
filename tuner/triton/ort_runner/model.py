"""Triton Python-backend model that runs an ONNX file through ONNX Runtime.

It reads its settings from the model config's ``parameters``:

- ``onnx_file``: the ONNX file in the version folder (default ``model.onnx``);
- ``execution_provider``: an ONNX Runtime provider name (default ``CPUExecutionProvider``);
- ``provider_options``: JSON object of that provider's options (default ``{}``);
- ``intra_op_threads`` / ``inter_op_threads``: thread counts (0 lets ONNX Runtime choose);
- ``graph_optimization_level``: ``disable``, ``basic``, ``extended`` or ``all``;
- ``allow_spinning``: ``1`` lets idle ONNX Runtime threads spin-wait (its default), ``0`` not.

Triton's dynamic batcher hands ``execute`` several requests at once: their inputs are stacked
along the batch dimension, run once, and the outputs split back per request. A model whose
batch dimension is fixed in the ONNX file is run once per request instead.

This file is copied into each model's version folder; it imports only numpy, onnxruntime and
the backend's own utilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

_GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class TritonPythonModel:
    """Runs one ONNX Runtime session per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        path = folder / params.get("onnx_file", "model.onnx")

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        options.inter_op_num_threads = int(params.get("inter_op_threads", "0"))
        level = params.get("graph_optimization_level", "all")
        if level not in _GRAPH_LEVELS:
            raise pb_utils.TritonModelException(
                f"graph_optimization_level must be one of {sorted(_GRAPH_LEVELS)}, not {level!r}"
            )
        options.graph_optimization_level = _GRAPH_LEVELS[level]
        # Spinning threads wait for work by burning a core; beside other instances and the load
        # generator on few cores that time is taken from work that could run.
        spinning = params.get("allow_spinning", "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)

        provider = params.get("execution_provider", "CPUExecutionProvider")
        if provider not in ort.get_available_providers():
            # The tuner's pre-flight check refuses this where it can see the runner's environment.
            raise pb_utils.TritonModelException(
                f"execution provider {provider} is not available here "
                f"(available: {', '.join(ort.get_available_providers())}; ONNX Runtime's OpenVINO build is "
                "the tuner's cpu extra, its CUDA and TensorRT build the gpu extra)"
            )
        providers = [(provider, json.loads(params.get("provider_options", "{}")))]
        if provider == "TensorrtExecutionProvider" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.append(("CUDAExecutionProvider", {}))  # for the nodes TensorRT cannot run
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        # ONNX Runtime falls back to the CPU provider, with only a log line, when a provider
        # refuses its options or the model: a trial must not measure something else unnoticed.
        if self.session.get_providers()[0] != provider:
            raise pb_utils.TritonModelException(
                f"{provider} could not run this model with these options; ONNX Runtime fell back to "
                f"{self.session.get_providers()[0]} (see the server log)"
            )
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        self.output_dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]}
        # Requests are stacked where every input and output has a free first dimension: a fixed one, or
        # a scalar output (a statistic over the whole request), does not follow the batch.
        tensors = [*self.session.get_inputs(), *self.session.get_outputs()]
        self.stackable = all(t.shape and not isinstance(t.shape[0], int) for t in tensors)

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        try:
            if self.stackable:
                return self._run_stacked(requests)
            return [self._run_stacked([request])[0] for request in requests]
        except Exception as exc:  # noqa: BLE001  (report to the clients instead of crashing the stub)
            error = pb_utils.TritonError(f"ONNX Runtime failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]

    def _run_stacked(self, requests: list[pb_utils.InferenceRequest]) -> list[pb_utils.InferenceResponse]:
        feeds: dict[str, np.ndarray] = {}
        sizes: list[int] = []
        for name in self.input_names:
            arrays = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            sizes = sizes or [a.shape[0] for a in arrays]
            feeds[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        results = self.session.run(self.output_names, feeds)
        if len(requests) == 1:  # the answer as it is: an output need not have a batch dimension
            per_output = [[result] for result in results]
        elif any(result.ndim == 0 or result.shape[0] != sum(sizes) for result in results):
            # an output whose first dimension the data decides (the boxes a detector keeps, say) does not
            # follow the batch: its answers cannot be split by request, so each runs alone from now on
            self.stackable = False
            return [self._run_stacked([request])[0] for request in requests]
        else:
            bounds = np.cumsum(sizes)[:-1]
            per_output = [np.split(result, bounds) for result in results]
        responses = []
        for index in range(len(requests)):
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(parts[index], dtype=self.output_dtypes[name]))
                for name, parts in zip(self.output_names, per_output)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.session = None
