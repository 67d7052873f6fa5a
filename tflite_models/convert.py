"""Build-time: TensorFlow function -> float or full-integer int8 TFLite flatbuffer."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np


def serving_module(forward: Callable[[Any], Any], input_shape: tuple[int, ...]) -> Any:
    """A tf.Module whose `serve` runs `forward` on one float32 input of `input_shape`: what the
    converters below take."""
    import tensorflow as tf

    class Serving(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec(list(input_shape), tf.float32)])
        def serve(self, pixels: Any) -> Any:
            return forward(pixels)

    return Serving()


def _converter(module: Any) -> Any:
    import tensorflow as tf

    concrete = module.serve.get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)


def to_float(module: Any) -> bytes:
    """Float32 TFLite model (the reference that int8 is checked against)."""
    return bytes(_converter(module).convert())


def to_int8(module: Any, calibration: Iterable[np.ndarray]) -> bytes:
    """Full-integer int8 model: int8 weights (per-channel for convolutions, the converter's
    default), int8 activations calibrated on `calibration` (each a [1, H, W, 3] float batch of
    real pixels), int8 input and output tensors, no float fallback ops."""
    import tensorflow as tf

    samples = [np.asarray(s, dtype=np.float32) for s in calibration]
    if not samples:
        raise ValueError("no calibration samples")

    def representative() -> Iterable[list[np.ndarray]]:
        for s in samples:
            yield [s]

    converter = _converter(module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def op_names(model: bytes) -> list[str]:
    """Names of the ops in a TFLite model (to check that no float op slipped in)."""
    from tensorflow.lite.python import schema_py_generated as schema  # type: ignore

    m = schema.Model.GetRootAsModel(model, 0)
    names = []
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for i in range(m.OperatorCodesLength()):
        code = m.OperatorCodes(i)
        names.append(builtin.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?"))
    return names
