"""Build-side helpers that need no TensorFlow: TF.js weight decoding, LFW pairs, FAR threshold."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tflite_models import lfw_data
from tflite_models.tfjs_weights import load_layers_weights, read_weights


def test_tfjs_weights_decode_float_uint8_and_float16(tmp_path):
    plain = np.arange(6, dtype=np.float32).reshape(2, 3)
    q = np.array([0, 1, 255], dtype=np.uint8)
    half = np.array([0.5, -2.0], dtype=np.float16)
    (tmp_path / "w.bin").write_bytes(plain.tobytes() + q.tobytes() + half.tobytes())
    manifest = [{
        "paths": ["w.bin"],
        "weights": [
            {"name": "plain", "shape": [2, 3], "dtype": "float32"},
            {"name": "q", "shape": [3], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
            {"name": "half", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        ],
    }]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    weights = load_layers_weights(tmp_path / "m.json")
    assert np.array_equal(weights["plain"], plain)
    assert np.allclose(weights["q"], [-1.0, -0.5, 126.5])
    assert np.allclose(weights["half"], [0.5, -2.0])


def test_tfjs_weights_reject_a_manifest_that_does_not_cover_its_shards(tmp_path):
    (tmp_path / "w.bin").write_bytes(np.zeros(5, np.float32).tobytes())
    manifest = [{"paths": ["w.bin"], "weights": [{"name": "a", "shape": [4], "dtype": "float32"}]}]
    with pytest.raises(ValueError, match="cover"):
        read_weights(manifest, tmp_path)


def test_threshold_at_far_keeps_impostor_accepts_within_the_rate():
    rng = np.random.default_rng(3)
    impostor = rng.normal(0.8, 0.03, 2000)
    genuine = rng.normal(0.95, 0.02, 2000)
    same = np.r_[np.zeros(2000, bool), np.ones(2000, bool)]
    scores = np.r_[impostor, genuine]
    fig = lfw_data.roc_figures(same, scores, far=0.001)
    accepted = int(np.sum(impostor >= fig["threshold_at_far"]))
    assert accepted <= 2  # 0.1 % of 2000
    # The threshold is as low as allowed: the next impostor score down would exceed the rate.
    assert np.sort(impostor)[::-1][accepted] < fig["threshold_at_far"]
    assert fig["far_measured"] == pytest.approx(accepted / 2000)
    assert fig["tar_at_far"] == pytest.approx(np.mean(genuine >= fig["threshold_at_far"]))
    assert lfw_data.accuracy_at(same, scores, fig["best_accuracy_threshold"]) == pytest.approx(fig["best_accuracy"])


def test_lfw_pairs_parse_both_line_kinds(tmp_path):
    (tmp_path / "pairs.txt").write_text("1\nAnn\t1\t2\nBob\t3\tCid\t4\n")
    same, diff = lfw_data.read_pairs(tmp_path, "pairs.txt")
    assert same.same and same.first.name == "Ann_0001.jpg" and same.second.name == "Ann_0002.jpg"
    assert not diff.same and diff.first.name == "Bob_0003.jpg" and diff.second.name == "Cid_0004.jpg"
    assert lfw_data.unique_images([same, diff, same]) == [same.first, same.second, diff.first, diff.second]


def test_lfw_pairs_reject_malformed_lines(tmp_path):
    (tmp_path / "pairs.txt").write_text("1\nAnn\t1\n")
    with pytest.raises(ValueError, match="bad pairs line"):
        lfw_data.read_pairs(tmp_path, "pairs.txt")


def test_shipped_manifest_matches_the_shipped_models():
    """face_models.json, the .tflite files and the build metrics agree with each other."""
    from firmware.vision.modeldir import default_model_dir
    from firmware.vision.pipeline import ModelManifest

    folder = default_model_dir()
    manifest = ModelManifest.load(folder)
    metrics = json.loads((folder / "build_metrics.json").read_text())
    # thresholds from the latest calibration of the folder (calibrate.py), else from its build
    calibration = metrics.get("calibration")
    if calibration:
        expected = calibration["mirror_average" if manifest.mirror_average else "single"]["threshold"]
    else:
        expected = metrics[metrics["shipped_mode"]]["threshold_far_0.1pct_devtrain"]
    assert manifest.threshold == pytest.approx(expected, abs=1e-6) and manifest.threshold >= expected
    assert np.allclose(manifest.template, metrics["alignment_template"], atol=1e-3)
    assert metrics["int8_vs_float_cosine"]["mean"] >= 0.97
    assert (folder / manifest.detector_file).stat().st_size < 1_000_000
    assert (folder / manifest.embedder_file).stat().st_size < 10_000_000


def _sface_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random weights named and shaped as in OpenCV Zoo's SFace ONNX file."""
    from tflite_models.sface import BLOCKS

    w: dict[str, np.ndarray] = {}

    def layer(name: str, kernel_shape: tuple[int, ...]) -> None:
        channels = kernel_shape[0]
        w[f"{name}_conv2d_weight"] = rng.normal(size=kernel_shape).astype(np.float32)
        w[f"{name}_batchnorm_gamma"] = rng.uniform(0.5, 2, channels).astype(np.float32)
        w[f"{name}_batchnorm_beta"] = rng.normal(size=channels).astype(np.float32)
        w[f"{name}_batchnorm_moving_mean"] = rng.normal(size=channels).astype(np.float32)
        w[f"{name}_batchnorm_moving_var"] = rng.uniform(0.5, 2, channels).astype(np.float32)
        w[f"{name}_relu_gamma"] = rng.uniform(-0.8, 1.1, (channels, 1, 1)).astype(np.float32)

    layer("conv_1", (32, 3, 3, 3))
    widths = {2: 64, 3: 128, 4: 128, 5: 256, 6: 256, 7: 512, 13: 1024, 14: 1024}
    channels = 32
    for block, _ in BLOCKS:
        out = widths.get(int(block.split("_")[1]), 512)
        layer(f"{block}_dw", (channels, 1, 3, 3))
        layer(block, (out, channels, 1, 1))
        channels = out
    for name, n in (("bn1", 1024), ("fc1", 128)):
        w[f"{name}_gamma"] = rng.uniform(0.5, 2, n).astype(np.float32)
        w[f"{name}_beta"] = rng.normal(size=n).astype(np.float32)
        w[f"{name}_moving_mean"] = rng.normal(size=n).astype(np.float32)
        w[f"{name}_moving_var"] = rng.uniform(0.5, 2, n).astype(np.float32)
    w["pre_fc1_weight"] = rng.normal(size=(128, 1024 * 7 * 7)).astype(np.float32) / 100
    w["pre_fc1_bias"] = rng.normal(size=128).astype(np.float32)
    return w


