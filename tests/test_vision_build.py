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
    from firmware.vision.pipeline import ModelManifest, default_model_dir

    folder = default_model_dir()
    manifest = ModelManifest.load(folder)
    metrics = json.loads((folder / "build_metrics.json").read_text())
    shipped = metrics[metrics["shipped_mode"]]
    assert manifest.threshold == pytest.approx(shipped["threshold_far_0.1pct_devtrain"], abs=1e-6)
    assert np.allclose(manifest.template, metrics["alignment_template"], atol=1e-3)
    assert metrics["int8_vs_float_cosine"]["mean"] >= 0.97
    assert (folder / manifest.detector_file).stat().st_size < 1_000_000
    assert (folder / manifest.embedder_file).stat().st_size < 10_000_000
