"""`healthgate check` bounds its inputs: file bytes and image pixels, refused before decoding."""
from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

from firmware.credentials import check


def png(width: int, height: int, mode: str = "1") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 1).save(buffer, format="PNG")
    return buffer.getvalue()


def test_pixel_bound_at_and_one_past() -> None:
    data = png(10, 10)
    assert check.read_image_texts(data, max_pixels=100) == []  # at the bound: decoded, no code
    with pytest.raises(check.ImageTooLarge, match="10 x 10"):
        check.read_image_texts(data, max_pixels=99)


def test_huge_declared_image_is_refused_without_decoding() -> None:
    data = png(12_000, 12_000)  # a few kilobytes on disk, 432 MB as RGB
    assert len(data) < 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(check.ImageTooLarge):
            check.read_image_texts(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024


def test_check_refuses_oversized_file_with_one_line(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "MAX_INPUT_BYTES", 1000)
    at_bound = tmp_path / "at.txt"
    at_bound.write_bytes(b"X" * 1000)
    assert check._read_argument(str(at_bound)) == b"X" * 1000  # at the bound: read whole
    past = tmp_path / "past.txt"
    past.write_bytes(b"X" * 1001)
    out = io.StringIO()
    assert check.main([str(past)], out=out) == 2
    lines = [line for line in out.getvalue().splitlines() if line.startswith("error:")]
    assert lines == [f"error: {past} is larger than 1,000 bytes"]


def test_check_refuses_huge_image_file(tmp_path: Path) -> None:
    image = tmp_path / "huge.png"
    image.write_bytes(png(12_000, 12_000))
    out = io.StringIO()
    assert check.main([str(image)], out=out) == 2
    assert "12000 x 12000 pixels is larger than 50,000,000 pixels" in out.getvalue()
