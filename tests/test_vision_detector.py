"""BlazeFace detector: anchors, decoding, NMS, keypoint mapping, and real int8 inference."""
from __future__ import annotations

import numpy as np
import pytest

from firmware.vision.detector import (
    INPUT_SIZE,
    BlazeFaceDetector,
    DetectorConfig,
    blazeface_front_anchors,
    five_points_from_blazeface,
    resize_to,
    weighted_nms,
)
from firmware.vision.modeldir import default_model_dir
from firmware.vision.pipeline import ModelManifest


def test_anchor_layout_matches_the_model_heads():
    anchors = blazeface_front_anchors()
    assert anchors.shape == (896, 2)
    # 16x16 grid, two anchors per cell, then 8x8 with six per cell.
    assert np.allclose(anchors[0], [0.5 / 16, 0.5 / 16]) and np.allclose(anchors[1], anchors[0])
    assert np.allclose(anchors[511], [15.5 / 16, 15.5 / 16])
    assert np.allclose(anchors[512], [0.5 / 8, 0.5 / 8]) and np.allclose(anchors[517], anchors[512])
    assert np.allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[10, 10, 50, 50], [12, 11, 52, 51], [80, 80, 120, 120]], dtype=np.float32)
    kps = np.stack([np.full((6, 2), v, dtype=np.float32) for v in (0.0, 10.0, 100.0)])
    scores = np.array([0.9, 0.6, 0.8], dtype=np.float32)
    out = weighted_nms(boxes, kps, scores, iou_threshold=0.3, limit=10)
    assert len(out) == 2
    (box0, kps0, s0), (box1, _, s1) = out
    assert s0 == pytest.approx(0.9) and s1 == pytest.approx(0.8)
    # Score-weighted mean of the two overlapping candidates.
    assert np.allclose(kps0, 10.0 * 0.6 / 1.5)
    assert np.allclose(box1, [80, 80, 120, 120])


def test_weighted_nms_survives_a_zero_area_box():
    boxes = np.array([[5, 5, 5, 5]], dtype=np.float32)
    out = weighted_nms(boxes, np.zeros((1, 6, 2), np.float32), np.array([0.7]), 0.3, 5)
    assert len(out) == 1 and np.all(np.isfinite(out[0][0]))


def test_five_points_orders_eyes_by_x_and_places_mouth_corners_on_the_eye_axis():
    kps = np.array([[70, 50], [30, 50], [50, 70], [50, 90], [10, 55], [90, 55]], dtype=np.float32)
    five = five_points_from_blazeface(kps)
    assert np.allclose(five[0], [30, 50]) and np.allclose(five[1], [70, 50])
    assert np.allclose(five[2], [50, 70])
    assert np.allclose((five[3] + five[4]) / 2, [50, 90])
    assert five[3, 0] < five[4, 0] and np.allclose(five[3, 1], five[4, 1])


def test_letterbox_maps_frame_points_into_the_square():
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    frame[240, 320] = 255
    square, scale, pad_x, pad_y = BlazeFaceDetector.letterbox(frame)
    assert square.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    assert scale == pytest.approx(0.2) and pad_x == 0 and pad_y == 16
    assert np.allclose(np.array([320, 240]) * scale + [pad_x, pad_y], [64, 64])


