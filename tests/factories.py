"""Study files the tests share: one definition instead of a copy per test module."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

#: Load settings for tests that need a real study to exist, not precise figures: three short windows
#: that agree within 50%, no re-measuring, no second measurement when other processes (the other test
#: workers) take CPU, and every trial measured in full (which trials a screen stops depends on the
#: machine's load; tests/integration/test_early_stop_live.py screens).
QUICK_LOAD: dict[str, Any] = {
    "remeasure": {"top": 0}, "concurrency": [2], "measurement_window_ms": 400, "max_windows": 3,
    "stability_percentage": 50, "warmup_requests": 2, "contamination_retries": 0, "early_stop": {"enabled": False},
}


def digits_study(name: str, model_path: str, n_trials: int = 3, **overrides: Any) -> dict[str, Any]:
    """A short digits_forest study file (a trial takes a few seconds); ``overrides`` replace top-level keys.

    Args:
        name: The study's name.
        model_path: The ONNX file, as the study file names it (absolute, or relative to where it runs).
        n_trials: The trial budget.
        overrides: Top-level sections to replace (``storage``, ``load``, ``model``...).
    """
    return {
        "study": name,
        "model": {"name": "digits_forest", "path": model_path},
        "search": {
            "sampler": "tpe",
            "n_trials": n_trials,
            "seed": 3,
            "space": {
                "max_batch_size": [1, 8],
                "dynamic_batching": [False, True],
                "max_queue_delay_us": {"low": 0, "high": 2000, "step": 500},
                "instance_count": {"low": 1, "high": 2},
            },
        },
        "constraints": {"latency_p99_ms": {"max": 100}},
        "load": dict(QUICK_LOAD),
        # One worker in the tuner's process: a local Ray costs 5-10 s and a core's worth of start-up per
        # study. Ray is what tests/integration/test_workers.py, the pool contract, test_optimize's SIGTERM
        # test and test_driver's killed-driver test run on (``workers={"backend": "ray"}``).
        "workers": {"backend": "local"},
        **overrides,
    }


def instances_study(name: str, storage: str, model_path: str, **search: Any) -> dict[str, Any]:
    """A study file over 1 to 4 instances of digits_forest at concurrency 8 (nothing else searched), for
    the scripted pool (tests/scripted.py), whose scripts give each instance count its figures.

    Args:
        name: The study's name.
        storage: Its storage URL.
        model_path: The digits_forest ONNX file.
        search: Keys of ``search`` to set (``sampler``, ``n_trials``...); the seed is 1.
    """
    return {
        "study": name,
        "storage": storage,
        "model": {"name": "digits_forest", "path": model_path},
        "workers": {"backend": "local", "cpus_per_worker": 2},
        "search": {
            "seed": 1,
            "space": {"instance_count": [1, 2, 3, 4], "max_batch_size": 1, "dynamic_batching": False,
                      "max_queue_delay_us": 0},
            **search,
        },
        "load": {"concurrency": [8]},
    }


#: A python-backend model that someone other than the tuner wrote: it doubles its FP32 input.
DOUBLER_MODEL_PY = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", (x * 2).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

#: Its config, with fields the tuner does not tune (a version policy, a parameter) and an instance group.
DOUBLER_CONFIG = """\
name: "doubler"
backend: "python"
max_batch_size: 8
version_policy { latest { num_versions: 1 } }
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "greeting" value: { string_value: "kept" } }
"""


def doubler_repository(root: Path, config: str = DOUBLER_CONFIG) -> Path:
    """Writes a model repository holding the python-backend ``doubler`` model; returns the repository."""
    version = root / "doubler" / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(DOUBLER_MODEL_PY)
    (root / "doubler" / "config.pbtxt").write_text(config)
    (root / "doubler" / "labels.txt").write_text("a file of the model's that the tuner never reads\n")
    return root


#: An ensemble that runs the doubler twice: ``first`` (dynamic batching already on) then ``second``.
QUADRUPLER_CONFIG = """\
name: "quadrupler"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling {
  step [
    { model_name: "first" model_version: -1
      input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "twice" } },
    { model_name: "second" model_version: -1
      input_map { key: "INPUT0" value: "twice" } output_map { key: "OUTPUT0" value: "OUT" } }
  ]
}
"""


def ensemble_repository(root: Path) -> Path:
    """Writes a repository holding ``quadrupler``, an ensemble of two doublers (``first`` batching
    already, ``second`` with two instances); returns the repository."""
    doubler_repository(root)
    for name, extra in (("first", "dynamic_batching { max_queue_delay_microseconds: 100 }\n"), ("second", "")):
        shutil.copytree(root / "doubler", root / name)
        config = DOUBLER_CONFIG.replace('name: "doubler"', f'name: "{name}"') + extra
        if name == "second":
            config = config.replace("count: 1", "count: 2")
        (root / name / "config.pbtxt").write_text(config)
    shutil.rmtree(root / "doubler")
    (root / "quadrupler").mkdir()
    (root / "quadrupler" / "config.pbtxt").write_text(QUADRUPLER_CONFIG)
    return root


#: A python model that calls others through BLS: ``first`` then ``second`` on its input (the repository of
#: ``ensemble_repository`` holds them), as its author wrote it, no ensemble config involved.
QUADRUPLER_BLS_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            for model in ("first", "second"):
                call = pb_utils.InferenceRequest(
                    model_name=model, requested_output_names=["OUTPUT0"], inputs=[pb_utils.Tensor("INPUT0", x)]
                )
                answer = call.exec()
                if answer.has_error():
                    raise pb_utils.TritonModelException(answer.error().message())
                x = pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUT", x)]))
        return responses
"""

