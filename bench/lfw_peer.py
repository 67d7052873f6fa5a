"""Peer side of bench/lfw.py: face_recognition (dlib) encodings for a list of images.

Runs in whichever interpreter has `face_recognition` (often a separate venv, since dlib is
heavy), so it imports nothing from this project. Protocol: a JSON list of image paths on stdin;
one JSON object per image on stdout: {"i": index, "ms": detect+encode time, "enc": [128 floats]
or null when dlib finds no face}. Images are decoded in memory only.
"""
from __future__ import annotations

import json
import sys
import time


def main() -> int:
    try:
        import face_recognition as fr  # heavy import, outside the timing
    except Exception as exc:  # ImportError, or dlib failing to load its models
        print(json.dumps({"error": f"face_recognition unavailable: {exc}"}), flush=True)
        return 3

    paths = json.load(sys.stdin)
    for index, path in enumerate(paths):
        image = fr.load_image_file(path)  # decoding is not part of either pipeline's timing
        start = time.perf_counter()
        # the library's documented defaults: HOG detector, one upsample, 5-point landmarks
        boxes = fr.face_locations(image)
        encoding = None
        if boxes:
            largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            encoding = [float(x) for x in fr.face_encodings(image, [largest])[0]]
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        print(json.dumps({"i": index, "ms": round(elapsed_ms, 3), "enc": encoding}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