def _batch_norm(x: np.ndarray, w: dict[str, np.ndarray], name: str, eps: float, axis: int) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = -1
    get = lambda k: w[f"{name}_{k}"].reshape(shape)  # noqa: E731
    return (x - get("moving_mean")) / np.sqrt(get("moving_var") + eps) * get("gamma") + get("beta")


def test_sface_batch_norm_folding_matches_the_onnx_layers():
    """Folded SFace layers equal conv -> batch norm as the ONNX graph computes them (NCHW)."""
    from tflite_models.sface import folded_head, folded_layers

    rng = np.random.default_rng(7)
    w = _sface_weights(rng)
    layers = {layer["name"]: layer for layer in folded_layers(w)}
    assert len(layers) == 27 and layers["conv_3_dw"]["stride"] == 2 and layers["conv_13_dw"]["stride"] == 2
    # A pointwise conv is a matrix product over channels.
    x = rng.normal(size=(5, 512)).astype(np.float32)
    onnx = _batch_norm(x @ w["conv_9_conv2d_weight"][:, :, 0, 0].T, w, "conv_9_batchnorm", 1e-3, 1)
    ours = x @ layers["conv_9"]["kernel"][0, 0] + layers["conv_9"]["bias"]
    assert np.allclose(ours, onnx, atol=1e-3)
    # A depthwise conv at one output position: per-channel dot product of a 3x3 patch.
    patch = rng.normal(size=(128, 3, 3)).astype(np.float32)
    onnx_dw = _batch_norm((patch * w["conv_4_dw_conv2d_weight"][:, 0]).sum((1, 2))[None], w, "conv_4_dw_batchnorm", 1e-3, 1)
    kernel = layers["conv_4_dw"]["kernel"]  # H, W, C, 1
    ours_dw = (patch.transpose(1, 2, 0) * kernel[..., 0]).sum((0, 1)) + layers["conv_4_dw"]["bias"]
    assert np.allclose(ours_dw, onnx_dw[0], atol=1e-3)
    # Head: bn1 on NCHW, flatten in NCHW order, fc, fc1 batch norm == one matrix on NHWC order.
    feature = rng.normal(size=(2, 1024, 7, 7)).astype(np.float32)
    onnx_head = _batch_norm(_batch_norm(feature, w, "bn1", 2e-5, 1).reshape(2, -1) @ w["pre_fc1_weight"].T
                            + w["pre_fc1_bias"], w, "fc1", 2e-5, 1)
    head_w, head_b = folded_head(w)
    ours_head = feature.transpose(0, 2, 3, 1).reshape(2, -1) @ head_w + head_b
    assert np.allclose(ours_head, onnx_head, rtol=1e-3, atol=1e-3)