QUADRUPLER_BLS_CONFIG = """\
name: "bls_quadrupler"
backend: "python"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def bls_repository(root: Path) -> Path:
    """``ensemble_repository`` plus ``bls_quadrupler``, a python model calling ``first`` and ``second`` via BLS."""
    ensemble_repository(root)
    (root / "bls_quadrupler" / "1").mkdir(parents=True)
    (root / "bls_quadrupler" / "1" / "model.py").write_text(QUADRUPLER_BLS_PY)
    (root / "bls_quadrupler" / "config.pbtxt").write_text(QUADRUPLER_BLS_CONFIG)
    return root


def lookup_model(path: Path, categories: int = 4) -> Path:
    """cat[N, 3] (INT64 category ids) -> y[N, 2]: the sum of each id's row of a ``categories`` x 2 table.
    An id outside the table is an error in ONNX Runtime, as in an embedding of a few categories."""
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(categories * 2, dtype=np.float32).reshape(categories, 2), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "cat"], ["rows"]), helper.make_node("ReduceSum", ["rows", "one"], ["y"], keepdims=0)],
        "lookup",
        [helper.make_tensor_value_info("cat", TensorProto.INT64, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [table, numpy_helper.from_array(np.array([1], dtype=np.int64), "one")],
    )
    return save_graph(graph, path)


def scalar_output_model(path: Path) -> Path:
    """y = relu(x) ([N, 4]) and stat = the mean of all of x (a scalar): an output without a batch dimension."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("ReduceMean", ["x"], ["stat"], keepdims=0)],
        "scalar_output",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]), helper.make_tensor_value_info("stat", TensorProto.FLOAT, [])],
    )
    return save_graph(graph, path)


def fp16_model(path: Path) -> Path:
    """x[N, 4] @ w[4, 3] with the input, the weight and the output in FP16: a model exported at half precision."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float16).reshape(4, 3), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["N", 3])], [weight],
    )
    return save_graph(graph, path)


def zipmap_classifier(path: Path) -> Path:
    """A scikit-learn logistic regression of the iris data, converted by skl2onnx with its defaults: a label
    tensor and, through ZipMap, its probabilities as a sequence of maps (which Triton cannot return)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    classifier = LogisticRegression(max_iter=500).fit(features.astype(np.float32), labels)
    path.write_bytes(to_onnx(classifier, features[:1].astype(np.float32)).SerializeToString())
    return path


def save_graph(graph: Any, path: Path, opset: int = 17) -> Path:
    """Saves an ONNX graph as a model of the default domain's ``opset`` (IR 8, which every ONNX Runtime here reads)."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
