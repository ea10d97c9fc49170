"""tuner.model._variants: FP16 / INT8 copies of an ONNX model, built once and cached by content hash."""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from factories import lookup_model, save_graph
from onnx import TensorProto, helper, numpy_helper

from tuner.errors import ConfigError, ModelError, VariantError
from tuner.model import _variants as variants
from tuner.model import build_variant, float_precision, validation_inputs
from tuner.model._variants import file_digest, int8_method
from tuner.model_info import read_model_info


def _conv_model(path: Path) -> Path:
    """A tiny x[N, 1, 8, 8] convolution by w[2, 1, 3, 3], with w an initializer."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "tiny_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _matmul_model(path: Path, seed: int = 0) -> Path:
    """A tiny x[N, 16] @ w[16, 8] model, with w an initializer."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _feature_model(path: Path) -> Path:
    """x[N, 4] -> features = x @ w1 (an output) -> logits = features @ w2 (an output too)."""
    rng = np.random.default_rng(3)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["features"]), helper.make_node("MatMul", ["features", "w2"], ["logits"])],
        "features_and_logits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w1"),
         numpy_helper.from_array(rng.standard_normal((8, 2)).astype(np.float32), "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _ops(path: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def variant_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("variants")


@pytest.fixture(scope="module")
def calibration(text_detection_onnx: Path) -> dict[str, np.ndarray]:
    info = read_model_info(text_detection_onnx)
    return validation_inputs("text_detection", info, count=4)


@pytest.fixture(scope="module")
def detection_fp16(text_detection_onnx: Path, variant_cache: Path) -> Path:
    return build_variant(text_detection_onnx, "fp16", variant_cache)


@pytest.fixture(scope="module")
def detection_int8(text_detection_onnx: Path, variant_cache: Path, calibration: dict[str, np.ndarray]) -> Path:
    # The one INT8 build of text_detection in this module (it takes seconds).
    return build_variant(text_detection_onnx, "int8", variant_cache, calibration)


# --- fp32 and unknown precisions ------------------------------------------------------------


def test_fp32_is_the_source_itself(text_detection_onnx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"

    assert build_variant(text_detection_onnx, "fp32", cache) == text_detection_onnx
    assert not cache.exists()  # nothing built, nothing cached


@pytest.mark.parametrize("precision", ["bf16", "FP16", "int4", ""])
def test_unknown_precision_is_a_config_error(text_detection_onnx: Path, tmp_path: Path, precision: str) -> None:
    with pytest.raises(ConfigError, match="unknown precision"):
        build_variant(text_detection_onnx, precision, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# --- fp16 -----------------------------------------------------------------------------------


def test_fp16_of_text_detection_keeps_float32_io(detection_fp16: Path, text_detection_onnx: Path) -> None:
    original = _session(text_detection_onnx)
    session = _session(detection_fp16)

    assert detection_fp16.is_file() and detection_fp16 != text_detection_onnx
    assert [(i.name, i.type) for i in session.get_inputs()] == [(i.name, i.type) for i in original.get_inputs()]
    assert [(o.name, o.type) for o in session.get_outputs()] == [(o.name, o.type) for o in original.get_outputs()]
    assert all(i.type == "tensor(float)" for i in session.get_inputs())
    assert all(o.type == "tensor(float)" for o in session.get_outputs())


def test_fp16_of_text_detection_has_fp16_weights(detection_fp16: Path) -> None:
    model = onnx.load(str(detection_fp16))
    float16_constants = [
        node
        for node in model.graph.node
        if node.op_type == "Constant"
        and any(a.t.data_type == TensorProto.FLOAT16 for a in node.attribute if a.name == "value")
    ]
    float16_initializers = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT16]
    assert float16_constants or float16_initializers
    assert "Cast" in _ops(detection_fp16)  # the float32 inputs/outputs are cast at the edges


def test_fp16_of_text_detection_runs_close_to_fp32(
    detection_fp16: Path, text_detection_onnx: Path, calibration: dict[str, np.ndarray]
) -> None:
    feed = {name: array[:2] for name, array in calibration.items()}
    (reference,) = _session(text_detection_onnx).run(None, feed)
    (got,) = _session(detection_fp16).run(None, feed)

    assert got.shape == reference.shape
    assert got.dtype == np.float32
    assert np.isfinite(got).all()
    # A sigmoid map: FP16 may round, but stays in [0, 1] and near the FP32 answer.
    assert got.min() >= 0.0 and got.max() <= 1.0
    assert float(np.abs(got - reference).mean()) < 0.05


def test_fp16_of_a_model_whose_output_feeds_another_node_runs_close_to_fp32(tmp_path: Path) -> None:
    source = _feature_model(tmp_path / "model.onnx")

    fp16 = build_variant(source, "fp16", tmp_path / "cache")

    x = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    want = _session(source).run(None, {"x": x})
    got = _session(fp16).run(None, {"x": x})
    assert [o.name for o in _session(fp16).get_outputs()] == ["logits", "features"]
    for expected, actual in zip(want, got, strict=True):
        assert actual.dtype == np.float32
        np.testing.assert_allclose(actual, expected, rtol=0.02, atol=0.02)


def _fp16_model(tmp_path: Path) -> Path:
    """The MatMul model with its weight, input and output in FP16: a model exported at half precision."""
    model = onnx.load(str(_matmul_model(tmp_path / "fp32.onnx")))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    weight = model.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight).astype(np.float16), weight.name))
    source = tmp_path / "fp16.onnx"
    onnx.save(model, str(source))
    _session(source)  # the model itself runs
    return source