@pytest.mark.parametrize("size", [(250, 250), (640, 480), (1920, 1080), (301, 177)])
def test_resize_to_gives_area_averaged_pixels_at_the_direct_resize_geometry(size):
    """The detector's resize (2x box halvings, then bilinear) against OpenCV's INTER_AREA: about
    the same pixels on a fine pattern (plain bilinear aliases it: 16 grey levels off at 1080p),
    and a bright spot lands where a direct resize puts it."""
    import cv2

    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.dstack([(127 + 100 * np.sin(xx / 7.0) * np.cos(yy / 5.6)).astype(np.uint8)] * 3)
    scale = INPUT_SIZE / max(width, height)
    out_w, out_h = round(width * scale), round(height * scale)
    ours = resize_to(frame, out_w, out_h).astype(np.float64)
    area = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA).astype(np.float64)
    assert ours.shape == area.shape
    assert np.abs(ours - area).mean() < 3.5
    spot = np.zeros((height, width, 3), np.uint8)
    cx, cy = width // 3, height // 2
    spot[cy - 4:cy + 4, cx - 4:cx + 4] = 255
    grey = resize_to(spot, out_w, out_h)[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:out_h, 0:out_w]
    centre = np.array([(xs * grey).sum(), (ys * grey).sum()]) / grey.sum()
    # The spot's centre is at (cx - 0.5, cy - 0.5) in pixel indices; one direct resize maps a
    # point as (x + 0.5) * ratio - 0.5 per axis.
    expected = np.array([cx * out_w / width - 0.5, cy * out_h / height - 0.5])
    assert np.allclose(centre, expected, atol=0.35)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """Eileen Collins, NASA portrait shipped by scikit-image (public domain)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    folder = default_model_dir()
    return BlazeFaceDetector(folder / ModelManifest.load(folder).detector_file)


def test_shipped_detector_is_full_integer(detector):
    assert detector.model.is_int8
    assert all(o.quantised for o in detector.model.outputs)


def test_detects_the_astronaut_face_with_plausible_landmarks(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    # The face of Eileen Collins in skimage's 512x512 portrait is around x 160-260, y 60-180.
    assert 130 < x0 < 200 and 220 < x1 < 300 and 30 < y0 < 110 and 150 < y1 < 220
    left_eye, right_eye, nose, mouth_l, mouth_r = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < (mouth_l[1] + mouth_r[1]) / 2
    assert face.score > 0.7


def test_no_face_in_a_texture_or_a_blank_frame(detector):
    from skimage import data

    bricks = np.repeat(data.brick()[..., None], 3, axis=2)
    assert detector.detect(bricks) == []
    assert detector.detect(np.zeros((240, 320, 3), dtype=np.uint8)) == []


def test_refinement_can_be_disabled_and_agrees_roughly(astronaut):
    folder = default_model_dir()
    path = folder / ModelManifest.load(folder).detector_file
    one_pass = BlazeFaceDetector(path, config=DetectorConfig(refine=False)).detect(astronaut)[0]
    two_pass = BlazeFaceDetector(path).detect(astronaut)[0]
    eye_distance = np.linalg.norm(two_pass.landmarks[1] - two_pass.landmarks[0])
    assert np.abs(one_pass.landmarks - two_pass.landmarks).max() < 0.3 * eye_distance


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 4), np.uint8)]
)
def test_bad_images_are_rejected_with_value_error(detector, bad):
    with pytest.raises(ValueError):
        detector.detect(bad)


def test_tiny_image_gives_no_face(detector):
    assert detector.detect(np.zeros((4, 4, 3), np.uint8)) == []


def test_decode_keeps_exactly_the_candidates_at_or_above_the_score(detector):
    """The logit pre-filter must not change which anchors pass the sigmoid threshold."""
    rng = np.random.default_rng(3)
    min_score = detector.config.min_score
    boundary = float(np.log(min_score / (1 - min_score)))
    logits = np.concatenate([rng.normal(0, 3, 880), boundary + np.array([-1e-4, -1e-6, 0, 1e-6, 1e-4, 2e-3])] +
                            [np.full(10, boundary - 0.5)]).astype(np.float32)
    regressors = rng.normal(0, 10, (logits.size, 16)).astype(np.float32)
    boxes, keypoints, scores = detector.decode(regressors, logits)
    expected = (1 / (1 + np.exp(-logits.astype(np.float32)))) >= min_score
    assert len(scores) == expected.sum()
    assert np.allclose(np.sort(scores), np.sort(1 / (1 + np.exp(-logits[expected]))))


def test_refine_below_px_runs_the_refinement_only_for_small_faces(astronaut):
    folder = default_model_dir()
    path = folder / ModelManifest.load(folder).detector_file
    always = BlazeFaceDetector(path).detect(astronaut)[0]
    never = BlazeFaceDetector(path, config=DetectorConfig(refine=False)).detect(astronaut)[0]
    # The astronaut's face is ~25 px wide in the 128-px first pass: below 200 it is refined,
    # below 5 it is not.
    below_big = BlazeFaceDetector(path, config=DetectorConfig(refine_below_px=200)).detect(astronaut)[0]
    below_small = BlazeFaceDetector(path, config=DetectorConfig(refine_below_px=5)).detect(astronaut)[0]
    assert np.array_equal(below_big.landmarks, always.landmarks)
    assert np.array_equal(below_small.landmarks, never.landmarks)
    assert not np.array_equal(always.landmarks, never.landmarks)


def _passes_and_face(detector: BlazeFaceDetector, image: np.ndarray) -> tuple[int, object]:
    """Detector passes (real inferences) that one detect() runs, and its largest face."""
    calls = []
    run = detector.model.run_pixels
    detector.model.run_pixels = lambda pixels: calls.append(1) or run(pixels)  # type: ignore[method-assign]
    try:
        faces = detector.detect(image, largest_only=True)
    finally:
        detector.model.run_pixels = run  # type: ignore[method-assign]
    return len(calls), faces[0]


def test_crop_pass_is_skipped_only_where_it_would_not_enlarge_the_face(astronaut):
    """In the full portrait the face is ~100 of 512 px: the crop pass zooms it 2.3x and runs.
    Cut tight around the face, the frame already shows it at crop scale: the first pass stands
    in for the unmirrored crop (two passes, not three), and the keypoints barely move."""
    folder = default_model_dir()
    path = folder / ModelManifest.load(folder).detector_file
    skipping = BlazeFaceDetector(path)
    always = BlazeFaceDetector(path, config=DetectorConfig(crop_min_zoom=None))
    assert skipping.config.crop_min_zoom is not None  # the shipped default skips
    passes, face = _passes_and_face(skipping, astronaut)
    assert passes == 3
    assert np.array_equal(face.landmarks, _passes_and_face(always, astronaut)[1].landmarks)
    tight = np.ascontiguousarray(astronaut[10:250, 110:350])
    passes, face = _passes_and_face(skipping, tight)
    passes_always, face_always = _passes_and_face(always, tight)
    assert (passes, passes_always) == (2, 3)
    eye_distance = np.linalg.norm(face_always.landmarks[1] - face_always.landmarks[0])
    assert np.abs(face.landmarks - face_always.landmarks).max() < 0.1 * eye_distance
    no_flip = BlazeFaceDetector(path, config=DetectorConfig(refine_flip=False))
    assert _passes_and_face(no_flip, tight)[0] == 2  # without the mirror the crop always runs


@pytest.mark.parametrize("min_score", [0.0, 1.0])
def test_decode_with_degenerate_score_limits_matches_the_plain_sigmoid_test(detector, min_score):
    config = DetectorConfig(min_score=min_score)
    strict = BlazeFaceDetector.__new__(BlazeFaceDetector)
    strict.__dict__.update(detector.__dict__)
    strict.config = config
    logits = np.resize(np.array([-60, -30, 0, 17, 30, 60], dtype=np.float32), 896)
    _, _, scores = strict.decode(np.zeros((896, 16), np.float32), logits)
    expected = (1 / (1 + np.exp(-np.clip(logits, -50, 50)))) >= min_score
    assert len(scores) == expected.sum()


def test_refining_only_the_largest_face_keeps_every_box_and_the_gate_verdict(astronaut):
    """The kiosk's per-frame path refines the largest face only: bystanders keep their boxes
    and scores (all the quality gates use of them) and only lose the refinement passes."""
    import cv2

    from firmware.vision import FacePipeline
    from firmware.vision.quality import assess

    crop = astronaut[0:300, 80:340]
    small = cv2.resize(crop, None, fx=0.8, fy=0.8)
    canvas = np.zeros((300, 280 + small.shape[1], 3), np.uint8)
    canvas[:, :260] = crop
    canvas[:small.shape[0], 280:] = small
    pipeline = FacePipeline()
    every = pipeline.detect(canvas)
    largest_only = pipeline.detect(canvas, refine_all=False)
    assert len(every) == len(largest_only) == 2
    assert [f.box for f in every] == [f.box for f in largest_only]
    assert [f.score for f in every] == [f.score for f in largest_only]
    big = max(range(2), key=lambda i: every[i].width * every[i].height)
    assert np.array_equal(every[big].landmarks, largest_only[big].landmarks)
    assert not np.array_equal(every[1 - big].landmarks, largest_only[1 - big].landmarks)
    assert assess(canvas, every).reason == assess(canvas, largest_only).reason == "SEVERAL_FACES"
    alone = canvas.copy()
    alone[:, 270:] = 0  # the bystander leaves: the same face, refined the same way
    assert np.array_equal(pipeline.detect(alone, refine_all=False)[0].landmarks,
                          pipeline.detect(alone)[0].landmarks)