def test_sface_build_refuses_an_onnx_file_that_is_not_the_opencv_zoo_one(tmp_path):
    from tflite_models.sface import load_onnx_weights

    fake = tmp_path / "face_recognition_sface_2021dec.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(SystemExit, match="not opencv_zoo"):
        load_onnx_weights(fake)


def test_calibrate_sets_the_thresholds_that_the_pipeline_then_loads(tmp_path, shared_data):
    """calibrate.py on part of LFW View 1: the 1:1 threshold is the FAR 0.1 % point over every
    cross-identity pair of the DevTrain images (at most 0.1 % of them at or above it), the
    manifest gets it rounded up,
    and a FacePipeline on the folder uses it; too few pairs for FAR 1e-5: no 1:N threshold."""
    import shutil

    from firmware.vision import FacePipeline
    from firmware.vision.modeldir import default_model_dir
    from tflite_models import calibrate

    lfw = shared_data / "lfw-view1"
    train = lfw_data.read_pairs(lfw, "pairsDevTrain.txt")
    test = lfw_data.read_pairs(lfw, "pairsDevTest.txt")
    train, test = train[:40] + train[-40:], test[:6] + test[-6:]  # same pairs first, then different
    folder = tmp_path / "models"
    shutil.copytree(default_model_dir(), folder, ignore=shutil.ignore_patterns("*.py", "__pycache__", "dlib", "*.png", "*.md"))
    result = calibrate.calibrate(folder, train, test)
    calibrate.write(folder, result)
    pipeline = FacePipeline(model_dir=folder)
    single = result["single"]
    assert single["threshold_basis"].startswith("LFW View 1 DevTrain images, every impostor pair")
    assert pipeline.threshold == pytest.approx(single["threshold"], abs=1e-6)
    assert pipeline.threshold >= single["threshold"]  # rounded up, never down
    images = lfw_data.unique_images(train)
    templates = {p: pipeline.embed(lfw_data.load_rgb(p)) for p in images}
    assert all(t is not None for t in templates.values())
    genuine, impostor = calibrate.all_pair_scores(templates, images)  # type: ignore[arg-type]
    assert impostor.size >= 1000  # enough to measure FAR 0.1 %
    assert np.mean(impostor >= pipeline.threshold) <= 0.001
    # FAR 0.1 % of >= 1,000 pairs allows at least one impostor above: the threshold is not set
    # above all of them (that would be FAR 0, a needlessly strict bar)
    assert pipeline.threshold <= impostor.max() + 1e-6
    # too few impostor pairs to measure FAR 1e-5: no 1:N threshold, so face pass is refused
    assert "far_1e-05" not in result["face_pass_all_pairs"]["devtrain"]
    assert pipeline.face_pass_threshold is None
    metrics = json.loads((folder / "build_metrics.json").read_text())
    assert metrics["calibration"]["single"]["failed_to_detect"] == 0
    assert set(metrics["calibration"]) >= {"single", "mirror_average", "face_pass_all_pairs"}
    assert 0.0 <= metrics["calibration"]["single"]["devtest_all_pairs_far_at_threshold"] <= 1.0