def test_an_fp16_model_quantized_is_no_int8_variant_said_when_it_is_built(tmp_path: Path) -> None:
    # ONNX Runtime's dynamic quantization of a model whose tensors are FP16 already gives a graph it refuses
    source = _fp16_model(tmp_path)

    with pytest.raises(ModelError, match="no int8 variant: ONNX Runtime refuses the quantized graph"):
        build_variant(source, "int8", tmp_path / "cache")
    assert list((tmp_path / "cache").glob("*.onnx")) == [], "nothing cached"


def test_an_fp16_model_has_no_fp16_variant_of_its_own(tmp_path: Path) -> None:
    source = _fp16_model(tmp_path)

    with pytest.raises(VariantError, match="no fp16 variant: the model has no FP32 weight, input or output"):
        build_variant(source, "fp16", tmp_path / "cache")
    assert build_variant(source, "fp32", tmp_path / "cache") == source, "served as it is"


def test_the_precision_a_model_holds_its_floats_at(tmp_path: Path) -> None:
    assert float_precision(_matmul_model(tmp_path / "fp32.onnx")) == "fp32"
    assert float_precision(_fp16_model(tmp_path)) == "fp16"
    assert float_precision(lookup_model(tmp_path / "lookup.onnx")) == "fp32", "a float table of integer ids"
    ints = helper.make_graph([helper.make_node("Neg", ["i"], ["o"])], "ints",
                             [helper.make_tensor_value_info("i", TensorProto.INT32, ["N", 2])],
                             [helper.make_tensor_value_info("o", TensorProto.INT32, ["N", 2])])
    assert float_precision(save_graph(ints, tmp_path / "ints.onnx")) is None


def test_an_fp16_graph_the_runtime_refuses_is_a_model_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxruntime.transformers import float16

    def dangling(model: onnx.ModelProto, **kwargs: object) -> onnx.ModelProto:
        model.graph.node[0].input[1] = "nowhere"  # a converter's slip: a node reads a tensor nothing makes
        return model

    monkeypatch.setattr(float16, "convert_float_to_float16", dangling)
    source = _matmul_model(tmp_path / "model.onnx")

    with pytest.raises(ModelError, match="no fp16 variant: ONNX Runtime refuses the converted graph"):
        build_variant(source, "fp16", tmp_path / "cache")
    assert list((tmp_path / "cache").glob("*.onnx")) == [], "nothing cached"


