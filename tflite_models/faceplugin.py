"""Build-time, opt-in: faceplugin's `fr_feature.onnx` (unclear licence) rebuilt in TensorFlow.

npm `faceplugin-face-recognition-js` 0.0.1 ships `model/fr_feature.onnx`: a MobileFaceNet-style
512-d recogniser (50 Conv with batch norm already folded, 33 PReLU, 12 Add, one Reshape),
BGR input normalised (x - 127) / 128. Its licence is unclear (package.json says MIT, the
LICENSE file is unrelated boilerplate, origin and training data undocumented), so it is never
committed and never the default: the operator fetches the package and runs
tflite_models/build_faceplugin.py. The graph is walked node by node (only these four op types
are accepted); the BGR swap is folded into the first convolution's input channels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CHIP_SIZE = 112
EMBEDDING = 512
INPUT_MEAN = 127.0
INPUT_SCALE = 1.0 / 128.0
PRELU_FORMS = ("max", "native")


def load_graph(path: Path) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Nodes and float initialisers of the ONNX file; refuses op types this rebuild lacks."""
    import onnx  # type: ignore[import-not-found]  # build venv only
    from onnx import numpy_helper  # type: ignore[import-not-found]

    model = onnx.load(str(path))
    unknown = {n.op_type for n in model.graph.node} - {"Conv", "PRelu", "Add", "Reshape"}
    if unknown:
        raise SystemExit(f"{path.name}: unsupported ONNX ops {sorted(unknown)}")
    weights = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer}
    return list(model.graph.node), weights


def make_module(onnx_path: Path, prelu: str = "max") -> Any:
    """A tf.Module whose `serve` maps one 112x112 RGB chip (float 0..255) to a 512-d embedding."""
    import tensorflow as tf
    from onnx import helper  # type: ignore[import-not-found]

    if prelu not in PRELU_FORMS:
        raise ValueError(f"prelu must be one of {PRELU_FORMS}")
    nodes, weights = load_graph(onnx_path)
    first_input = nodes[0].input[0]

    def attrs(node: Any) -> dict[str, Any]:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def forward(pixels: Any) -> Any:
        values = {first_input: (pixels - INPUT_MEAN) * INPUT_SCALE}
        for node in nodes:
            a = attrs(node)
            if node.op_type == "Conv":
                kernel = weights[node.input[1]]
                if node.input[0] == first_input:
                    kernel = kernel[:, ::-1]  # the network wants BGR; our chips are RGB
                bias = weights[node.input[2]] if len(node.input) > 2 else 0.0
                x, stride, pad, group = values[node.input[0]], a["strides"][0], a["pads"][0], a["group"]
                if pad:
                    x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
                if group == 1:
                    y = tf.nn.conv2d(x, np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)), stride, "VALID")
                elif group == kernel.shape[0] and kernel.shape[1] == 1:
                    y = tf.nn.depthwise_conv2d(x, kernel.transpose(2, 3, 0, 1), [1, stride, stride, 1], "VALID")
                else:
                    raise SystemExit(f"unsupported grouped conv (group {group})")
                values[node.output[0]] = y + bias
            elif node.op_type == "PRelu":
                x, alpha = values[node.input[0]], weights[node.input[1]].reshape(-1)
                if prelu == "native":  # fused by the converter into one PRELU op
                    values[node.output[0]] = tf.nn.relu(x) + tf.nn.relu(-x) * tf.reshape(-alpha, [1, 1, -1])
                else:  # max(x, a x) is PReLU for every a <= 1; larger alphas are clipped to 1
                    values[node.output[0]] = tf.maximum(x, np.minimum(alpha, 1.0) * x)
            elif node.op_type == "Add":
                values[node.output[0]] = values[node.input[0]] + values[node.input[1]]
            else:  # Reshape: the graph's last op, [1, 512, 1, 1] -> [1, 512]
                values[node.output[0]] = tf.reshape(values[node.input[0]], [-1, EMBEDDING])
        return values[nodes[-1].output[0]]

    from tflite_models.convert import serving_module

    return serving_module(forward, (1, CHIP_SIZE, CHIP_SIZE, 3))


def check_against_onnx(onnx_path: Path, module: Any, chips: list[np.ndarray]) -> dict[str, float]:
    """Rebuilt float network vs the ONNX file in onnxruntime (BGR, (x - 127) / 128) on real chips."""
    import onnxruntime as ort  # type: ignore[import-not-found]

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    cosines = []
    for chip in chips:
        bgr = (chip[..., ::-1].astype(np.float32) - INPUT_MEAN) * INPUT_SCALE
        ref = session.run(None, {name: bgr.transpose(2, 0, 1)[None]})[0].ravel()
        ours = module.serve(chip[None].astype(np.float32)).numpy().ravel()
        cosines.append(float(np.dot(ref, ours) / (np.linalg.norm(ref) * np.linalg.norm(ours))))
    return {"chips": len(chips), "mean_cosine": float(np.mean(cosines)), "min_cosine": float(np.min(cosines))}
