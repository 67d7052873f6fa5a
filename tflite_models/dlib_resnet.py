"""Build-time: dlib's ResNet-29 face-recognition network rebuilt in TensorFlow from face-api weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# dlib's input layer (input_rgb_image_sized<150>) subtracts these means and divides by 256.
DLIB_MEAN_RGB = np.array([122.782, 117.001, 104.298], dtype=np.float32)
DLIB_DIVISOR = 256.0
CHIP_SIZE = 150

BLOCKS = [
    ("conv32_1", False), ("conv32_2", False), ("conv32_3", False),
    ("conv64_down", True), ("conv64_1", False), ("conv64_2", False), ("conv64_3", False),
    ("conv128_down", True), ("conv128_1", False), ("conv128_2", False),
    ("conv256_down", True), ("conv256_1", False), ("conv256_2", False),
    ("conv256_down_out", True),
]


def folded_conv(weights: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Fold dlib's affine ("scale") layer into the preceding convolution: exact, and it leaves
    one CONV_2D op per layer for the int8 converter."""
    kernel = weights[f"{prefix}/conv/filters"]
    bias = weights[f"{prefix}/conv/bias"]
    gamma = weights[f"{prefix}/scale/weights"]
    beta = weights[f"{prefix}/scale/biases"]
    return (kernel * gamma).astype(np.float32), (bias * gamma + beta).astype(np.float32)


def make_forward(weights: dict[str, np.ndarray], divisor: float = DLIB_DIVISOR) -> Any:
    """Return fn(pixels [N,150,150,3] float RGB 0..255) -> [N,128] (not normalised)."""
    import tensorflow as tf

    consts: dict[str, tuple[Any, Any]] = {}
    for name in ["conv32_down"] + [f"{b}/conv1" for b, _ in BLOCKS] + [f"{b}/conv2" for b, _ in BLOCKS]:
        k, b = folded_conv(weights, name)
        consts[name] = (tf.constant(k), tf.constant(b))
    fc = tf.constant(weights["fc"].astype(np.float32))

    def conv(x: Any, name: str, stride: int, relu: bool) -> Any:
        kernel, bias = consts[name]
        padding = "VALID" if stride == 2 else "SAME"
        out = tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=stride, padding=padding), bias)
        return tf.nn.relu(out) if relu else out

    def forward(pixels: Any) -> Any:
        x = (pixels - DLIB_MEAN_RGB) / divisor
        x = conv(x, "conv32_down", 2, True)
        x = tf.nn.max_pool2d(x, 3, 2, "VALID")
        for block, down in BLOCKS:
            out = conv(x, f"{block}/conv1", 2 if down else 1, True)
            out = conv(out, f"{block}/conv2", 1, False)
            if down:
                shortcut = tf.nn.avg_pool2d(x, 2, 2, "VALID")
                extra_channels = out.shape[-1] - shortcut.shape[-1]
                if extra_channels:
                    shortcut = tf.pad(shortcut, [[0, 0], [0, 0], [0, 0], [0, extra_channels]])
                # dlib's add_prev zero-pads the smaller input at the bottom/right.
                dh = shortcut.shape[1] - out.shape[1]
                dw = shortcut.shape[2] - out.shape[2]
                if dh or dw:
                    out = tf.pad(out, [[0, 0], [0, dh], [0, dw], [0, 0]])
            else:
                shortcut = x
            x = tf.nn.relu(out + shortcut)
        pooled = tf.reduce_mean(x, axis=[1, 2])
        return tf.matmul(pooled, fc)

    return forward


def make_module(manifest_json: Path, divisor: float = DLIB_DIVISOR) -> Any:
    """A tf.Module whose `serve` maps one 150x150 RGB chip (float 0..255) to a 128-d descriptor."""
    import tensorflow as tf

    from tflite_models.tfjs_weights import load_layers_weights

    forward = make_forward(load_layers_weights(manifest_json), divisor)

    class DlibResNet(tf.Module):
        @tf.function(
            input_signature=[tf.TensorSpec([1, CHIP_SIZE, CHIP_SIZE, 3], tf.float32, name="pixels")]
        )
        def serve(self, pixels: Any) -> dict[str, Any]:
            return {"embedding": forward(pixels)}

        @tf.function(
            input_signature=[tf.TensorSpec([None, CHIP_SIZE, CHIP_SIZE, 3], tf.float32)]
        )
        def batch(self, pixels: Any) -> Any:
            return forward(pixels)

    return DlibResNet()


def check_against_dlib(manifest_json: Path, images: list[Path], minimum: float = 0.999) -> dict[str, float]:
    """Compare the rebuilt float network with dlib itself on dlib's own chips of real faces.

    Needs the build-only `dlib-bin` and `face_recognition_models` packages. Fails the build if
    the mean cosine between the two descriptors is below `minimum`.
    """
    import dlib  # type: ignore[import-not-found]
    import face_recognition_models  # type: ignore[import-not-found]
    import tensorflow as tf

    from tflite_models.lfw_data import load_rgb

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    reference = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    from tflite_models.tfjs_weights import load_layers_weights

    forward = make_forward(load_layers_weights(manifest_json))
    cosines, norm_ratio = [], []
    for path in images:
        rgb = load_rgb(path)
        boxes = hog(rgb, 1)
        if len(boxes) != 1:
            continue
        chip = np.ascontiguousarray(dlib.get_face_chip(rgb, predictor(rgb, boxes[0]), size=CHIP_SIZE, padding=0.25))
        ours = forward(tf.constant(chip[None].astype(np.float32))).numpy()[0]
        theirs = np.asarray(reference.compute_face_descriptor(chip))
        cosines.append(float(ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs)))
        norm_ratio.append(float(np.linalg.norm(ours) / np.linalg.norm(theirs)))
    result = {"faces": len(cosines), "mean_cosine": float(np.mean(cosines)), "min_cosine": float(np.min(cosines)),
              "mean_norm_ratio": float(np.mean(norm_ratio))}
    if not cosines or result["mean_cosine"] < minimum:
        raise SystemExit(f"rebuilt network disagrees with dlib: {result}")
    return result
