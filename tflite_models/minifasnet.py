"""Build-time: Silent-Face-Anti-Spoofing's MiniFASNet (PyTorch state dict) rebuilt in TensorFlow.

The two detectors in `../shared/models/minifasnet/` (minivision-ai, Apache-2.0) are
MiniFASNetV2 (face box scaled 2.7x) and MiniFASNetV1SE (4.0x), both 80x80, 3 classes (index 1
= live). Their input is the raw BGR crop, 0..255, no normalisation (the original's `ToTensor`
does not divide by 255). The rebuild, layer by layer from the state dict:

* every conv + batch norm is folded into one conv with a bias (exact);
* the first conv's input channels are reversed, so the TFLite model takes **RGB** pixels, which
  is what `firmware/vision` holds (exact: a permutation of the weights);
* PReLU as max(x, a * x) where every slope of the layer is <= 1 (two int8 ops XNNPACK runs,
  as for SFace), else relu(x) + a * min(x, 0) (exact for any slope);
* stride-2 convs pad 1 on every side explicitly (TF's SAME pads only bottom/right);
* linear 512 -> 128, batch norm 1d and the 128 -> 3 classifier fold into one matrix
  (dropout is the identity at inference); softmax is inside the graph.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

INPUT_SIZE = 80
BN_EPS = 1e-5  # PyTorch's BatchNorm default, which MiniFASNet keeps
# file name -> (network class in MiniFASNet.py, crop scale of the face box)
MODELS: dict[str, tuple[str, float]] = {
    "2.7_80x80_MiniFASNetV2.pth": ("MiniFASNetV2", 2.7),
    "4_0_0_80x80_MiniFASNetV1SE.pth": ("MiniFASNetV1SE", 4.0),
}
# torch module path, residual block count (None: a single Depth_Wise down-sampling block)
STAGES: list[tuple[str, int | None]] = [
    ("conv_23", None), ("conv_3", 4), ("conv_34", None), ("conv_4", 6),
    ("conv_45", None), ("conv_5", 2),
]
CONV6_KERNEL = ((INPUT_SIZE + 15) // 16, (INPUT_SIZE + 15) // 16)  # utility.get_kernel


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The PyTorch state dict as float32 numpy arrays, DataParallel's `module.` prefix dropped."""
    import torch  # build venv only

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    out = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        out[name] = value.detach().cpu().numpy().astype(np.float32)
    return out