def _uint8_image_model(path: Path) -> Path:
    """An image[N, 4, 4, 3] of uint8, cast to float inside the graph, -> scores[N, 4]; nodes unnamed, and
    the cast's output read by two of them, as hand-built and converted graphs often are."""
    rng = np.random.default_rng(5)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["image:0"], ["pixels"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["pixels", "shape"], ["flat"]),
            helper.make_node("ReduceMean", ["pixels"], ["level"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("MatMul", ["flat", "w"], ["raw"]),
            helper.make_node("Unsqueeze", ["level", "one"], ["level_column"]),
            helper.make_node("Sub", ["raw", "level_column"], ["scores:0"]),
        ],
        "uint8_image",
        [helper.make_tensor_value_info("image:0", TensorProto.UINT8, ["N", 4, 4, 3])],
        [helper.make_tensor_value_info("scores:0", TensorProto.FLOAT, ["N", 4])],
        [
            numpy_helper.from_array(rng.standard_normal((48, 4)).astype(np.float32) / 100, "w"),
            numpy_helper.from_array(np.array([-1, 48], dtype=np.int64), "shape"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_fp16_of_a_graph_that_casts_to_float_itself_runs_close_to_fp32(tmp_path: Path) -> None:
    source = _uint8_image_model(tmp_path / "model.onnx")

    fp16 = build_variant(source, "fp16", tmp_path / "cache")

    image = np.random.default_rng(6).integers(0, 256, (3, 4, 4, 3)).astype(np.uint8)
    (want,) = _session(source).run(None, {"image:0": image})
    (got,) = _session(fp16).run(None, {"image:0": image})
    assert got.dtype == np.float32
    assert float16_weights(fp16), "the weights are FP16"
    np.testing.assert_allclose(got, want, rtol=0.02, atol=0.05)


def float16_weights(path: Path) -> list[str]:
    return [i.name for i in onnx.load(str(path)).graph.initializer if i.data_type == TensorProto.FLOAT16]


def test_fp16_is_cached_and_not_rebuilt(
    detection_fp16: Path, text_detection_onnx: Path, variant_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = detection_fp16.stat().st_mtime_ns

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached variant was rebuilt")

    monkeypatch.setattr(variants, "_to_fp16", no_rebuild)
    again = build_variant(text_detection_onnx, "fp16", variant_cache)

    assert again == detection_fp16
    assert again.stat().st_mtime_ns == before


def test_cache_name_carries_digest_precision_and_method(detection_fp16: Path, text_detection_onnx: Path) -> None:
    assert detection_fp16.name == f"{file_digest(text_detection_onnx)[:20]}-fp16-ortconvert.onnx"


def test_cache_dir_holds_only_finished_variants(detection_fp16: Path, variant_cache: Path) -> None:
    # The build's temporary directory is gone: only .onnx files are left.
    leftovers = [p for p in variant_cache.iterdir() if not (p.is_file() and p.suffix == ".onnx")]
    assert leftovers == []


def test_a_copy_with_the_same_content_shares_the_cache(
    detection_fp16: Path, text_detection_onnx: Path, variant_cache: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "elsewhere.onnx"
    shutil.copyfile(text_detection_onnx, copy)

    assert build_variant(copy, "fp16", variant_cache) == detection_fp16


def test_a_changed_initializer_gets_another_cache_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    source = _matmul_model(tmp_path / "a.onnx")
    model = onnx.load(str(source))
    weight = numpy_helper.to_array(model.graph.initializer[0]).copy()
    weight[0, 0] += 1.0
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weight, "w"))
    changed = tmp_path / "b.onnx"
    onnx.save(model, str(changed))

    first = build_variant(source, "fp16", cache)
    second = build_variant(changed, "fp16", cache)

    assert first != second
    assert first.is_file() and second.is_file()
    assert sorted(p.name for p in cache.glob("*.onnx")) == sorted([first.name, second.name])


def test_a_different_model_gets_another_cache_file(detection_fp16: Path, variant_cache: Path, tmp_path: Path) -> None:
    tiny = build_variant(_matmul_model(tmp_path / "tiny.onnx"), "fp16", variant_cache)

    assert tiny != detection_fp16
    assert tiny.parent == detection_fp16.parent
    session = _session(tiny)
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]
    assert [o.type for o in session.get_outputs()] == ["tensor(float)"]


# --- int8 -----------------------------------------------------------------------------------


def test_int8_method_by_operators(text_detection_onnx: Path, digits_onnx: Path, tmp_path: Path) -> None:
    assert int8_method(text_detection_onnx) == "static"
    assert int8_method(_matmul_model(tmp_path / "m.onnx")) == "dynamic"
    with pytest.raises(ModelError):
        int8_method(digits_onnx)


def test_int8_of_text_detection_is_static_qdq(detection_int8: Path, text_detection_onnx: Path) -> None:
    ops = _ops(detection_int8)

    assert detection_int8.name.startswith(file_digest(text_detection_onnx)[:20] + "-")
    assert detection_int8.name.endswith("-int8-static.onnx")
    assert ops["QuantizeLinear"] > 0
    assert ops["DequantizeLinear"] > 0
    assert "DynamicQuantizeLinear" not in ops


def test_int8_of_text_detection_runs(detection_int8: Path, calibration: dict[str, np.ndarray]) -> None:
    session = _session(detection_int8)
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]

    (got,) = session.run(None, {name: array[:1] for name, array in calibration.items()})

    assert got.shape == (1, 1, 320, 320)
    assert np.isfinite(got).all()


def test_int8_static_is_cached(
    detection_int8: Path, text_detection_onnx: Path, variant_cache: Path, calibration: dict[str, np.ndarray]
) -> None:
    before = detection_int8.stat().st_mtime_ns

    again = build_variant(text_detection_onnx, "int8", variant_cache, calibration)

    assert again == detection_int8
    assert again.stat().st_mtime_ns == before


@pytest.mark.parametrize("calibration_inputs", [None, {}], ids=["none", "empty"])
def test_int8_static_without_calibration_is_a_model_error(
    text_detection_onnx: Path, tmp_path: Path, calibration_inputs: dict | None
) -> None:
    cache = tmp_path / "fresh-cache"  # nothing cached: the build must be tried

    with pytest.raises(ModelError, match="calibration"):
        build_variant(text_detection_onnx, "int8", cache, calibration_inputs)
    assert list(cache.glob("*.onnx")) == []


def test_int8_of_a_matmul_model_is_dynamic(tmp_path: Path) -> None:
    source = _matmul_model(tmp_path / "tiny.onnx")

    path = build_variant(source, "int8", tmp_path / "cache")  # no calibration needed
    ops = _ops(path)

    assert path.name.endswith("-int8-dynamic.onnx")
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & set(ops)
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    weight = numpy_helper.to_array(onnx.load(str(source)).graph.initializer[0])
    (got,) = _session(path).run(None, {"x": x})
    assert got.shape == (3, 8)
    # the same function, approximately: x86 CPUs without VNNI saturate a few int8 products, so
    # one element can be off by ~10% of the largest while the output as a whole agrees
    want = x @ weight
    assert float(got.ravel() @ want.ravel()) / float(np.linalg.norm(got) * np.linalg.norm(want)) > 0.99
    assert np.median(np.abs(got - want)) < 0.1


def test_int8_of_digits_forest_has_nothing_to_quantize(digits_onnx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"

    with pytest.raises(ModelError, match="no operator ONNX Runtime quantizes") as caught:
        build_variant(digits_onnx, "int8", cache)
    assert "TreeEnsembleClassifier" in str(caught.value)
    assert not cache.exists()



def test_static_int8_is_cached_per_calibration_set(tmp_path: Path, text_detection_onnx: Path) -> None:
    from tuner.model._variants import _arrays_digest

    first = {"x": np.zeros((1, 3, 320, 320), dtype=np.float32)}
    second = {"x": np.ones((1, 3, 320, 320), dtype=np.float32)}
    assert _arrays_digest(first) != _arrays_digest(second)
    assert _arrays_digest(first) == _arrays_digest({"x": first["x"].copy()})


# --- models that keep their tensors in files beside them (ONNX external data) ---


def _external_model(folder: Path, location: str = "weights.bin", seed: int = 0) -> Path:
    """The tiny MatMul model with its weight in a file of its own, ``location`` relative to the model."""
    model = onnx.load(str(_matmul_model(folder / "plain.onnx", seed)))
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location=location, size_threshold=0)
    (folder / "plain.onnx").unlink()
    return path


def test_a_model_s_external_data_is_installed_beside_it_as_copies_onnx_can_read(tmp_path: Path) -> None:
    source = _external_model(tmp_path / "src")
    target = tmp_path / "repository" / "m" / "1" / "model.onnx"
    target.parent.mkdir(parents=True)

    variants.install_model_file(source, target)

    placed = target.parent / "weights.bin"
    assert variants.external_data(source) == ["weights.bin"] and placed.read_bytes() == (source.parent / "weights.bin").read_bytes()
    assert placed.stat().st_nlink == 1  # onnx refuses external data read through a hard link
    x = np.ones((2, 16), np.float32)
    served = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    expected = x @ numpy_helper.to_array(onnx.load(str(source)).graph.initializer[0])
    np.testing.assert_allclose(served, expected, rtol=1e-5)
    assert build_variant(target, "fp16", tmp_path / "cache").is_file()  # the variants read it there too


@pytest.mark.parametrize(("location", "message"), [("../weights.bin", "outside its folder"), ("/tmp/w.bin", "outside its folder")])
def test_external_data_outside_the_model_s_folder_is_refused(tmp_path: Path, location: str, message: str) -> None:
    source = _external_model(tmp_path / "src")
    model = onnx.load(str(source), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(source))

    with pytest.raises(ModelError, match=message):
        variants.external_data(source)


def test_external_data_that_is_missing_is_refused_by_name(tmp_path: Path) -> None:
    source = _external_model(tmp_path / "src")
    (source.parent / "weights.bin").unlink()

    with pytest.raises(ModelError, match="keeps tensors in weights.bin, which is not in"):
        variants.external_data(source)


def test_a_model_s_digest_changes_with_its_external_data(tmp_path: Path) -> None:
    first = file_digest(_external_model(tmp_path / "a", seed=0))
    second = file_digest(_external_model(tmp_path / "b", seed=1))

    assert (tmp_path / "a" / "model.onnx").read_bytes() == (tmp_path / "b" / "model.onnx").read_bytes()
    assert first != second


def test_a_model_s_digest_is_read_once_per_version_of_its_files(tmp_path: Path) -> None:
    source = _external_model(tmp_path / "a", seed=0)
    data = source.parent / "weights.bin"
    first = file_digest(source)
    hits = variants._digest.cache_info().hits

    assert file_digest(source) == first
    assert variants._digest.cache_info().hits == hits + 1, "the same files: not read again"

    before = data.stat()
    data.write_bytes(bytes(reversed(data.read_bytes())))  # the same size, other weights
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert file_digest(source) != first, "a data file written again is read again"


def test_building_an_int8_variant_logs_no_advice_the_user_cannot_act_on(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    source = _matmul_model(tmp_path / "matmul.onnx")
    with caplog.at_level(logging.WARNING):
        build_variant(source, "int8", tmp_path / "cache")  # dynamic: no calibration inputs
        conv = _conv_model(tmp_path / "conv.onnx")  # a convolution: static, calibrated, as a study builds it
        calibration = {"x": np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)}
        assert build_variant(conv, "int8", tmp_path / "static", calibration).name.endswith("-int8-static.onnx")
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
