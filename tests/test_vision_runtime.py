"""TFLite runtime wrapper: loading errors, int8 input quantisation, real inference."""
from __future__ import annotations

import numpy as np
import pytest

from firmware.vision.modeldir import default_model_dir
from firmware.vision.pipeline import ModelManifest
from firmware.vision.runtime import ModelLoadError, TFLiteModel


@pytest.fixture(scope="module")
def embedder_model() -> TFLiteModel:
    folder = default_model_dir()
    return TFLiteModel(folder / ModelManifest.load(folder).embedder_file, num_threads=1)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        TFLiteModel(tmp_path / "absent.tflite")


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ModelLoadError, match="cannot load"):
        TFLiteModel(bogus)


def test_embedder_takes_raw_pixels_with_exact_int8_input(embedder_model):
    spec = embedder_model.inputs[0]
    assert spec.dtype == np.int8
    # Pixels 0..255 map one-to-one onto int8: no information lost at the input.
    assert spec.scale == pytest.approx(1.0) and spec.zero_point == -128
    pixels = np.arange(256, dtype=np.float32)
    q = embedder_model._quantise(pixels, spec)
    assert np.array_equal(q.astype(np.int32) + 128, np.arange(256))


def test_wrong_input_shape_is_rejected(embedder_model):
    with pytest.raises(ValueError, match="input shape"):
        embedder_model.run(np.zeros((1, 10, 10, 3), np.float32))


def test_inference_is_deterministic_and_depends_on_the_input(embedder_model):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, embedder_model.input_shape).astype(np.float32)
    b = rng.integers(0, 256, embedder_model.input_shape).astype(np.float32)
    (out_a1,), (out_a2,), (out_b,) = embedder_model.run(a), embedder_model.run(a), embedder_model.run(b)
    assert out_a1.dtype == np.float32 and out_a1.shape == (1, 128)
    assert np.array_equal(out_a1, out_a2)
    assert not np.array_equal(out_a1, out_b)


def _fake_module(name: str, **attrs):
    import types

    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def test_falls_back_to_tflite_runtime_when_litert_is_missing(monkeypatch, embedder_model):
    """Older Pi OS images have only tflite-runtime: the wrapper must pick it up."""
    import sys

    from ai_edge_litert.interpreter import Interpreter as RealInterpreter

    used = []

    class RecordingInterpreter(RealInterpreter):  # stands in for tflite_runtime's class
        def __init__(self, *args, **kwargs):
            used.append(kwargs.get("num_threads"))
            super().__init__(*args, **kwargs)

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", _fake_module("tflite_runtime"))
    monkeypatch.setitem(
        sys.modules,
        "tflite_runtime.interpreter",
        _fake_module("tflite_runtime.interpreter", Interpreter=RecordingInterpreter),
    )
    model = TFLiteModel(embedder_model.path, num_threads=3)
    assert used == [3]
    (out,) = model.run(np.zeros(model.input_shape, np.float32))
    assert out.shape == (1, 128)


def test_no_interpreter_at_all_is_a_clear_error(monkeypatch, embedder_model):
    import sys

    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                 "tflite_runtime.interpreter", "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModelLoadError, match="no TFLite interpreter"):
        TFLiteModel(embedder_model.path)


def test_run_pixels_equals_the_float_path_exactly(embedder_model):
    """The XOR shortcut (int8 = pixel - 128) must give the same tensor as quantising floats."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, embedder_model.input_shape[1:], dtype=np.uint8)
    (via_float,) = embedder_model.run(pixels[None].astype(np.float32))
    (via_pixels,) = embedder_model.run_pixels(pixels)
    (mirrored_view,) = embedder_model.run_pixels(pixels[:, ::-1])  # a non-contiguous view works
    (mirrored_copy,) = embedder_model.run(np.ascontiguousarray(pixels[None, :, ::-1]).astype(np.float32))
    assert np.array_equal(via_float, via_pixels)
    assert np.array_equal(mirrored_view, mirrored_copy)


def test_run_pixels_rejects_other_dtypes_and_shapes(embedder_model):
    with pytest.raises(ValueError, match="uint8"):
        embedder_model.run_pixels(np.zeros(embedder_model.input_shape, np.float32))
    with pytest.raises(ValueError, match="input shape"):
        embedder_model.run_pixels(np.zeros((10, 10, 3), np.uint8))


def test_outputs_are_not_overwritten_by_the_next_inference(embedder_model):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, embedder_model.input_shape[1:], dtype=np.uint8)
    (first,) = embedder_model.run_pixels(a)
    kept = first.copy()
    embedder_model.run_pixels(255 - a)
    assert np.array_equal(first, kept)