def _bn(w: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm as y = x * scale + shift."""
    scale = w[f"{prefix}.weight"] / np.sqrt(w[f"{prefix}.running_var"] + BN_EPS)
    return scale, w[f"{prefix}.bias"] - w[f"{prefix}.running_mean"] * scale


def _conv(w: dict[str, np.ndarray], conv: str, bn: str, stride: int, padding: int,
          prelu: str | None) -> dict[str, Any]:
    kernel = w[f"{conv}.weight"]  # OIHW; depthwise: (C, 1, kh, kw)
    scale, shift = _bn(w, bn)
    kernel = kernel * scale[:, None, None, None]
    depthwise = kernel.shape[1] == 1 and kernel.shape[0] > 1
    hwio = kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(2, 3, 1, 0)
    return {"kernel": np.ascontiguousarray(hwio, dtype=np.float32), "bias": shift.astype(np.float32),
            "stride": stride, "padding": padding, "depthwise": depthwise,
            "alpha": None if prelu is None else w[f"{prelu}.weight"].reshape(-1).astype(np.float32)}


def _conv_block(w: dict[str, np.ndarray], name: str, stride: int, padding: int) -> dict[str, Any]:
    return _conv(w, f"{name}.conv", f"{name}.bn", stride, padding, f"{name}.prelu")


def _linear_block(w: dict[str, np.ndarray], name: str, stride: int = 1, padding: int = 0) -> dict[str, Any]:
    return _conv(w, f"{name}.conv", f"{name}.bn", stride, padding, None)


def _depth_wise(w: dict[str, np.ndarray], name: str, stride: int, residual: bool) -> dict[str, Any]:
    block: dict[str, Any] = {
        "convs": [_conv_block(w, f"{name}.conv", 1, 0), _conv_block(w, f"{name}.conv_dw", stride, 1),
                  _linear_block(w, f"{name}.project")],
        "residual": residual, "se": None,
    }
    if f"{name}.se_module.fc1.weight" in w:
        s1, b1 = _bn(w, f"{name}.se_module.bn1")
        s2, b2 = _bn(w, f"{name}.se_module.bn2")
        fc1 = w[f"{name}.se_module.fc1.weight"][:, :, 0, 0] * s1[:, None]  # (C/r, C)
        fc2 = w[f"{name}.se_module.fc2.weight"][:, :, 0, 0] * s2[:, None]  # (C, C/r)
        block["se"] = (fc1.T.astype(np.float32), b1.astype(np.float32),
                       fc2.T.astype(np.float32), b2.astype(np.float32))
    return block


def folded_network(w: dict[str, np.ndarray]) -> dict[str, Any]:
    """The network as plain arrays: stem convs, blocks, tail conv and the folded head."""
    stem = [_conv_block(w, "conv1", 2, 1), _conv_block(w, "conv2_dw", 1, 1)]
    # BGR -> RGB: the first conv reads the input channels in reverse order
    stem[0]["kernel"] = np.ascontiguousarray(stem[0]["kernel"][:, :, ::-1, :])
    blocks = []
    for name, count in STAGES:
        if count is None:
            blocks.append(_depth_wise(w, name, 2, residual=False))
        else:
            blocks += [_depth_wise(w, f"{name}.model.{i}", 1, residual=True) for i in range(count)]
    tail = [_conv_block(w, "conv_6_sep", 1, 0), _linear_block(w, "conv_6_dw")]
    scale, shift = _bn(w, "bn")
    linear = w["linear.weight"] * scale[:, None]  # (128, 512)
    prob = w["prob.weight"]  # (3, 128)
    head_w = (prob @ linear).T.astype(np.float32)  # (512, 3)
    head_b = (prob @ shift).astype(np.float32)
    return {"stem": stem, "blocks": blocks, "tail": tail, "head": (head_w, head_b),
            "head_parts": (linear.T.astype(np.float32), shift.astype(np.float32),
                           prob.T.astype(np.float32))}


def prelu_forms(net: dict[str, Any]) -> dict[str, int]:
    """How many PReLU layers take each form (max where every slope <= 1)."""
    counts = {"max": 0, "split": 0}
    convs = net["stem"] + [c for b in net["blocks"] for c in b["convs"]] + net["tail"]
    for conv in convs:
        if conv["alpha"] is not None:
            counts["max" if float(conv["alpha"].max()) <= 1.0 else "split"] += 1
    return counts


def make_forward(net: dict[str, Any], prelu: str = "max", fold_head: bool = True) -> Any:
    """fn(pixels [N, 80, 80, 3] float RGB 0..255) -> [N, 3] softmax (index 1 = live)."""
    import tensorflow as tf

    def conv(x: Any, layer: dict[str, Any]) -> Any:
        stride, pad = layer["stride"], layer["padding"]
        if pad:
            x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        kernel = tf.constant(layer["kernel"])
        if layer["depthwise"]:
            x = tf.nn.depthwise_conv2d(x, kernel, strides=[1, stride, stride, 1], padding="VALID")
        else:
            x = tf.nn.conv2d(x, kernel, strides=stride, padding="VALID")
        x = tf.nn.bias_add(x, tf.constant(layer["bias"]))
        alpha = layer["alpha"]
        if alpha is None:
            return x
        if prelu == "native":
            return tf.nn.relu(x) + tf.nn.relu(-x) * tf.reshape(-tf.constant(alpha), [1, 1, -1])
        if float(alpha.max()) <= 1.0:  # PReLU exactly, in MUL + MAXIMUM (int8 in XNNPACK)
            return tf.maximum(x, tf.constant(alpha) * x)
        return tf.nn.relu(x) + tf.constant(alpha) * tf.minimum(x, 0.0)

    def block(x: Any, b: dict[str, Any]) -> Any:
        y = x
        for layer in b["convs"]:
            y = conv(y, layer)
        if not b["residual"]:
            return y
        if b["se"] is not None:
            fc1, b1, fc2, b2 = (tf.constant(a) for a in b["se"])
            s = tf.reduce_mean(y, axis=[1, 2])
            s = tf.nn.relu(tf.matmul(s, fc1) + b1)
            s = tf.sigmoid(tf.matmul(s, fc2) + b2)
            y = y * s[:, None, None, :]
        return x + y

    head_w, head_b = (tf.constant(a) for a in net["head"])

    def forward(pixels: Any) -> Any:
        x = pixels
        for layer in net["stem"]:
            x = conv(x, layer)
        for b in net["blocks"]:
            x = block(x, b)
        for layer in net["tail"]:
            x = conv(x, layer)
        flat = tf.reshape(x, [-1, head_w.shape[0]])
        if fold_head:
            return tf.nn.softmax(tf.matmul(flat, head_w) + head_b, axis=-1)
        lin, shift, prob = (tf.constant(a) for a in net["head_parts"])
        return tf.nn.softmax(tf.matmul(tf.matmul(flat, lin) + shift, prob), axis=-1)

    return forward


def make_module(pth: Path) -> Any:
    """A tf.Module whose `serve` maps one 80x80 RGB crop (float 0..255) to 3 softmax scores."""
    from tflite_models.convert import serving_module

    net = folded_network(load_state_dict(pth))
    return serving_module(make_forward(net), (1, INPUT_SIZE, INPUT_SIZE, 3))


def torch_reference(source: Path, pth: Path) -> Any:
    """The original network (MiniFASNet.py from `source`) with the state dict, in eval mode."""
    import torch

    spec = importlib.util.spec_from_file_location("minifasnet_original", source / "MiniFASNet.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {source / 'MiniFASNet.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    class_name, _ = MODELS[pth.name]
    model = getattr(module, class_name)(conv6_kernel=CONV6_KERNEL)
    state = torch.load(str(pth), map_location="cpu", weights_only=True)
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    model.load_state_dict(state)
    model.eval()
    return model


def torch_softmax(model: Any, rgb_crops: np.ndarray) -> np.ndarray:
    """The original's predict(): BGR crop as float 0..255 NCHW, softmax over the 3 classes."""
    import torch

    bgr = np.ascontiguousarray(rgb_crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(bgr)), dim=1).numpy()
