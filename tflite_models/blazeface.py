"""Build-time: rebuild the TF.js BlazeFace-front graph as a TensorFlow function for conversion."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Callable

import numpy as np

from firmware.vision.detector import LOGIT_UNIT, REGRESSOR_UNIT

# The head convolutions feed the outputs directly. Raw logits span about -100..+30 and
# background anchors regress to offsets in the thousands, so int8 min/max calibration would give
# those conv outputs steps of ~0.5 logit and tens of pixels. Each head conv is therefore
# rescaled (weights / unit, exact) and clamped to [-1, 1], which the converter fuses into the
# conv as RELU_N1_TO_1: the int8 range is then exactly +-12 logits / +-128 px (1 step = 1 px).
# sigmoid(+-12) is 0.999994 / 6e-6, far past any threshold we use; a face filling the whole
# input needs offsets within +-128.


def _attr_string(node: dict, key: str) -> str:
    return base64.b64decode(node["attr"][key]["s"]).decode()


def _attr_ints(node: dict, key: str) -> list[int]:
    return [int(v) for v in node["attr"][key]["list"]["i"]]


def build_function(
    nodes: list[dict], weights: dict[str, np.ndarray], input_scale: Callable[[Any], Any]
) -> tuple[Callable[[Any], dict[str, Any]], list[str]]:
    """Return (fn, output names): fn maps a float [1,128,128,3] pixel tensor (0..255) to
    {"regressors": [1,896,16] / 128 px, "logits": [1,896,1] / 12}.

    Implements exactly the op set that the graph uses; any other op fails the build loudly.
    """
    import tensorflow as tf

    consumed = {i.split(":")[0].lstrip("^") for n in nodes for i in n.get("input", [])}
    by_name = {n["name"]: n for n in nodes}
    # Head convs: the conv feeding each output Reshape; 1 value per anchor = score logit.
    head_unit: dict[str, float] = {}
    for n in nodes:
        if n["op"] == "Reshape":
            per_anchor = int(weights[n["input"][1]][-1])
            head_unit[n["input"][0]] = LOGIT_UNIT if per_anchor == 1 else REGRESSOR_UNIT
    outputs = [n["name"] for n in nodes if n["name"] not in consumed and n["op"] != "Const"]

    def fn(pixels: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for node in nodes:
            name, op = node["name"], node["op"]
            args = [values[i.split(":")[0]] for i in node.get("input", []) if not i.startswith("^")]
            if op == "Const":
                values[name] = tf.constant(weights[name])
            elif op == "Placeholder":
                values[name] = input_scale(pixels)
            elif op == "_FusedConv2D":
                fused = [base64.b64decode(s).decode() for s in node["attr"]["fused_ops"]["list"]["s"]]
                unit = head_unit.get(name, 1.0)
                out = tf.nn.conv2d(
                    args[0], args[1] / unit, strides=_attr_ints(node, "strides"),
                    padding=_attr_string(node, "padding"),
                )
                out = tf.nn.bias_add(out, args[2] / unit)
                if name in head_unit:
                    out = tf.clip_by_value(out, -1.0, 1.0)
                if fused == ["BiasAdd", "Relu"]:
                    out = tf.nn.relu(out)
                elif fused != ["BiasAdd"]:
                    raise ValueError(f"unsupported fused ops {fused}")
                values[name] = out
            elif op == "DepthwiseConv2dNative":
                values[name] = tf.nn.depthwise_conv2d(
                    args[0], args[1], strides=_attr_ints(node, "strides"),
                    padding=_attr_string(node, "padding"),
                )
            elif op == "AddV2":
                values[name] = args[0] + args[1]
            elif op == "Relu":
                values[name] = tf.nn.relu(args[0])
            elif op == "Pad":
                values[name] = tf.pad(args[0], args[1])
            elif op == "MaxPool":
                values[name] = tf.nn.max_pool2d(
                    args[0], ksize=_attr_ints(node, "ksize")[1:3],
                    strides=_attr_ints(node, "strides")[1:3], padding=_attr_string(node, "padding"),
                )
            elif op == "Reshape":
                values[name] = tf.reshape(args[0], args[1])
            elif op == "ConcatV2":
                values[name] = tf.concat(args[:-1], axis=int(args[-1]))
            elif op == "Identity":
                values[name] = args[0]
            else:
                raise ValueError(f"unsupported op {op} in BlazeFace graph")
        result = [values[o] for o in outputs]
        # Two heads per kind: the 16x16 grid (512 anchors) first, then the 8x8 grid (384).
        by_size = lambda t: -int(t.shape[1])  # noqa: E731
        regressors = tf.concat(sorted([r for r in result if r.shape[-1] == 16], key=by_size), 1)
        logits = tf.concat(sorted([r for r in result if r.shape[-1] == 1], key=by_size), 1)
        return {"regressors": regressors, "logits": logits}

    return fn, outputs


def make_module(model_json: Path, normalisation: str = "minus1_1") -> Any:
    """A tf.Module with a serving function for the BlazeFace-front model in `model_json`."""
    import tensorflow as tf

    from tflite_models.tfjs_weights import load_graph_model

    nodes, weights = load_graph_model(model_json)
    if normalisation == "minus1_1":
        scale = lambda x: x / 127.5 - 1.0  # noqa: E731  MediaPipe's [-1, 1] input range
    else:
        scale = lambda x: x / 255.0  # noqa: E731
    fn, _ = build_function(nodes, weights, scale)

    class BlazeFace(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 128, 128, 3], tf.float32, name="pixels")])
        def serve(self, pixels: Any) -> dict[str, Any]:
            return fn(pixels)

    return BlazeFace()
