"""The fixed validation batch a study checks every variant's answers on.

Real inputs where the model has them:

- ``digits_forest``: the test split of scikit-learn's digits (the split the forest was not
  trained on);
- ``text_detection``: rendered lines of text on pages of varied background, 320x320, normalized
  as PP-OCR's detector expects;
- ``text_recognition``: rendered single lines of text, 48x320, normalized as its recognizer expects;
- ``minilm``: English sentences, tokenized with the model's own tokenizer;
- a file named in ``model.validation_data``: ``.npz`` (one array per input name) or ``.npy``
  (a model with one input);
- any other model: seeded random inputs of each input's type and shape (enough to compare a
  variant with its FP32 model, not to judge the model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuner.errors import ModelError
from tuner.model_info import ModelInfo, load_sample_file

_WORDS = [
    "TRITON",
    "invoice 2024",
    "Total: 42.50",
    "hello world",
    "OPEN 24h",
    "Exit",
    "No. 7381",
    "batch size",
    "latency",
    "throughput",
    "Model Repository",
    "queue delay",
]


_SENTENCES = [
    "Dynamic batching doubled the throughput of the detector.",
    "A second model instance did the same without batching.",
    "The server queues requests until an instance is free.",
    "Lower precision changes the answers a little.",
    "Where does the client's latency go?",
    "The tuner measures every configuration on a real server.",
    "Throughput rises until the cores are busy.",
    "A latency budget decides which configuration wins.",
]


def validation_inputs(
    model_name: str, model: ModelInfo, data_file: Path | None = None, count: int = 8, seed: int = 0
) -> dict[str, np.ndarray]:
    """``count`` samples for every input of the model, by input name.

    Raises:
        ModelError: the data file does not fit the model's inputs.
    """
    if data_file is not None:
        return {name: array[:count] for name, array in _from_file(data_file, model).items()}
    shapes = {t.name: t.item_shape for t in model.inputs}
    if model_name == "digits_forest" and list(shapes.values()) == [(64,)]:
        from tuner.model._bundled import digits_split

        return {next(iter(shapes)): digits_split()[1][:count]}
    if model_name == "text_detection" and list(shapes.values()) == [(3, 320, 320)]:
        return {next(iter(shapes)): _rendered_pages(count, seed)}
    if model_name == "text_recognition" and list(shapes.values()) == [(3, 48, 320)]:
        return {next(iter(shapes)): _rendered_lines(count, seed)}
    if model_name == "minilm" and set(shapes) == {"input_ids", "attention_mask"}:
        from tuner.model._bundled import minilm_tokens

        return minilm_tokens([_SENTENCES[i % len(_SENTENCES)] for i in range(count)])
    return _random(model, count, seed)


def _rendered_pages(count: int, seed: int, size: int = 320) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
    pages = []
    for _ in range(count):
        background = tuple(int(v) for v in rng.integers(180, 256, size=3))
        image = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(image)
        for line in range(int(rng.integers(3, 7))):
            font = ImageFont.load_default(size=int(rng.integers(16, 34)))
            text = " ".join(rng.choice(_WORDS, size=2))
            ink = tuple(int(v) for v in rng.integers(0, 90, size=3))
            draw.text((int(rng.integers(5, 60)), 20 + line * 48 + int(rng.integers(0, 10))), text, fill=ink, font=font)
        array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        pages.append((array - mean) / std)
    return np.stack(pages).astype(np.float32)


def _rendered_lines(count: int, seed: int, height: int = 48, width: int = 320) -> np.ndarray:
    """Single lines of text, normalized as PP-OCR's recognizer expects ((x / 255 - 0.5) / 0.5)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(200, 256, size=3)))
        font = ImageFont.load_default(size=int(rng.integers(24, 34)))
        text = " ".join(rng.choice(_WORDS, size=2))
        ImageDraw.Draw(image).text((4, 6), text, fill=tuple(int(v) for v in rng.integers(0, 60, size=3)), font=font)
        array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        lines.append((array - 0.5) / 0.5)
    return np.stack(lines).astype(np.float32)


def _random(model: ModelInfo, count: int, seed: int) -> dict[str, np.ndarray]:
    from tritonclient.utils import triton_to_np_dtype

    rng = np.random.default_rng(seed)
    inputs = {}
    for tensor in model.inputs:
        shape = (count, *(d if d > 0 else 1 for d in tensor.item_shape))
        dtype = np.dtype(triton_to_np_dtype(tensor.dtype))
        if dtype.kind == "f":
            inputs[tensor.name] = rng.random(shape).astype(dtype)
        elif dtype.kind == "b":
            inputs[tensor.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            inputs[tensor.name] = rng.integers(0, 8, size=shape).astype(dtype)
    return inputs


def load_samples(path: Path, model: ModelInfo, field: str) -> dict[str, np.ndarray]:
    """Samples of every input from a ``.npy`` file (one-input models), an ``.npz`` file (an
    array per input name), or a folder of such files (joined along the first axis, by file name).

    Raises:
        ModelError: naming ``field``: nothing readable, or the arrays do not fit the inputs.
    """
    if not path.is_dir():
        return _from_file(path, model, field)
    files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz"))
    if not files:
        raise ModelError(f"{field}: {path} holds no .npy or .npz files")
    parts = [_from_file(f, model, field) for f in files]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _from_file(path: Path, model: ModelInfo, field: str = "model.validation_data") -> dict[str, np.ndarray]:
    loaded = load_sample_file(path, field)
    names = [t.name for t in model.inputs]
    if isinstance(loaded, np.ndarray):
        if len(names) != 1:
            raise ModelError(f"{field}: a .npy file fits a model with one input; this one has {names}")
        arrays = {names[0]: loaded}
    else:
        arrays = {name: loaded[name] for name in loaded.files}
    missing = set(names) - set(arrays)
    if missing:
        raise ModelError(f"{field}: {path.name} lacks inputs {sorted(missing)}")
    for tensor in model.inputs:
        array = arrays[tensor.name]
        if tuple(array.shape[1:]) != tuple(d if d > 0 else array.shape[i + 1] for i, d in enumerate(tensor.item_shape)):
            raise ModelError(
                f"{field}: {tensor.name} has shape {list(array.shape)}, "
                f"the model takes [N, {', '.join(map(str, tensor.item_shape))}]"
            )
    return {t.name: _as_input_type(arrays[t.name], t.name, t.dtype, field) for t in model.inputs}


def _as_input_type(array: np.ndarray, name: str, dtype: str, field: str) -> np.ndarray:
    """The array in the input's type, where numpy casts it safely (float64 -> float32 included)."""
    from tritonclient.utils import triton_to_np_dtype

    wanted = np.dtype(triton_to_np_dtype(dtype))
    same_kind = np.can_cast(array.dtype, wanted, casting="same_kind")
    if array.dtype != wanted and not (same_kind or np.can_cast(array.dtype, wanted, casting="safe")):
        raise ModelError(f"{field}: {name} holds {array.dtype}, the model takes {dtype}")
    return array.astype(wanted, copy=False)
