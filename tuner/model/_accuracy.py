"""How far a variant's answers are from the FP32 model's, on a fixed validation batch.

For each output: the largest absolute and relative error, the cosine similarity of the
flattened outputs and, for classifier outputs, the share of samples (or of positions, for a
sequence of class scores such as a text recognizer's) whose top-1 class agrees.
``accuracy_drop`` sums it up for constraints: 1 - the lowest top-1 agreement, or, where no
output is a classifier's, 1 - the lowest cosine similarity. Which outputs are a classifier's is
guessed from their shapes (``auto``) unless the study says (``model.accuracy_metric``): an
embedding [N, C] has the shape of class scores, and the top-1 "class" of an embedding means
nothing; ``cosine`` judges every output by its cosine similarity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import ModelError
from tuner.model_info import Answers, ModelInfo, TensorInfo, by_sample, one_sample


def reference_outputs(model_path: str, inputs: Mapping[str, np.ndarray]) -> dict[str, Answers]:
    """The FP32 model's outputs on ``inputs``, with ONNX Runtime's CPU provider, one sample at a time
    (``Answers``: an output without a batch dimension, a scalar say, has one answer per sample too)."""
    return _outputs(_reference_session(model_path), inputs)


def _reference_session(model_path: str) -> Any:
    """An ONNX Runtime session of the model on the CPU provider, logging nothing: a failure is raised."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def _outputs(session: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, Answers]:
    # a sequence or map output (scikit-learn's ZipMap) is not served (``ModelInfo.unserved``), nor compared
    outputs = [o for o in session.get_outputs() if o.type.startswith("tensor(")]
    count = min(len(a) for a in inputs.values())
    runs = [session.run([o.name for o in outputs], {k: v[i : i + 1] for k, v in inputs.items()}) for i in range(count)]
    batched = [bool(o.shape) and not isinstance(o.shape[0], int) for o in outputs]
    return {
        output.name: by_sample([one_sample(run[j], batched[j]) for run in runs]) for j, output in enumerate(outputs)
    }


def check_reference(model_path: Path, inputs: Mapping[str, np.ndarray], made_up: bool) -> None:
    """That the FP32 model loads and runs under ONNX Runtime's CPU provider on the first validation sample,
    as every trial's accuracy check runs it (``reference_outputs``): where it does not, every trial would
    fail the same way.

    Raises:
        ModelError: it does not; ``made_up`` says the inputs are the seeded random ones, which a model that
            takes indices (an embedding of a few categories) may refuse, and names what to give instead.
    """
    if not inputs:
        return
    try:
        session = _reference_session(str(model_path))
    except Exception as exc:  # ONNX Runtime raises its own exception types
        raise ModelError(
            "ONNX Runtime's CPU provider cannot load the model, and every trial checks its answers against the "
            f"FP32 model's under it: {_first_line(exc)}"
        ) from exc
    try:
        _outputs(session, {name: array[:1] for name, array in inputs.items()})
    except Exception as exc:  # ONNX Runtime raises its own exception types
        if not made_up:
            raise ModelError(
                f"model.validation_data: ONNX Runtime fails on the first sample: {_first_line(exc)}"
            ) from exc
        raise ModelError(
            "ONNX Runtime fails on the validation inputs the tuner makes up (floats in [0, 1), integers 0-7): "
            f"{_first_line(exc)}; give inputs the model takes in model.validation_data (.npz by input name, or "
            ".npy) and load.input_data"
        ) from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def is_classifier_output(tensor: TensorInfo) -> bool:
    """Class labels ([N], integer), class scores ([N, C], C > 1) or a sequence of them ([N, T, C])."""
    if tensor.dtype in ("INT64", "INT32") and len(tensor.shape) <= 2 and all(d in (-1, 1) for d in tensor.item_shape):
        return True
    return tensor.dtype.startswith("FP") and len(tensor.shape) in (2, 3) and tensor.shape[-1] > 1


def compare(
    model: ModelInfo, reference: Mapping[str, Answers], got: Mapping[str, Answers], metric: str = "auto"
) -> dict[str, Any]:
    """The accuracy numbers of ``got`` against ``reference``, per output and summed up.

    ``metric``: ``auto`` (top-1 for outputs that look like class scores) or ``cosine`` (every
    output). The result names what ``accuracy_drop`` was taken from (``judged_by``). A sample whose
    answer has another size than the reference's (a detector keeping another number of boxes) agrees
    in nothing: the output's cosine similarity is that of the other samples, times their share."""
    outputs: dict[str, dict[str, float]] = {}
    agreements: list[float] = []
    cosines: list[float] = []
    for tensor in model.outputs:
        pairs = [(np.asarray(r), np.asarray(g)) for r, g in zip(reference[tensor.name], got[tensor.name])]
        matched = [(r, g) for r, g in pairs if r.size == g.size]
        ref = np.concatenate([r.ravel() for r, _ in matched]) if matched else np.zeros(0)
        out = np.concatenate([g.ravel() for _, g in matched]) if matched else np.zeros(0)
        numbers = _errors(ref.astype(np.float64), out.astype(np.float64))
        if len(matched) < len(pairs):
            numbers["cosine_similarity"] *= len(matched) / len(pairs)
            numbers["samples_of_another_size"] = float(len(pairs) - len(matched))
        if metric != "cosine" and is_classifier_output(tensor) and pairs:
            first = pairs[0][0]  # one sample's answer
            classes = first.shape[-1] if first.ndim >= 1 and tensor.dtype.startswith("FP") else 1
            share = len(matched) / len(pairs)  # a sample of another size agrees in nothing
            numbers["top1_agreement"] = _top1(ref.reshape(-1, classes), out.reshape(-1, classes)) * share
            agreements.append(numbers["top1_agreement"])
        else:
            cosines.append(numbers["cosine_similarity"])
        outputs[tensor.name] = numbers
    basis: Sequence[float] = agreements or cosines or [1.0]
    return {
        "accuracy_drop": max(0.0, 1.0 - min(basis)),
        "judged_by": "top1_agreement" if agreements else "cosine_similarity",
        "outputs": outputs,
        "samples": _count(reference),
    }


def _errors(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    diff = np.abs(ref - out)
    scale = float(np.max(np.abs(ref), initial=0.0)) or 1.0
    norms = float(np.linalg.norm(ref) * np.linalg.norm(out))
    cosine = float(np.dot(ref.ravel(), out.ravel()) / norms) if norms else float(np.array_equal(ref, out))
    return {
        "max_abs_error": float(diff.max(initial=0.0)),
        "max_rel_error": float(diff.max(initial=0.0) / scale),
        "cosine_similarity": cosine,
    }


def _top1(ref: np.ndarray, out: np.ndarray) -> float:
    if ref.shape[1] == 1:  # labels
        return float(np.mean(ref[:, 0] == out[:, 0]))
    return float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1)))


def _count(arrays: Mapping[str, Answers]) -> int:
    return min((len(a) for a in arrays.values()), default=0)
